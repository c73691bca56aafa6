// Health prober: TCP connect probes to the service ports of every A/AAAA record's IP, with
// rise/fall thresholds, writing the IP's status to the store (so every DNS replica shares one
// view) only when it changes. The target list follows the store through its watch, so a round
// costs probes, not a full store read.
import { connect } from 'node:net';
import { hostname } from 'node:os';
import {
  Counter, Gauge, Histogram, defineError, errorMessage, silentLogger, type Logger, type Registry,
} from '../common/index.js';
import type { DnsRecord, DnsStore, HealthStatus, StoreEvent, Watch } from './store.js';

/** Prober options out of range. */
export class ProberConfigError extends defineError('dns', 'DNS_PROBER_CONFIG') {}

export interface ProberOptions {
  store: DnsStore;
  /** Time between the starts of two rounds; a slow round delays the next, never overlaps it. */
  intervalMs?: number;
  /** Connect timeout of one probe. */
  timeoutMs?: number;
  /** Consecutive successes that bring an IP up. */
  rise?: number;
  /** Consecutive failures that take an IP down. */
  fall?: number;
  /** Most connections in flight at once. */
  concurrency?: number;
  /** Name written with each status, so people can tell which prober decided. */
  reporter?: string;
  logger?: Logger;
  registry?: Registry;
  /** Most distinct IPs tracked; records beyond it are not probed (and logged once). */
  maxTargets?: number;
  /** Wall clock for `changedAtMs`. */
  nowMs?: () => number;
  /** No timer: rounds run only through probeNow() (tests, one-shot tools). */
  manual?: boolean;
  /** The probe itself; TCP connect by default (a seam for tests and other probe kinds). */
  probe?: (ip: string, port: number, timeoutMs: number) => Promise<boolean>;
}

export interface Prober {
  /** Runs one round now (tests, and `containerdns ctl health --probe`); resolves when it ends. */
  probeNow(): Promise<void>;
  stop(): Promise<void>;
}

interface IpState {
  // invariant: at most one of okStreak / failStreak is non-zero
  okStreak: number;
  failStreak: number;
  /** Status as the store holds it (ours or another prober's). */
  stored: HealthStatus;
}

const MAX_PORTS_PER_IP = 16;

/** Resolves true when a TCP connection to ip:port is accepted within timeoutMs. */
export function tcpProbe(ip: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: ip, port, timeout: timeoutMs });
    const done = (ok: boolean): void => {
      s.removeAllListeners();
      s.on('error', () => {});
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('timeout', () => done(false));
    s.once('error', () => done(false));
  });
}

