// Public API of containerstack/dns.
export type { DnsRecord, DnsStore, IpHealth, HealthStatus, RecordOwner, RecordType, StoreEvent, StoreSnapshot, Watch } from './store.js';
