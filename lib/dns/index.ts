// Public API of containerstack/dns.
export type { DnsRecord, DnsStore, IpHealth, HealthStatus, RecordOwner, RecordType, StoreEvent, StoreSnapshot, Watch } from './store.js';
// Control plane: etcd store, health prober, REST API (see lib/dns/etcd, prober.ts, lib/dns/api).
export { EtcdDnsStore, EtcdBadRecordError } from './etcd/store.js';
export type { EtcdDnsStoreOptions } from './etcd/store.js';
export { EtcdUnavailableError, EtcdLimitError, EtcdAuthError } from './etcd/gateway.js';
export { startProber, tcpProbe, ProberConfigError } from './prober.js';
export type { Prober, ProberOptions } from './prober.js';
export { startDnsApi, ApiStartError } from './api/server.js';
export type { DnsApi, DnsApiOptions } from './api/server.js';
export { checkRecordBody, nameProblem, normalizeDomain, fnv32aHex } from './api/validate.js';
export { DnsApiClient, ApiRequestError, ApiUnreachableError } from './api/client.js';
export type { DnsApiClientOptions, ListQuery, RecordInput } from './api/client.js';
// Server: wire codec, in-memory store, index, picker, plugin chain, transport (lib/dns server side).
export { MemoryDnsStore } from './memstore.js';
export type { MemoryDnsStoreOptions } from './memstore.js';
export { ZoneIndex, makeZones, hashString } from './zoneindex.js';
export type { ZoneSpec, PickSet } from './zoneindex.js';
export { Picker, rendezvousOrder, rendezvousIndex, rendezvousScore, PICK_ALL, PICK_SERVFAIL } from './picker.js';
export type { PickMode, AllDownPolicy, PickerOptions, PickCounts } from './picker.js';
export { QueryCtx, buildChain, refuse, PLUGIN_ORDER } from './chain.js';
export type { Handler, Plugin, PluginName, Response } from './chain.js';
export { zonePlugin } from './plugins/zone.js';
export { cachePlugin } from './plugins/cache.js';
export { pickPlugin } from './plugins/pick.js';
export { metricsPlugin } from './plugins/metrics.js';
export { logPlugin } from './plugins/log.js';
export { Forwarder, forwardPlugin, parseResolvConf } from './plugins/forward.js';
export { RateLimiter } from './ratelimit.js';
export { DnsServer } from './server.js';
export type { DnsServerOptions } from './server.js';
export { DnsNode } from './node.js';
export type { DnsNodeConfig, DnsNodeOptions } from './node.js';
export { serveConfigSpec } from './config.js';
export type { ServeConfig } from './config.js';
export { parseRecordsText, loadRecordsFile, validateRecord, RECORD_TYPES } from './records.js';
export { IpcDnsStore, serveStoreOverIpc } from './ipcstore.js';
export type { IpcChannel } from './ipcstore.js';
export { parseQuery, ParsedQuery, MessageWriter, reverseName, TYPE, RCODE } from './wire.js';
export {
  StoreClosedError, StoreInvalidRecordError, RecordsFileError, ZoneConfigError, UpstreamError, ForwardOverloadError, ListenError, IpcStoreError,
} from './errors.js';
// Kubernetes watcher (lib/dns/kube).
export { startKubeWatcher } from './kube/watcher.js';
export type { KubeWatcher, KubeWatcherOptions } from './kube/watcher.js';
export { KubeClient, KubeUnavailableError, KubeStatusError, KubeLimitError } from './kube/client.js';
export type { KubeClientOptions } from './kube/client.js';
export { serviceRecords, endpointsFromSlices } from './kube/records.js';
export { buildUdpBatch, loadUdpBatch } from './native/udpbatch.js';
export type { UdpBatchAddon } from './native/udpbatch.js';
