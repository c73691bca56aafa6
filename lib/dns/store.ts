// The record store seam of ContainerDNS. The server, the REST API, the prober and the
// Kubernetes watcher all talk to a DnsStore; implementations: in-memory (tests and the
// single-process default), the embedded lib/table (once it lands), and etcd with the
// ContainerDNS key layout. The server keeps an in-memory index fed by `watch`, so the query
// hot path never touches the store.

export type RecordType = 'A' | 'AAAA' | 'CNAME' | 'SRV' | 'TXT' | 'MX' | 'NS' | 'PTR';

/** Who may change a record: records owned by `kubewatch` are read-only through the REST API. */
export type RecordOwner = 'api' | 'kubewatch' | 'config';

export interface DnsRecord {
  /** Stable id, unique within `name`: several records of one name (several IPs) differ by id. */
  id: string;
  /** Fully qualified, lower-case, without the trailing dot: `web.default.svc.cluster.local`. */
  name: string;
  type: RecordType;
  /** A/AAAA: the IP; CNAME/NS/PTR/MX/SRV: the target name; TXT: the text. */
  value: string;
  ttl?: number;
  /** SRV and MX. */
  priority?: number;
  /** SRV. */
  weight?: number;
  /** SRV: the port; for A/AAAA: service ports the prober checks (optional). */
  port?: number;
  /** Ports the health prober connects to for this A/AAAA record. */
  probePorts?: number[];
  owner?: RecordOwner;
}

export type HealthStatus = 'up' | 'down' | 'unknown';

/** Health of one IP as written by a prober; every replica reads the same view. */
export interface IpHealth {
  ip: string;
  status: HealthStatus;
  /** Wall-clock ms of the last change, for people and for staleness checks. */
  changedAtMs: number;
  /** Which prober wrote it. */
  reporter?: string;
}

export type StoreEvent =
  | { kind: 'put'; record: DnsRecord; revision: number }
  | { kind: 'delete'; name: string; id: string; revision: number }
  | { kind: 'health'; health: IpHealth; revision: number }
  /** The watch fell too far behind (compaction) or reconnected: the consumer must re-list. */
  | { kind: 'reset'; revision: number };

export interface StoreSnapshot {
  records: DnsRecord[];
  health: IpHealth[];
  /** Revision the snapshot reflects; pass it to watch() to get only later changes. */
  revision: number;
}

export interface Watch {
  close(): void;
}

export interface DnsStore {
  snapshot(): Promise<StoreSnapshot>;
  /** Records of one name (all types) or of one name and type. */
  get(name: string, type?: RecordType): Promise<DnsRecord[]>;
  /** Creates or replaces (name, id). Returns the new revision. */
  put(record: DnsRecord): Promise<number>;
  /** Deletes (name, id); resolves false when there was nothing to delete. */
  delete(name: string, id: string): Promise<boolean>;
  setHealth(health: IpHealth): Promise<number>;
  /** Events after `fromRevision`, in order. A consumer that gets `reset` calls snapshot() again. */
  watch(fromRevision: number, onEvent: (e: StoreEvent) => void): Watch;
  close(): Promise<void>;
}
