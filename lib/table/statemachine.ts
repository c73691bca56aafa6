// The table state machine: a sorted key/value table in level, changed only by applying
// committed Raft entries. One call applies a batch of entries and writes everything they did,
// plus the applied index and revision, in ONE level batch, so after a crash the table is at
// exactly some applied index and replay resumes from there.
//
// Determinism: apply depends only on the entries and the table's prior contents, never on
// time, randomness or local configuration, so every replica reaches the same state.
import type { Level } from 'level';
import { assert, LimitExceededError, type Logger, silentLogger } from '../common/index.js';
import { containerstack } from '../../proto/gen/table.js';
import { GroupKeys, KIND_DATA, KIND_EVENT, KIND_SESSION, readU64, u64 } from './keys.js';
import { DomainError, UnknownDomainCommandError, WatchCompactedError } from './errors.js';

const pb = containerstack.table;
export type KeyValue = { key: Uint8Array; value: Uint8Array; createRevision: number; modRevision: number; version: number };
export type TableEvent = { type: 'put' | 'delete'; kv: KeyValue; revision: number };
/** A command's outcome; clientId/seq identify the proposal it answers (not stored). */
export type CommandResult = containerstack.table.CommandResult.$Properties & { revision: number; clientId?: string; seq?: number };
export type Command = containerstack.table.Command.$Properties;

/** What a domain command may do. Reads see the command's own writes and earlier entries' of the batch. */
export interface DomainContext {
  /** Raft index of the entry being applied. */
  readonly index: number;
  get(key: Uint8Array): Uint8Array | undefined;
  put(key: Uint8Array, value: Uint8Array): void;
  delete(key: Uint8Array): void;
  /** Up to `limit` pairs whose key starts with `prefix`, in key order, seeing pending writes. */
  scan(prefix: Uint8Array, limit: number, startAfter?: Uint8Array): Promise<{ key: Uint8Array; value: Uint8Array }[]>;
}

/** Must be deterministic. Throw DomainError to fail the command on every replica alike. */
export type DomainCommand = (ctx: DomainContext, args: Uint8Array) => Uint8Array | Promise<Uint8Array>;

export interface StateMachineOptions {
  /**
   * Watch history kept, in revisions; older watch starts get WatchCompactedError. 0: none is
   * written (live watches still work; any start in the past is compacted): for tables nobody
   * watches from a revision, such as metadata partitions, whose every write would otherwise
   * also write (and later delete) an event per key it changed.
   */
  historyRevisions?: number;
  /** Idempotency sessions kept (least recently used by log index are dropped). */
  maxSessions?: number;
  /** Remembered results per session (a retry older than this window gets SESSION_EXPIRED). */
  sessionWindow?: number;
  maxWatchers?: number;
  /** Events buffered per watcher before it is cancelled as too slow. */
  watcherQueueMax?: number;
  /**
   * How long (ms) an apply's writes may wait in memory so that later applies share their level
   * batch. 0 (default): written at once, unless a batch is still landing, in which case they go
   * in the next one, together with everything applied meanwhile. Reads see them either way.
   */
  applyBatchDelayMs?: number;
  /** Level ops gathered before they are written whatever the delay (bounds the memory they hold). */
  applyBatchMaxOps?: number;
  /** Told once when an apply batch fails to land; every later read and apply then throws it. */
  onWriteError?: (err: Error) => void;
  /**
   * Key prefixes whose keys (and values) are also kept in memory, so that get() and a
   * command's get and scan under them need no level read (a scan is a thread-pool round trip
   * inside apply, on the write path). For small sets read on every write (a partition's
   * leases). Bounded by `memoryKeysMax` keys and `memoryBytesMax` bytes together; past either,
   * the copy is dropped and those reads go to level again (until the next open).
   */
  memoryPrefixes?: Uint8Array[];
  memoryKeysMax?: number;
  memoryBytesMax?: number;
  logger?: Logger;
}

type LevelOp = { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array };

interface Pending {
  kv: KeyValue | null; // null = deleted
}

interface Session {
  // seq -> encoded result; invariant: size <= sessionWindow
  results: Map<number, Uint8Array>;
  floor: number; // every seq < floor has been evicted
  lastIndex: number;
}

interface Watcher {
  prefix: Buffer;
  onEvents: (events: TableEvent[]) => void;
  onError: (err: Error) => void;
  /** Revision below which events were already delivered during catch-up. */
  deliveredThrough: number;
  catchingUp: TableEvent[][] | null;
}

export class TableStateMachine {
  keys: GroupKeys;
  private applied = 0;
  private revision = 0;
  private compacted = 0;
  private readonly domains = new Map<string, DomainCommand>();
  private readonly sessions = new Map<string, Session>();
  private readonly watchers = new Map<number, Watcher>();
  private nextWatcherId = 1;
  private readonly o: Required<Omit<StateMachineOptions, 'logger'>>;
  private readonly log: Logger;
  private trimming = false;
  // Apply writes go to level in batches, one in flight at a time (two in the thread pool at
  // once may land either way round). Writes of applies not yet handed to level wait in
  // `pending*`; the batch in flight is `landing` with its data writes in `landingKv`. Reads
  // look at pending, then landing, then level, so what an apply answered is what they see.
  private landing: Promise<void> | undefined;
  private landingKv: Map<string, Pending> | undefined;
  private pendingKv = new Map<string, Pending>();
  private pendingOps: LevelOp[] = [];
  /** The applied-index and revision puts of the pending ops: later applies update them in place. */
  private pendingTail: { keys: GroupKeys; applied: LevelOp; revision: LevelOp } | undefined;
  /** Pending ops should be written as soon as nothing is landing (delay over, bound reached, settled() waits). */
  private pendingDue = false;
  private pendingTimer: NodeJS.Timeout | undefined;
  /** Applies merged into pending so far, and how many of them have landed. */
  private mergedApplies = 0;
  private landedApplies = 0;
  /** The first failed batch: nothing is written after it, every read and apply throws it. */
  private writeFailure: Error | undefined;
  /** Applies run one at a time; their writes join pending only when the whole call succeeded. */
  private applying = false;
  private applyCalls = 0;
  private applyQueue: Promise<unknown> = Promise.resolve();
  /** The keys under `memoryPrefixes` as applied (pending and landing writes included); undefined: not kept. */
  private mem: Map<string, KeyValue> | undefined;
  private memBytes = 0;
  private readonly memPrefixes: string[];

