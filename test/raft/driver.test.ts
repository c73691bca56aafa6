// RaftDriver: three drivers over an in-process transport with hand-driven ticks: election,
// proposals settle on apply, reads, redirects, durability order, shutdown.
import t from 'tap';
import { Prng } from '../../lib/common/index.js';
import {
  MemoryStorage, NotLeaderError, RaftDriver, ReadIndexDroppedError, StoppedError, type DriverStorage, type Entry, type HardState,
  type Message, type Snapshot, type TickSource,
} from '../../lib/raft/index.js';

class MemDriverStorage extends MemoryStorage implements DriverStorage {
  persisted: number[] = [];
  async persistReady(rd: { snapshot?: Snapshot; entries: Entry[]; hardState?: HardState }): Promise<void> {
    await new Promise((r) => setImmediate(r));
    if (rd.snapshot) this.applySnapshot(rd.snapshot);
    this.append(rd.entries);
    if (rd.hardState) this.setHardState(rd.hardState);
    for (const e of rd.entries) this.persisted.push(e.index);
  }
}

class ManualTicks implements TickSource {
  private fn: (() => void) | undefined;
  start(onTick: () => void): void {
    this.fn = onTick;
  }
  stop(): void {
    this.fn = undefined;
  }
  tick(): void {
    this.fn?.();
  }
}

function makeCluster(ids: number[]) {
  const drivers = new Map<number, RaftDriver>();
  const ticks = new Map<number, ManualTicks>();
  const applied = new Map<number, string[]>();
  const storages = new Map<number, MemDriverStorage>();
  const sentBeforePersist: string[] = [];
  const roles = new Map<number, string[]>();
  const down = new Set<number>();
  for (const id of ids) {
    const st = new MemDriverStorage();
    const boot = MemoryStorage.bootstrap(ids);
    st.applySnapshot(boot.snapshot());
    st.setHardState(boot.hardStateNow());
    storages.set(id, st);
    const tk = new ManualTicks();
    ticks.set(id, tk);
    applied.set(id, []);
    const d = new RaftDriver({
      raft: { id, groupId: 1, electionTicks: 10, heartbeatTicks: 1, prng: new Prng(id) },
      storage: st,
      ticks: tk,
      transport: {
        send(msgs: Message[]) {
          for (const m of msgs) {
            // Entries a message carries from its sender must already be durable there.
            for (const e of m.entries) if (m.type === 'app' && !st.persisted.includes(e.index) && st.term(e.index) === undefined) sentBeforePersist.push(`${id}:${e.index}`);
            setImmediate(() => {
              if (down.has(m.to) || down.has(m.from)) return;
              drivers.get(m.to)?.onMessage(structuredClone(m));
            });
          }
        },
      },
      stateMachine: {
        apply(ents) {
          for (const e of ents) if (e.type === 'normal' && e.data.byteLength > 0) applied.get(id)?.push(new TextDecoder().decode(e.data));
        },
        restore() {},
      },
      onSoftState(s) {
        let l = roles.get(id);
        if (!l) roles.set(id, (l = []));
        l.push(`${s.role}:${s.lead}`);
      },
    });
    drivers.set(id, d);
  }
  for (const d of drivers.values()) d.start();
  const settle = async () => {
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setImmediate(r));
      for (const d of drivers.values()) await d.settled();
    }
  };
  const tickAll = async (n: number) => {
    for (let i = 0; i < n; i++) {
      for (const [id, tk] of ticks) if (!down.has(id)) tk.tick();
      await settle();
    }
  };
  const leader = () => [...drivers.values()].find((d) => d.status().role === 'leader');
  return { drivers, applied, storages, tickAll, settle, leader, down, sentBeforePersist, roles };
}

t.test('driver: elects, replicates, applies, reads', async (t) => {
  const c = makeCluster([1, 2, 3]);
  await c.tickAll(30);
  const l = c.leader();
  t.ok(l, 'a leader was elected');
  if (!l) return;
  const idx = await Promise.all(['a', 'b', 'c'].map((x) => l.propose(new TextEncoder().encode(x))));
  t.ok(idx[0]! < idx[1]! && idx[1]! < idx[2]!, 'indexes in order');
  t.same(c.applied.get(l.node.id), ['a', 'b', 'c']);
  await c.tickAll(2);
  for (const id of [1, 2, 3]) t.same(c.applied.get(id), ['a', 'b', 'c'], `node ${id} applied`);
  const follower = [...c.drivers.values()].find((d) => d !== l) as RaftDriver;
  await t.rejects(follower.propose(new Uint8Array([1])), NotLeaderError, 'followers redirect');
  const readP = follower.readIndex();
  await c.tickAll(1);
  const ri = await readP;
  t.ok(ri >= idx[2]!, 'read point covers every write acknowledged before it');
  t.same(c.sentBeforePersist, [], 'no entry left a node before it was persisted');
  t.equal(c.roles.get(l.node.id)?.at(-1), `leader:${l.node.id}`, 'the leader was told it leads');
  t.equal(c.roles.get(follower.node.id)?.at(-1), `follower:${l.node.id}`, 'a follower was told who leads');
  for (const d of c.drivers.values()) await d.stop();
});

t.test('driver: reads time out without a leader; stop fails pending work', async (t) => {
  const c = makeCluster([1, 2, 3]);
  await c.tickAll(30);
  const l = c.leader();
  if (!l) {
    t.fail('no leader');
    return;
  }
  const others = [...c.drivers.values()].filter((d) => d !== l);
  for (const d of others) c.down.add(d.node.id);
  const readP = l.readIndex();
  const propP = l.propose(new Uint8Array([9]));
  let readErr: unknown;
  readP.catch((e: unknown) => {
    readErr = e;
  });
  await c.tickAll(60);
  t.ok(readErr instanceof ReadIndexDroppedError, 'read timed out (no quorum to confirm leadership)');
  await l.stop();
  await t.rejects(propP, StoppedError, 'pending proposal fails on stop');
  await t.rejects(l.propose(new Uint8Array([1])), StoppedError);
  for (const d of others) await d.stop();
});

t.test('driver on LevelRaftStorage: a single-member group survives a restart', async (t) => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { LevelRaftDb } = await import('../../lib/raft/index.js');
  const dir = mkdtempSync(join(tmpdir(), 'raft-driver-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = async (expectReplay: string[], propose: string[]) => {
    const db = await LevelRaftDb.open(dir);
    const storage = await db.openGroup(4, [1]);
    const tk = new ManualTicks();
    const seen: string[] = [];
    const d = new RaftDriver({
      raft: { id: 1, groupId: 4, electionTicks: 5, heartbeatTicks: 1, prng: new Prng(3) },
      storage,
      ticks: tk,
      transport: { send() {} },
      stateMachine: {
        apply(ents) {
          for (const e of ents) if (e.data.byteLength > 0) seen.push(new TextDecoder().decode(e.data));
        },
        restore() {},
      },
    });
    d.start();
    for (let i = 0; i < 20 && d.status().role !== 'leader'; i++) {
      tk.tick();
      await d.settled();
    }
    t.equal(d.status().role, 'leader', 'single member elects itself');
    t.same(seen, expectReplay, 'committed entries replayed on start');
    for (const x of propose) await d.propose(new TextEncoder().encode(x));
    await d.stop();
    await db.close();
    return seen;
  };
  const first = await run([], ['p', 'q']);
  t.same(first, ['p', 'q']);
  await run(['p', 'q'], []);
});
