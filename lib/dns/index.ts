// Public API of containerstack/dns.
export type { DnsRecord, DnsStore, IpHealth, HealthStatus, RecordOwner, RecordType, StoreEvent, StoreSnapshot, Watch } from './store.js';
// Control plane: etcd store, health prober, REST API (see lib/dns/etcd, prober.ts, lib/dns/api).
export { EtcdDnsStore, EtcdBadRecordError } from './etcd/store.js';
export type { EtcdDnsStoreOptions } from './etcd/store.js';
export { EtcdUnavailableError, EtcdLimitError } from './etcd/gateway.js';
export { startProber, tcpProbe, ProberConfigError } from './prober.js';
export type { Prober, ProberOptions } from './prober.js';
export { startDnsApi, ApiStartError } from './api/server.js';
export type { DnsApi, DnsApiOptions } from './api/server.js';
export { checkRecordBody, nameProblem, normalizeDomain, fnv32aHex } from './api/validate.js';
export { DnsApiClient, ApiRequestError, ApiUnreachableError } from './api/client.js';
export type { DnsApiClientOptions, ListQuery, RecordInput } from './api/client.js';