  constructor(
    readonly db: Level<Uint8Array, Uint8Array>,
    readonly groupId: number,
    opts: StateMachineOptions = {},
  ) {
    this.keys = new GroupKeys(groupId);
    this.log = opts.logger ?? silentLogger;
    this.o = {
      historyRevisions: opts.historyRevisions ?? 10_000,
      maxSessions: opts.maxSessions ?? 10_000,
      sessionWindow: opts.sessionWindow ?? 256,
      maxWatchers: opts.maxWatchers ?? 10_000,
      watcherQueueMax: opts.watcherQueueMax ?? 10_000,
      applyBatchDelayMs: opts.applyBatchDelayMs ?? 0,
      applyBatchMaxOps: opts.applyBatchMaxOps ?? 4096,
      onWriteError: opts.onWriteError ?? (() => undefined),
      memoryPrefixes: opts.memoryPrefixes ?? [],
      memoryKeysMax: opts.memoryKeysMax ?? 10_000,
      memoryBytesMax: opts.memoryBytesMax ?? 16 << 20,
    };
    this.memPrefixes = this.o.memoryPrefixes.map((p) => latin1(p));
  }

  /** Loads applied index, revision and sessions from disk. */
  async open(): Promise<void> {
    const gen = this.db.getSync(GroupKeys.generationKey(this.groupId));
    this.keys = new GroupKeys(this.groupId, gen && gen.length === 4 ? Buffer.from(gen).readUInt32BE(0) : 0);
    this.applied = readU64(this.db.getSync(this.keys.appliedKey));
    this.revision = readU64(this.db.getSync(this.keys.revisionKey));
    this.compacted = readU64(this.db.getSync(this.keys.compactedKey));
    this.sessions.clear();
    const sp = this.keys.kindPrefix(KIND_SESSION);
    // Keys: s<client id>\0\0 -> floor, last index; s<client id>\0\1<seq u64> -> result.
    for await (const [k, v] of this.db.iterator({ gte: sp, lt: GroupKeys.prefixEnd(sp) })) {
      const rest = Buffer.from(k).subarray(sp.length);
      const nul = rest.indexOf(0);
      if (nul < 0 || nul + 1 >= rest.length) continue;
      const id = rest.subarray(0, nul).toString('utf8');
      let sess = this.sessions.get(id);
      if (!sess) this.sessions.set(id, (sess = { results: new Map(), floor: 0, lastIndex: 0 }));
      if (rest[nul + 1] === 0) {
        const b = Buffer.from(v);
        sess.floor = Number(b.readBigUInt64BE(0));
        sess.lastIndex = Number(b.readBigUInt64BE(8));
      } else if (rest.length === nul + 10) {
        sess.results.set(Number(rest.readBigUInt64BE(nul + 2)), Buffer.from(v));
      }
    }
    await this.loadMemory();
  }

  /** Reads the keys under `memoryPrefixes` into memory (none past the bounds: then not kept). */
  private async loadMemory(): Promise<void> {
    this.mem = undefined;
    this.memBytes = 0;
    if (this.memPrefixes.length === 0) return;
    const mem = new Map<string, KeyValue>();
    let bytes = 0;
    for (const p of this.o.memoryPrefixes) {
      const dp = this.keys.data(p);
      const end = GroupKeys.prefixEnd(dp);
      const rows = await this.db.iterator({ gte: dp, lt: end.length > 0 ? end : this.keys.kindPrefix(KIND_DATA + 1), limit: this.o.memoryKeysMax + 1 - mem.size }).all();
      for (const [k, v] of rows) {
        const kv = fromPbKv(pb.KeyValue.decode(v));
        mem.set(latin1(Buffer.from(k).subarray(this.keys.dataOffset)), kv);
        bytes += memCost(kv);
      }
      if (mem.size > this.o.memoryKeysMax || bytes > this.o.memoryBytesMax) return this.dropMemory(mem.size, bytes);
    }
    // Writes not yet in level (there are none after settled(), which every caller waits for).
    for (const l of this.writeLayers()) for (const [k, p] of l) if (this.isMemKey(k)) bytes += setMem(mem, k, p);
    this.mem = mem;
    this.memBytes = bytes;
    if (mem.size > this.o.memoryKeysMax || bytes > this.o.memoryBytesMax) this.dropMemory(mem.size, bytes);
  }

  private dropMemory(keys: number, bytes: number): void {
    this.log.warn({ group: this.groupId, keys, bytes }, 'table: keys under the memory prefixes exceed the bound; reading them from level');
    this.mem = undefined;
    this.memBytes = 0;
  }

  private isMemKey(k: string): boolean {
    for (const p of this.memPrefixes) if (k.startsWith(p)) return true;
    return false;
  }

  register(name: string, fn: DomainCommand): void {
    if (this.domains.has(name)) throw new TypeError(`table: domain command ${name} registered twice`);
    this.domains.set(name, fn);
  }

  get appliedIndex(): number {
    return this.applied;
  }
  get currentRevision(): number {
    return this.revision;
  }
  get compactedRevision(): number {
    return this.compacted;
  }

  /**
   * Applies committed entries (index order; entries at or below the applied index are skipped,
   * as happens when a restart replays the log). Empty data is a no-op entry. Returns one result
   * per entry that carried a command, keyed by index.
   */
  async apply(entries: readonly { index: number; data: Uint8Array }[]): Promise<Map<number, CommandResult>> {
    const results = await this.applyStaged(entries);
    await this.settled();
    return results;
  }