export function startProber(opts: ProberOptions): Prober {
  const intervalMs = opts.intervalMs ?? 5000;
  const timeoutMs = opts.timeoutMs ?? 1000;
  const rise = opts.rise ?? 2;
  const fall = opts.fall ?? 3;
  const concurrency = opts.concurrency ?? 64;
  const maxTargets = opts.maxTargets ?? 100_000;
  const reporter = opts.reporter ?? `prober@${hostname()}`;
  const log = opts.logger ?? silentLogger;
  const now = opts.nowMs ?? Date.now;
  const probe = opts.probe ?? tcpProbe;
  const bad = (cond: boolean, what: string): void => {
    if (cond) throw new ProberConfigError(what);
  };
  bad(!(intervalMs >= 10), `intervalMs must be >= 10, got ${intervalMs}`);
  bad(!(timeoutMs >= 1), `timeoutMs must be >= 1, got ${timeoutMs}`);
  bad(!(Number.isSafeInteger(rise) && rise >= 1 && rise <= 100), `rise must be 1..100, got ${rise}`);
  bad(!(Number.isSafeInteger(fall) && fall >= 1 && fall <= 100), `fall must be 1..100, got ${fall}`);
  bad(!(Number.isSafeInteger(concurrency) && concurrency >= 1 && concurrency <= 10_000), `concurrency must be 1..10000, got ${concurrency}`);

  const reg = opts.registry;
  const probes = reg ? new Counter({ name: 'containerdns_probes_total', help: 'TCP probes by result', labelNames: ['result'], registers: [reg] }) : undefined;
  const changes = reg ? new Counter({ name: 'containerdns_probe_status_changes_total', help: 'Health status changes written', labelNames: ['status'], registers: [reg] }) : undefined;
  const targetsGauge = reg ? new Gauge({ name: 'containerdns_probe_targets', help: 'IPs being probed', registers: [reg] }) : undefined;
  const roundSeconds = reg ? new Histogram({ name: 'containerdns_probe_round_seconds', help: 'Duration of one probe round', buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60], registers: [reg] }) : undefined;

  /** `name\0id` -> the record's IP and ports; the source of the target list. */
  const byRecord = new Map<string, { ip: string; ports: number[] }>();
  const states = new Map<string, IpState>();
  /** Health as the store holds it, including IPs we do not probe (yet). */
  const storedHealth = new Map<string, HealthStatus>();
  let overflowLogged = false;
  let stopped = false;
  let watch: Watch | undefined;
  let timer: NodeJS.Timeout | undefined;
  let round: Promise<void> | undefined;
  let resyncing: Promise<void> | undefined;

  const portsOf = (r: DnsRecord): number[] => {
    const ports = r.probePorts && r.probePorts.length > 0 ? r.probePorts : r.port !== undefined ? [r.port] : [];
    return ports.filter((p) => Number.isSafeInteger(p) && p > 0 && p < 65536).slice(0, MAX_PORTS_PER_IP);
  };
  const track = (r: DnsRecord): void => {
    const key = `${r.name}\0${r.id}`;
    if ((r.type !== 'A' && r.type !== 'AAAA') || portsOf(r).length === 0) {
      byRecord.delete(key);
      return;
    }
    if (!byRecord.has(key) && byRecord.size >= maxTargets) {
      if (!overflowLogged) log.warn({ maxTargets }, 'dns: prober target limit reached; some records are not probed');
      overflowLogged = true;
      return;
    }
    byRecord.set(key, { ip: r.value, ports: portsOf(r) });
  };
  const onEvent = (e: StoreEvent): void => {
    switch (e.kind) {
      case 'put':
        track(e.record);
        return;
      case 'delete':
        byRecord.delete(`${e.name}\0${e.id}`);
        return;
      case 'health': {
        storedHealth.set(e.health.ip, e.health.status);
        const st = states.get(e.health.ip);
        if (st) st.stored = e.health.status;
        return;
      }
      case 'reset':
        resyncing = resync().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'dns: prober resync failed'));
        return;
    }
  };
  async function resync(): Promise<void> {
    const snap = await opts.store.snapshot();
    byRecord.clear();
    storedHealth.clear();
    for (const r of snap.records) track(r);
    for (const h of snap.health) storedHealth.set(h.ip, h.status);
    watch?.close();
    if (!stopped) watch = opts.store.watch(snap.revision, onEvent);
  }

  /** The current targets: IP -> union of ports (bounded by MAX_PORTS_PER_IP). */
  function targets(): Map<string, number[]> {
    const out = new Map<string, Set<number>>();
    for (const { ip, ports } of byRecord.values()) {
      let s = out.get(ip);
      if (!s) out.set(ip, (s = new Set()));
      for (const p of ports) if (s.size < MAX_PORTS_PER_IP) s.add(p);
    }
    return new Map([...out].map(([ip, s]) => [ip, [...s].sort((a, b) => a - b)]));
  }

  async function probeIp(ip: string, ports: number[]): Promise<void> {
    // An IP passes when every service port it serves accepts a connection.
    let ok = true;
    for (const port of ports) {
      if (stopped) return;
      const r = await probe(ip, port, timeoutMs);
      probes?.inc({ result: r ? 'ok' : 'fail' });
      if (!r) {
        ok = false;
        break;
      }
    }
    let st = states.get(ip);
    if (!st) states.set(ip, (st = { okStreak: 0, failStreak: 0, stored: storedHealth.get(ip) ?? 'unknown' }));
    if (ok) {
      st.okStreak++;
      st.failStreak = 0;
    } else {
      st.failStreak++;
      st.okStreak = 0;
    }
    let next: HealthStatus | undefined;
    if (ok && st.stored !== 'up' && st.okStreak >= rise) next = 'up';
    if (!ok && st.stored !== 'down' && st.failStreak >= fall) next = 'down';
    if (next === undefined || stopped) return;
    try {
      await opts.store.setHealth({ ip, status: next, changedAtMs: now(), reporter });
      st.stored = next;
      storedHealth.set(ip, next);
      changes?.inc({ status: next });
      log.info({ ip, status: next, ports }, 'dns: health changed');
    } catch (err) {
      // Keep the streak: the next round retries the write.
      log.warn({ ip, err: errorMessage(err) }, 'dns: could not write health');
    }
  }

  async function runRound(): Promise<void> {
    if (resyncing) await resyncing;
    if (!watch && !stopped) {
      // The first read of the store failed: try again before probing nothing.
      await resync().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'dns: prober could not read the store'));
    }
    const t = targets();
    targetsGauge?.set(t.size);
    // Forget state of IPs no longer served, so the state map stays bounded by the targets.
    for (const ip of states.keys()) if (!t.has(ip)) states.delete(ip);
    const queue = [...t];
    const started = performance.now();
    const worker = async (): Promise<void> => {
      for (let item = queue.shift(); item && !stopped; item = queue.shift()) await probeIp(item[0], item[1]);
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    roundSeconds?.observe((performance.now() - started) / 1000);
  }

  const probeNow = (): Promise<void> => {
    // Rounds never overlap: a caller asking during a round waits for it, then runs its own.
    const prev = round ?? Promise.resolve();
    const next = prev.then(runRound, runRound);
    round = next;
    return next;
  };

  const schedule = (): void => {
    if (stopped) return;
    const started = Date.now();
    probeNow()
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'dns: probe round failed'))
      .finally(() => {
        if (stopped) return;
        timer = setTimeout(schedule, Math.max(0, intervalMs - (Date.now() - started)));
      });
  };

  resyncing = resync()
    .catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, 'dns: prober could not read the store; retrying next round');
      resyncing = undefined;
    })
    .finally(() => {
      resyncing = undefined;
    });
  if (!opts.manual) timer = setTimeout(schedule, 0);

  return {
    probeNow,
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      watch?.close();
      await round?.catch(() => {});
    },
  };
}