  /**
   * Like apply(), but answers as soon as the results are known, before their level batch has
   * landed: the host answers proposals one thread-pool round trip earlier (this batch is on
   * every write's critical path), and applies that come while a batch lands share the next
   * one (with `applyBatchDelayMs`, also those within that delay). Until they land, get(), the
   * next applies and their commands read the writes from memory, and every read that needs
   * level itself (range, watch, snapshot, restore) first waits for them through settled(), so
   * a read that starts after the answer sees the write. Acknowledging before landing costs no
   * durability: these batches are never synced anyway; the committed Raft log is the record
   * and replay rebuilds it. settled() rejects if a batch failed.
   */
  applyStaged(entries: readonly { index: number; data: Uint8Array }[]): Promise<Map<number, CommandResult>> {
    // Queued behind any apply not yet finished, so entries are applied in call order.
    const run = this.applyCalls > 0 ? this.applyQueue.then(() => this.applyNow(entries)) : this.applyNow(entries);
    this.applyCalls++;
    const done = (): void => {
      this.applyCalls--;
    };
    this.applyQueue = run.then(done, done);
    return run;
  }

  private async applyNow(entries: readonly { index: number; data: Uint8Array }[]): Promise<Map<number, CommandResult>> {
    const results = new Map<number, CommandResult>();
    if (entries.length === 0) return results;
    this.throwIfFailed();
    this.applying = true;
    try {
      // Bounded memory: past the bound, wait for the landing batch (which takes what is pending).
      while (this.pendingOps.length >= this.o.applyBatchMaxOps && this.landing) {
        await this.landing.catch(() => undefined);
        this.throwIfFailed();
      }
      return await this.applyEntries(entries, results);
    } finally {
      this.applying = false;
      this.maybeWrite();
    }
  }

  private async applyEntries(entries: readonly { index: number; data: Uint8Array }[], results: Map<number, CommandResult>): Promise<Map<number, CommandResult>> {
    // This call's writes; they join pending only at the end, so a command that throws (a bug:
    // the host stops) leaves nothing half-applied to be written later.
    const overlay = new Map<string, Pending>();
    const ops: LevelOp[] = [];
    const events: TableEvent[] = [];
    const touchedSessions = new Set<string>();
    let applied = this.applied;
    let revision = this.revision;
    for (const e of entries) {
      if (e.index <= applied) continue;
      assert(e.index === applied + 1 || applied === 0 || e.index > applied, 'entries applied out of order');
      applied = e.index;
      if (e.data.length === 0) continue;
      let cmd: containerstack.table.Command;
      try {
        cmd = pb.Command.decode(e.data);
      } catch (err) {
        // A command no replica can read is recorded as failed on all of them.
        results.set(e.index, { revision, succeeded: false, errorCode: 'TABLE_BAD_COMMAND', errorMessage: `undecodable command: ${(err as Error).message}`, index: e.index });
        continue;
      }
      if (cmd.clientId && (cmd.clientId.length > 128 || cmd.clientId.includes('\u0000'))) {
        results.set(e.index, { revision, succeeded: false, errorCode: 'TABLE_BAD_COMMAND', errorMessage: 'client id longer than 128 or containing NUL', index: e.index });
        continue;
      }
      // Idempotency: a retried (client, seq) gets its first result again, not a second effect.
      const session = cmd.clientId ? this.sessions.get(cmd.clientId) : undefined;
      if (cmd.clientId && session) {
        const prior = session.results.get(cmd.seq);
        if (prior) {
          results.set(e.index, { ...decodeResult(prior), clientId: cmd.clientId, seq: cmd.seq });
          continue;
        }
        if (cmd.seq < session.floor) {
          results.set(e.index, { revision, succeeded: false, errorCode: 'TABLE_SESSION_EXPIRED', errorMessage: `seq ${cmd.seq} is older than the session window`, index: e.index, clientId: cmd.clientId, seq: cmd.seq });
          continue;
        }
      }
      const nextRev = revision + 1;
      const before = events.length;
      const res: CommandResult = { revision, succeeded: true, index: e.index };
      try {
        if (cmd.domain) {
          const fn = this.domains.get(cmd.domain);
          if (!fn) throw new UnknownDomainCommandError(`no domain command ${cmd.domain}`);
          // Writes of a failed domain command must not leak: stage them, commit on success.
          const staged = new Map<string, Pending>();
          const ctx = this.domainContext(e.index, overlay, staged);
          const out = await fn(ctx, cmd.args ?? new Uint8Array(0));
          for (const [k, p] of staged) this.stage(overlay, ops, events, k, p.kv === null ? null : p.kv.value, nextRev);
          res.domainResult = out;
        } else if (cmd.compares && cmd.compares.length > 0) {
          const ok = cmd.compares.every((c) => this.compare(overlay, c));
          res.succeeded = ok;
          await this.applyOps(overlay, ops, events, ok ? cmd.ops ?? [] : cmd.failure ?? [], nextRev);
        } else {
          await this.applyOps(overlay, ops, events, cmd.ops ?? [], nextRev);
        }
      } catch (err) {
        events.length = before;
        res.succeeded = false;
        if (err instanceof DomainError) {
          res.errorCode = err.domainCode;
          // Stored without our own prefix: the error that carries it to the caller adds it once.
          res.errorMessage = err.message.replace(/^table: /, '');
        } else if (err instanceof UnknownDomainCommandError || err instanceof LimitExceededError) {
          res.errorCode = err.code;
          res.errorMessage = err.message.replace(/^table: /, '');
        } else {
          // A bug in a domain command, not an operating error: stop rather than diverge.
          throw err;
        }
      }
      if (events.length > before) revision = nextRev;
      res.revision = revision;
      if (cmd.clientId) {
        this.remember(cmd.clientId, cmd.seq, res, e.index, ops);
        touchedSessions.add(cmd.clientId);
      }
      results.set(e.index, cmd.clientId ? { ...res, clientId: cmd.clientId, seq: cmd.seq } : res);
    }
    if (applied === this.applied) return results;
    // Watch history: events of this batch, and history past the window trimmed (by clear(), below).
    const perRev = new Map<number, number>();
    if (this.o.historyRevisions > 0) {
      for (const ev of events) {
        const n = perRev.get(ev.revision) ?? 0;
        perRev.set(ev.revision, n + 1);
        ops.push({ type: 'put', key: this.keys.event(ev.revision, n), value: pb.Event.encode(toPbEvent(ev)).finish() });
      }
    }
    for (const id of touchedSessions) {
      const s = this.sessions.get(id);
      if (s) ops.push({ type: 'put', key: this.sessionMetaKey(id), value: Buffer.concat([u64(s.floor), u64(s.lastIndex)]) });
    }
    this.evictSessions(ops);
    // Join pending. Ops keep their order (a later put or delete of a key wins in the batch);
    // the applied index and revision are written once per batch, after everything they cover.
    const mem = this.mem;
    for (const [k, p] of overlay) {
      this.pendingKv.set(k, p);
      if (mem && this.isMemKey(k)) this.memBytes += setMem(mem, k, p);
    }
    if (mem && (mem.size > this.o.memoryKeysMax || this.memBytes > this.o.memoryBytesMax)) this.dropMemory(mem.size, this.memBytes);
    for (const op of ops) this.pendingOps.push(op);
    const tail = this.pendingTail;
    if (tail && tail.keys === this.keys) {
      // Moved to the end so they still follow every op they cover.
      this.pendingOps.splice(this.pendingOps.indexOf(tail.applied), 1);
      this.pendingOps.splice(this.pendingOps.indexOf(tail.revision), 1);
      tail.applied.value = u64(applied);
      tail.revision.value = u64(revision);
      this.pendingOps.push(tail.applied, tail.revision);
    } else {
      const a: LevelOp = { type: 'put', key: this.keys.appliedKey, value: u64(applied) };
      const r: LevelOp = { type: 'put', key: this.keys.revisionKey, value: u64(revision) };
      this.pendingOps.push(a, r);
      this.pendingTail = { keys: this.keys, applied: a, revision: r };
    }
    this.mergedApplies++;
    if (this.o.applyBatchDelayMs <= 0 || this.pendingOps.length >= this.o.applyBatchMaxOps) this.pendingDue = true;
    else if (!this.pendingTimer) {
      this.pendingTimer = setTimeout(() => {
        this.pendingTimer = undefined;
        this.pendingDue = true;
        this.maybeWrite();
      }, this.o.applyBatchDelayMs);
      // Nothing is lost by exiting first: replay of the committed log rebuilds these writes.
      this.pendingTimer.unref();
    }
    this.applied = applied;
    this.revision = revision;
    if (events.length > 0) this.publish(events);
    return results;
  }

  /** Hands what is pending to level as one batch, when it is due and nothing else is landing or being applied. */
  private maybeWrite(): void {
    if (!this.pendingDue || this.landing || this.applying || this.writeFailure || this.pendingOps.length === 0) return;
    const ops = this.pendingOps;
    const kv = this.pendingKv;
    const through = this.mergedApplies;
    this.pendingOps = [];
    this.pendingKv = new Map();
    this.pendingTail = undefined;
    this.pendingDue = false;
    if (this.pendingTimer) {
      clearTimeout(this.pendingTimer);
      this.pendingTimer = undefined;
    }
    // The Raft log is the durable record; this batch need not be synced (replay rebuilds it).
    const landing: Promise<void> = this.db.batch(ops as { type: 'put'; key: Uint8Array; value: Uint8Array }[]).then(
      () => {
        this.landing = undefined;
        this.landingKv = undefined;
        this.landedApplies = through;
        this.maybeTrimHistory();
        // What was applied meanwhile goes next, if due (else when its delay is over).
        this.maybeWrite();
      },
      (err: unknown) => {
        // The batch stays as `landing` and in landingKv: nothing later may be written over a
        // gap, and every later read and apply throws this.
        const e = err instanceof Error ? err : new Error(String(err));
        this.writeFailure = e;
        this.o.onWriteError(e);
        throw e;
      },
    );
    landing.catch(() => undefined);
    this.landing = landing;
    this.landingKv = kv;
  }

  private throwIfFailed(): void {
    if (this.writeFailure) throw this.writeFailure;
  }

  /**
   * Resolves once everything applied before the call (including an apply in progress) is in
   * level; rejects if a batch failed. Writes pending for their delay go at once.
   */
  async settled(): Promise<void> {
    if (this.applyCalls > 0) await this.applyQueue;
    const target = this.mergedApplies;
    while (this.landedApplies < target) {
      this.throwIfFailed();
      if (this.landing) await this.landing.catch(() => undefined);
      else if (this.applying) await this.applyQueue;
      else {
        this.pendingDue = true;
        this.maybeWrite();
      }
    }
    this.throwIfFailed();
  }

  private domainContext(index: number, overlay: Map<string, Pending>, staged: Map<string, Pending>): DomainContext {
    return {
      index,
      get: (key) => {
        const k = latin1(key);
        const s = staged.get(k);
        if (s) return s.kv?.value;
        return this.readKv(overlay, key)?.value;
      },
      put: (key, value) => {
        checkKey(key);
        staged.set(latin1(key), { kv: { key: Buffer.from(key), value: Buffer.from(value), createRevision: 0, modRevision: 0, version: 0 } });
      },
      delete: (key) => {
        staged.set(latin1(key), { kv: null });
      },
      scan: async (prefix, limit, startAfter) => {
        const pre = latin1(prefix);
        const after = startAfter ? latin1(startAfter) : undefined;
        if (this.mem && this.isMemKey(pre)) return this.memoryScan(this.mem, pre, limit, after, overlay, staged);
        const merged = new Map<string, Uint8Array | null>();
        const dp = this.keys.data(prefix);
        const gt = startAfter ? this.keys.data(startAfter) : undefined;
        const end = GroupKeys.prefixEnd(dp);
        // Taken before level is read: whether or not the landing batch is in what the iterator
        // sees, its writes laid over it give the same answer.
        const layers = this.writeLayers(overlay, staged);
        // Level may hold keys these layers delete: read that many more so `limit` survive.
        let hidden = 0;
        for (const l of layers) for (const [k, p] of l) if (p.kv === null && inScan(k, pre, after)) hidden++;
        // One nextv for the whole range (a for-await loop costs a second thread-pool round trip).
        const found = await this.db.iterator({ ...(gt ? { gt } : { gte: dp }), lt: end.length > 0 ? end : this.keys.kindPrefix(KIND_DATA + 1), limit: limit + hidden }).all();
        for (const [k, v] of found) merged.set(latin1(Buffer.from(k).subarray(this.keys.dataOffset)), pb.KeyValue.decode(v).value);
        layWrites(merged, layers, pre, after);
        return liveSorted(merged, limit);
      },
    };
  }

  /** A command's scan under a memory prefix: the memory copy with the command's own writes over it. */
  private memoryScan(mem: Map<string, KeyValue>, pre: string, limit: number, after: string | undefined, overlay: Map<string, Pending>, staged: Map<string, Pending>): { key: Uint8Array; value: Uint8Array }[] {
    const merged = new Map<string, Uint8Array | null>();
    for (const [k, kv] of mem) if (inScan(k, pre, after)) merged.set(k, kv.value);
    layWrites(merged, [overlay, staged], pre, after);
    return liveSorted(merged, limit);
  }

  /** The in-memory write layers over level, oldest first: the landing batch, pending, then the given ones. */
  private writeLayers(...newer: Map<string, Pending>[]): Map<string, Pending>[] {
    const layers: Map<string, Pending>[] = [];
    if (this.landingKv) layers.push(this.landingKv);
    layers.push(this.pendingKv, ...newer);
    return layers;
  }

  /** A key as an apply sees it: its own writes, then the memory copy or those pending, then the landing batch's, then level. */
  private readKv(overlay: ReadonlyMap<string, Pending>, key: Uint8Array): KeyValue | undefined {
    const k = latin1(key);
    const own = overlay.get(k);
    if (own) return own.kv ?? undefined;
    if (this.mem && this.isMemKey(k)) return this.mem.get(k);
    const p = this.pendingKv.get(k) ?? this.landingKv?.get(k);
    if (p) return p.kv ?? undefined;
    const raw = this.db.getSync(this.keys.data(key));
    if (!raw) return undefined;
    return fromPbKv(pb.KeyValue.decode(raw));
  }

  private compare(overlay: Map<string, Pending>, c: containerstack.table.Compare.$Properties): boolean {
    const kv = this.readKv(overlay, c.key ?? new Uint8Array(0));
    switch (c.target) {
      case pb.Compare.Target.EXISTS:
        return (kv !== undefined) === (c.exists ?? false);
      case pb.Compare.Target.MOD_REVISION:
        return (kv?.modRevision ?? 0) === (c.modRevision ?? 0);
      case pb.Compare.Target.VERSION:
        return (kv?.version ?? 0) === (c.version ?? 0);
      default:
        return kv !== undefined && Buffer.from(kv.value).equals(Buffer.from(c.value ?? new Uint8Array(0)));
    }
  }

  private async applyOps(overlay: Map<string, Pending>, ops: { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[], events: TableEvent[], list: containerstack.table.Op.$Properties[], rev: number): Promise<void> {
    for (const op of list) {
      const key = op.key ?? new Uint8Array(0);
      if (op.kind === pb.Op.Kind.DELETE_PREFIX) {
        // Bounded: a prefix delete over more than this many keys fails the command on every replica.
        const dp = this.keys.data(key);
        const end = GroupKeys.prefixEnd(dp);
        const found: string[] = [];
        const layers = this.writeLayers(overlay);
        for (const k of await this.db.keys({ gte: dp, lt: end.length > 0 ? end : this.keys.kindPrefix(KIND_DATA + 1), limit: 100_001 }).all()) {
          found.push(latin1(Buffer.from(k).subarray(this.keys.dataOffset)));
        }
        // Keys written but not yet in level (deleted ones are skipped by stage()).
        const pre = latin1(key);
        for (const l of layers) for (const [k, p] of l) if (k.startsWith(pre) && p.kv) found.push(k);
        if (found.length > 100_000) throw new LimitExceededError('keys deleted by one prefix delete', 100_000);
        for (const k of new Set(found)) this.stage(overlay, ops, events, k, null, rev);
      } else {
        checkKey(key);
        this.stage(overlay, ops, events, latin1(key), op.kind === pb.Op.Kind.DELETE ? null : op.value ?? new Uint8Array(0), rev);
      }
    }
  }

  /** Records one write in the overlay, the level ops and the events. */
  private stage(overlay: Map<string, Pending>, ops: { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[], events: TableEvent[], k: string, value: Uint8Array | null, rev: number): void {
    const key = Buffer.from(k, 'latin1');
    const prev = this.readKv(overlay, key);
    if (value === null) {
      if (!prev) return; // deleting nothing writes nothing
      overlay.set(k, { kv: null });
      ops.push({ type: 'del', key: this.keys.data(key) });
      events.push({ type: 'delete', kv: { ...prev, value: new Uint8Array(0), modRevision: rev }, revision: rev });
      return;
    }
    const kv: KeyValue = { key, value: Buffer.from(value), createRevision: prev ? prev.createRevision : rev, modRevision: rev, version: prev ? prev.version + 1 : 1 };
    overlay.set(k, { kv });
    ops.push({ type: 'put', key: this.keys.data(key), value: pb.KeyValue.encode(toPbKv(kv)).finish() });
    events.push({ type: 'put', kv, revision: rev });
  }

  private sessionMetaKey(id: string): Buffer {
    return Buffer.concat([this.keys.session(id), Buffer.from([0, 0])]);
  }

  private sessionResultKey(id: string, seq: number): Buffer {
    return Buffer.concat([this.keys.session(id), Buffer.from([0, 1]), u64(seq)]);
  }

  /** Records a result; only the new result and evicted ones touch the disk (not the window). */
  private remember(clientId: string, seq: number, res: CommandResult, index: number, ops: { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[]): void {
    let s = this.sessions.get(clientId);
    if (!s) {
      s = { results: new Map(), floor: 0, lastIndex: index };
      this.sessions.set(clientId, s);
    }
    s.lastIndex = index;
    const enc = pb.CommandResult.encode(res).finish();
    s.results.set(seq, enc);
    ops.push({ type: 'put', key: this.sessionResultKey(clientId, seq), value: enc });
    while (s.results.size > this.o.sessionWindow) {
      // Sequence numbers mostly arrive in order, so the oldest is usually the first inserted.
      let min = s.results.keys().next().value as number;
      for (const k of s.results.keys()) if (k < min) min = k;
      s.results.delete(min);
      s.floor = Math.max(s.floor, min + 1);
      ops.push({ type: 'del', key: this.sessionResultKey(clientId, min) });
    }
  }

  private evictSessions(ops: { type: 'put' | 'del'; key: Uint8Array; value?: Uint8Array }[]): void {
    if (this.sessions.size <= this.o.maxSessions) return;
    // Deterministic: by last index (ties by id), identical on every replica.
    const order = [...this.sessions.entries()].sort((a, b) => a[1].lastIndex - b[1].lastIndex || (a[0] < b[0] ? -1 : 1));
    for (let i = 0; i < order.length - this.o.maxSessions; i++) {
      const [id, sess] = order[i] as [string, Session];
      this.sessions.delete(id);
      ops.push({ type: 'del', key: this.sessionMetaKey(id) });
      for (const seq of sess.results.keys()) ops.push({ type: 'del', key: this.sessionResultKey(id, seq) });
    }
  }

  // ---- reads (callers ensure linearizability through ReadIndex before reading) ----

  get(key: Uint8Array): KeyValue | undefined {
    // After a failed batch memory and level disagree, and the host has stopped: no answers.
    this.throwIfFailed();
    return this.readKv(EMPTY_OVERLAY, key);
  }

  /** Keys in [start, end) (or with `prefix`), at most `limit`; `next` resumes after the last. */
  async range(opts: { prefix?: Uint8Array; start?: Uint8Array; end?: Uint8Array; limit: number; keysOnly?: boolean }): Promise<{ kvs: KeyValue[]; next: Uint8Array | undefined }> {
    await this.settled();
    const limit = Math.max(1, Math.min(opts.limit, 10_000));
    const prefix = opts.prefix ?? new Uint8Array(0);
    const lo = this.keys.data(opts.start && Buffer.compare(Buffer.from(opts.start), Buffer.from(prefix)) > 0 ? opts.start : prefix);
    let hi: Buffer;
    if (opts.end && opts.end.length > 0) hi = this.keys.data(opts.end);
    else {
      const e = GroupKeys.prefixEnd(this.keys.data(prefix));
      hi = e.length > 0 ? e : this.keys.kindPrefix(KIND_DATA + 1);
    }
    if (prefix.length > 0) {
      const pe = GroupKeys.prefixEnd(this.keys.data(prefix));
      if (pe.length > 0 && Buffer.compare(pe, hi) < 0) hi = pe;
    }
    const kvs: KeyValue[] = [];
    let more = false;
    for (const [, v] of await this.db.iterator({ gte: lo, lt: hi, limit: limit + 1 }).all()) {
      if (kvs.length === limit) {
        more = true;
        break;
      }
      const kv = fromPbKv(pb.KeyValue.decode(v));
      if (opts.keysOnly) kv.value = new Uint8Array(0);
      kvs.push(kv);
    }
    const last = kvs[kvs.length - 1];
    return { kvs, next: more && last ? Buffer.concat([Buffer.from(last.key), Buffer.from([0])]) : undefined };
  }

  // ---- watch ----

  /**
   * Delivers, in revision order, every event on keys starting with `prefix` with revision >=
   * fromRevision (0 = only future events). Throws WatchCompactedError when history no longer
   * reaches back that far. A watcher that falls `watcherQueueMax` events behind is cancelled.
   */
  async watch(prefix: Uint8Array, fromRevision: number, onEvents: (events: TableEvent[]) => void, onError: (err: Error) => void): Promise<() => void> {
    await this.settled();
    if (this.watchers.size >= this.o.maxWatchers) throw new LimitExceededError('table watchers', this.o.maxWatchers);
    // Without history every past revision is compacted (the next one is the first a watch gets).
    const compacted = this.o.historyRevisions > 0 ? this.compacted : this.revision;
    if (fromRevision > 0 && fromRevision <= compacted) throw new WatchCompactedError(compacted + 1);
    const id = this.nextWatcherId++;
    const w: Watcher = { prefix: Buffer.from(prefix), onEvents, onError, deliveredThrough: this.revision, catchingUp: fromRevision > 0 && fromRevision <= this.revision ? [] : null };
    this.watchers.set(id, w);
    const cancel = (): void => {
      this.watchers.delete(id);
    };
    if (w.catchingUp) {
      const through = this.revision;
      const lo = this.keys.event(fromRevision, 0);
      const hi = this.keys.event(through + 1, 0);
      let batch: TableEvent[] = [];
      for await (const [, v] of this.db.iterator({ gte: lo, lt: hi })) {
        const ev = fromPbEvent(pb.Event.decode(v));
        if (!Buffer.from(ev.kv.key).subarray(0, w.prefix.length).equals(w.prefix)) continue;
        batch.push(ev);
        if (batch.length >= 1000) {
          onEvents(batch);
          batch = [];
        }
      }
      if (batch.length > 0) onEvents(batch);
      // Events published while we read history: deliver those past what history covered.
      const queued = w.catchingUp;
      w.catchingUp = null;
      for (const evs of queued) {
        const later = evs.filter((e) => e.revision > through);
        if (later.length > 0) onEvents(later);
      }
    }
    return cancel;
  }

  private publish(events: TableEvent[]): void {
    for (const [id, w] of this.watchers) {
      const mine = events.filter((e) => Buffer.from(e.kv.key).subarray(0, w.prefix.length).equals(w.prefix));
      if (mine.length === 0) continue;
      if (w.catchingUp) {
        w.catchingUp.push(mine);
        if (w.catchingUp.length > this.o.watcherQueueMax) {
          this.watchers.delete(id);
          w.onError(new LimitExceededError('events queued for a catching-up watcher', this.o.watcherQueueMax));
        }
        continue;
      }
      try {
        w.onEvents(mine);
      } catch (err) {
        this.watchers.delete(id);
        w.onError(err as Error);
      }
    }
  }

  private historyCleared = false;

  private maybeTrimHistory(): void {
    let keepFrom: number;
    if (this.o.historyRevisions <= 0) {
      // No history is written; events a state kept from before (when it had history) go once.
      if (this.historyCleared || this.trimming) return;
      this.historyCleared = true;
      keepFrom = this.revision + 1;
    } else {
      keepFrom = this.revision - this.o.historyRevisions;
      // Trim in steps of a tenth of the window so the clear() runs rarely.
      if (this.trimming || keepFrom <= this.compacted + Math.max(1, Math.floor(this.o.historyRevisions / 10))) return;
    }
    this.trimming = true;
    const lo = this.keys.event(0, 0);
    const hi = this.keys.event(keepFrom, 0);
    this.db
      .clear({ gte: lo, lt: hi })
      .then(() => this.db.put(this.keys.compactedKey, u64(keepFrom - 1)))
      .then(() => {
        this.compacted = keepFrom - 1;
      })
      .catch((err: unknown) => this.log.warn({ err }, 'table: history trim failed'))
      .finally(() => {
        this.trimming = false;
      });
  }

  // ---- snapshots ----

  /** Streams the group's state (data, sessions, metadata) as chunks of at most ~chunkBytes. */
  async *snapshotChunks(chunkBytes = 1 << 20): AsyncGenerator<Uint8Array> {
    await this.settled();
    let parts: Buffer[] = [];
    let size = 0;
    const hdr = Buffer.allocUnsafe(8);
    for await (const [k, v] of this.db.iterator({ gte: this.keys.prefix, lt: GroupKeys.prefixEnd(this.keys.prefix) })) {
      const kk = Buffer.from(k).subarray(this.keys.prefix.length);
      if (kk[0] === KIND_EVENT) continue; // watch history is not part of the state
      const h = Buffer.from(hdr);
      h.writeUInt32BE(kk.length, 0);
      h.writeUInt32BE(v.length, 4);
      parts.push(h, kk, Buffer.from(v));
      size += 8 + kk.length + v.length;
      if (size >= chunkBytes) {
        yield Buffer.concat(parts);
        parts = [];
        size = 0;
      }
    }
    if (parts.length > 0) yield Buffer.concat(parts);
  }

  /**
   * Replaces the group's state with a snapshot's chunks; watchers are told to re-list. The
   * chunks go into the next generation; only when every chunk is in does one synced write make
   * it current. If the chunks stop early (the iterable throws), the current state is untouched.
   */
  async restore(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    await this.beginRestore('local', 0);
    try {
      for await (const chunk of chunks) await this.restoreChunk('local', chunk);
    } catch (err) {
      await this.abortRestore();
      throw err;
    }
    await this.finishRestore('local');
  }

  private stagingKey(): Buffer {
    return Buffer.concat([GroupKeys.generationKey(this.groupId), Buffer.from('staging')]);
  }

  /** The transfer being received (identity and bytes held), if one was interrupted. */
  restoreProgress(): { identity: string; offset: number } | undefined {
    const raw = this.db.getSync(this.stagingKey());
    if (!raw) return undefined;
    const v = JSON.parse(Buffer.from(raw).toString()) as { identity: string; offset: number };
    return v;
  }

  /**
   * Starts (offset 0) or resumes (offset = bytes already held for the same identity) receiving
   * a snapshot into the next generation. Resuming with any other offset or identity throws, and
   * the sender restarts from restoreProgress().
   */
  async beginRestore(identity: string, offset: number): Promise<void> {
    await this.settled();
    const next = new GroupKeys(this.groupId, (this.keys.generation + 1) >>> 0);
    const cur = this.restoreProgress();
    if (offset > 0) {
      if (!cur || cur.identity !== identity || cur.offset !== offset) {
        throw new RangeError(`table: cannot resume snapshot ${identity} at ${offset}; holding ${cur ? `${cur.identity} at ${cur.offset}` : 'nothing'}`);
      }
      return;
    }
    // A new transfer: drop leftovers of any earlier one.
    await this.db.clear({ gte: next.prefix, lt: GroupKeys.prefixEnd(next.prefix) });
    await this.db.put(this.stagingKey(), Buffer.from(JSON.stringify({ identity, offset: 0 })));
  }

  /** Writes one chunk and the new progress in one batch, so progress never runs ahead of data. */
  async restoreChunk(identity: string, chunk: Uint8Array): Promise<void> {
    await this.settled();
    const next = new GroupKeys(this.groupId, (this.keys.generation + 1) >>> 0);
    const cur = this.restoreProgress();
    if (!cur || cur.identity !== identity) throw new RangeError(`table: no snapshot ${identity} being received`);
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const ops: { type: 'put'; key: Buffer; value: Buffer }[] = [];
    let p = 0;
    while (p < b.length) {
      if (b.length - p < 8) throw new RangeError('table: truncated snapshot chunk');
      const kl = b.readUInt32BE(p);
      const vl = b.readUInt32BE(p + 4);
      p += 8;
      if (b.length - p < kl + vl) throw new RangeError('table: truncated snapshot chunk');
      ops.push({ type: 'put', key: Buffer.concat([next.prefix, b.subarray(p, p + kl)]), value: Buffer.from(b.subarray(p + kl, p + kl + vl)) });
      p += kl + vl;
    }
    ops.push({ type: 'put', key: this.stagingKey(), value: Buffer.from(JSON.stringify({ identity, offset: cur.offset + b.length })) });
    await this.db.batch(ops);
  }

  /** Makes the received generation current with one synced write. */
  async finishRestore(identity: string): Promise<void> {
    await this.settled();
    const cur = this.restoreProgress();
    if (!cur || cur.identity !== identity) throw new RangeError(`table: no snapshot ${identity} being received`);
    const old = this.keys;
    const next = new GroupKeys(this.groupId, (old.generation + 1) >>> 0);
    const gen = Buffer.allocUnsafe(4);
    gen.writeUInt32BE(next.generation);
    await this.db.batch([
      { type: 'put', key: GroupKeys.generationKey(this.groupId), value: gen },
      { type: 'del', key: this.stagingKey() },
    ], { sync: true });
    await this.open();
    // History before the snapshot is gone: any watcher must re-list from the new state.
    this.compacted = this.revision;
    await this.db.put(this.keys.compactedKey, u64(this.compacted));
    for (const [id, w] of this.watchers) {
      this.watchers.delete(id);
      w.onError(new WatchCompactedError(this.revision + 1));
    }
    this.db.clear({ gte: old.prefix, lt: GroupKeys.prefixEnd(old.prefix) }).catch((err: unknown) => this.log.warn({ err }, 'table: clearing the previous generation failed'));
  }

  /** Ends every watch on this group with `err` (the group is being closed). */
  closeWatchers(err: Error): void {
    for (const [id, w] of this.watchers) {
      this.watchers.delete(id);
      w.onError(err);
    }
  }

  /**
   * Deletes every key of a group from the shared database: all generations (the current one,
   * a snapshot half received), the generation pointer and the transfer progress. Static: the
   * group need not be open (a node told to destroy a group it no longer hosts).
   */
  static async destroy(db: Level<Uint8Array, Uint8Array>, groupId: number): Promise<void> {
    const gk = GroupKeys.generationKey(groupId);
    await db.batch([
      { type: 'del', key: gk },
      { type: 'del', key: Buffer.concat([gk, Buffer.from('staging')]) },
    ]);
    const from = Buffer.from([0x74, 0, 0, 0, 0]);
    from.writeUInt32BE(groupId, 1);
    const to = Buffer.from([0x74, 0, 0, 0, 0]);
    if (groupId < 0xffffffff) to.writeUInt32BE(groupId + 1, 1);
    await db.clear(groupId < 0xffffffff ? { gte: from, lt: to } : { gte: from, lt: Buffer.from([0x75]) });
  }

  /** Drops a partial transfer (the current generation is untouched either way). */
  async abortRestore(): Promise<void> {
    const next = new GroupKeys(this.groupId, (this.keys.generation + 1) >>> 0);
    await this.db.del(this.stagingKey()).catch(() => undefined);
    await this.db.clear({ gte: next.prefix, lt: GroupKeys.prefixEnd(next.prefix) }).catch(() => undefined);
  }
}

/** Bytes a memory-kept key is counted for (key, value and a fixed overhead). */
function memCost(kv: KeyValue): number {
  return kv.key.length + kv.value.length + 64;
}

/** Applies one write to a memory copy; answers the change in counted bytes. */
function setMem(mem: Map<string, KeyValue>, k: string, p: Pending): number {
  const old = mem.get(k);
  const delta = -(old ? memCost(old) : 0);
  if (p.kv) {
    mem.set(k, p.kv);
    return delta + memCost(p.kv);
  }
  mem.delete(k);
  return delta;
}

const EMPTY_OVERLAY: ReadonlyMap<string, Pending> = new Map();
const MAX_KEY_BYTES = 64 * 1024;
function checkKey(key: Uint8Array): void {
  if (key.length === 0) throw new DomainError('TABLE_EMPTY_KEY', 'table: empty key');
  if (key.length > MAX_KEY_BYTES) throw new DomainError('TABLE_KEY_TOO_LARGE', `table: key of ${key.length} bytes exceeds ${MAX_KEY_BYTES}`);
}

function latin1(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

export function toPbKv(kv: KeyValue): containerstack.table.KeyValue.$Properties {
  return { key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version };
}
export function fromPbKv(p: containerstack.table.KeyValue.$Properties): KeyValue {
  return { key: p.key ?? new Uint8Array(0), value: p.value ?? new Uint8Array(0), createRevision: p.createRevision ?? 0, modRevision: p.modRevision ?? 0, version: p.version ?? 0 };
}
export function toPbEvent(e: TableEvent): containerstack.table.Event.$Properties {
  return { type: e.type === 'put' ? pb.Event.Type.PUT : pb.Event.Type.DELETE, kv: toPbKv(e.kv), revision: e.revision };
}
export function fromPbEvent(p: containerstack.table.Event.$Properties): TableEvent {
  return { type: p.type === pb.Event.Type.DELETE ? 'delete' : 'put', kv: fromPbKv(p.kv ?? {}), revision: p.revision ?? 0 };
}
function decodeResult(b: Uint8Array): CommandResult {
  const r = pb.CommandResult.decode(b);
  return { revision: r.revision, succeeded: r.succeeded, domainResult: r.domainResult, errorCode: r.errorCode, errorMessage: r.errorMessage, index: r.index };
}

/** Whether a scan of `pre` resuming after `after` covers key `k`. */
function inScan(k: string, pre: string, after: string | undefined): boolean {
  return k.startsWith(pre) && (after === undefined || k > after);
}

/** Lays the writes of `layers` (oldest first) that the scan covers over `merged`; deletions as null. */
function layWrites(merged: Map<string, Uint8Array | null>, layers: readonly Map<string, Pending>[], pre: string, after: string | undefined): void {
  for (const l of layers) for (const [k, p] of l) if (inScan(k, pre, after)) merged.set(k, p.kv ? p.kv.value : null);
}

/** The first `limit` entries of `merged` in key order, deletions (null) left out. */
function liveSorted(merged: Map<string, Uint8Array | null>, limit: number): { key: Uint8Array; value: Uint8Array }[] {
  const out: { key: Uint8Array; value: Uint8Array }[] = [];
  for (const k of [...merged.keys()].sort()) {
    const v = merged.get(k);
    if (v === null || v === undefined) continue;
    out.push({ key: Buffer.from(k, 'latin1'), value: v });
    if (out.length >= limit) break;
  }
  return out;
}
