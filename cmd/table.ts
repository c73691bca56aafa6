// `containerstack table ...`: run a table member (`serve`) and use a table from the shell
// (`get`, `put`, `del`, `range`, `watch`, `status`). A table runs as its own cluster of 1 or
// 3+ members; with no --peers, `serve` runs a single embedded member.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { describeConfig, parseHostPort, LOG_LEVELS, errorMessage, type LogLevel } from '../lib/common/index.js';
import { openRaftNode, registerTableService, TableClient, type RaftHost } from '../lib/table/index.js';
import { loadDaemonConfig, runDaemon } from './lib/daemon.js';
import { parsePeers } from './lib/peers.js';

const serveSpec = {
  id: { type: 'int', default: 1, min: 1, description: 'this member\'s id (unique in the cluster)', env: 'TABLE_ID' },
  listen: { type: 'hostport', default: '127.0.0.1:7100', description: 'RPC address (raft peers and clients)', env: 'TABLE_LISTEN' },
  peers: { type: 'string[]', default: [], description: 'every member as id=host:port (including this one); empty: single member', env: 'TABLE_PEERS' },
  dataDir: { type: 'string', default: './data/table', description: 'where the log and the table live', env: 'TABLE_DATA_DIR' },
  adminListen: { type: 'hostport', default: '127.0.0.1:7170', description: 'HTTP /health, /ready, /metrics', env: 'TABLE_ADMIN_LISTEN' },
  group: { type: 'int', default: 1, min: 1, description: 'table group id', env: 'TABLE_GROUP' },
  groups: { type: 'int', default: 1, min: 1, max: 100_000, description: 'host this many groups (ids group .. group+groups-1): multi-raft', env: 'TABLE_GROUPS' },
  tickMs: { type: 'int', default: 100, min: 1, max: 10_000, description: 'raft tick; election timeout is 10 ticks', env: 'TABLE_TICK_MS' },
  join: { type: 'boolean', default: false, description: 'join an existing cluster (added with `table member add`) instead of founding one', env: 'TABLE_JOIN' },
  leaseReads: { type: 'boolean', default: false, description: 'serve linearizable reads on the leader lease (assumes bounded clock drift)', env: 'TABLE_LEASE_READS' },
  token: { type: 'string', description: 'shared token required of peers and clients', env: 'TABLE_TOKEN' },
  logLevel: { type: 'string', default: 'info', enum: LOG_LEVELS, description: 'log level', env: 'TABLE_LOG_LEVEL' },
} as const;

export function register(program: Command): void {
  const table = program.command('table').description('a Raft-replicated sorted key/value table: run a member or use one');

  table
    .command('serve')
    .description('run a table member in the foreground (Ctrl-C stops it cleanly)')
    .option('-c, --config <file>', 'JSON config file')
    .option('--id <n>', serveSpec.id.description)
    .option('--listen <host:port>', serveSpec.listen.description)
    .option('--peers <list>', serveSpec.peers.description)
    .option('--data-dir <dir>', serveSpec.dataDir.description)
    .option('--admin-listen <host:port>', serveSpec.adminListen.description)
    .option('--group <n>', serveSpec.group.description)
    .option('--groups <n>', serveSpec.groups.description)
    .option('--tick-ms <ms>', serveSpec.tickMs.description)
    .option('--lease-reads', serveSpec.leaseReads.description)
    .option('--join', serveSpec.join.description)
    .option('--token <token>', serveSpec.token.description)
    .option('--log-level <level>', serveSpec.logLevel.description)
    .addHelpText('after', `\nConfig file fields (flags and env override the file):\n${describeConfig(serveSpec)}\n\nExample, three members on one machine:\n  containerstack table serve --id 1 --listen 127.0.0.1:7101 --peers 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 --data-dir data/t1 --admin-listen 127.0.0.1:7171\n`)
    .action(async (flags: Record<string, unknown>) => {
      const cfg = loadDaemonConfig('containerstack table serve', serveSpec, flags);
      let peers: Map<number, string>;
      try {
        peers = parsePeers(cfg.peers, cfg.id, cfg.listen);
      } catch (err) {
        console.error(`containerstack table serve: ${errorMessage(err)}`);
        process.exit(2);
      }
      const dataDir = resolve(cfg.dataDir);
      let host: RaftHost | undefined;
      await runDaemon({
        name: 'table',
        logLevel: cfg.logLevel as LogLevel,
        adminListen: cfg.adminListen,
        start: async ({ log, registry }) => {
          const node = await openRaftNode({
            dataDir, nodeId: cfg.id, peers, name: `table-${cfg.id}`, logger: log, registry, ...(cfg.token ? { token: cfg.token } : {}),
            host: { tickMs: cfg.tickMs, leaseReads: cfg.leaseReads },
          });
          const rpc = node.rpc;
          host = node.host;
          registerTableService(rpc, host);
          // A joining member starts empty and learns the membership from the leader's snapshot.
          for (let gid = cfg.group; gid < cfg.group + cfg.groups; gid++) await host.addGroup(gid, cfg.join ? {} : { voters: [...peers.keys()] });
          const { host: h, port } = parseHostPort(cfg.listen, 'listen');
          await rpc.listen(port, h);
          host.start();
          log.info({ id: cfg.id, listen: cfg.listen, peers: Object.fromEntries(peers), dataDir, groups: cfg.groups }, 'table member started');
          return async () => {
            await node.close();
          };
        },
        health: () => {
          const g = host?.group(cfg.group);
          if (!g) return { status: 'down' };
          const st = g.status();
          return { status: st.lead ? 'ok' : 'degraded', checks: { raft: { status: st.lead ? 'ok' : 'degraded', detail: `role=${st.role} term=${st.term} leader=${st.lead} applied=${g.sm.appliedIndex}` } } };
        },
        ready: () => Boolean(host?.group(cfg.group)?.status().lead),
      });
    });

  const clientOpts = (c: Command): Command =>
    c
      .option('--endpoints <list>', 'members as host:port,host:port', process.env.TABLE_ENDPOINTS ?? '127.0.0.1:7100')
      .option('--group <n>', 'table group id', '1')
      .option('--token <token>', 'shared token', process.env.TABLE_TOKEN)
      .option('--timeout <ms>', 'deadline of the operation', '5000')
      .option('--json', 'print JSON');
  const withClient = async (opts: Record<string, string | boolean | undefined>, fn: (c: TableClient) => Promise<void>): Promise<void> => {
    const client = new TableClient({
      endpoints: String(opts.endpoints).split(',').map((s) => s.trim()).filter(Boolean),
      groupId: Number(opts.group ?? 1),
      deadlineMs: Number(opts.timeout ?? 5000),
      ...(typeof opts.token === 'string' ? { token: opts.token } : {}),
    });
    try {
      await fn(client);
    } catch (err) {
      console.error(`containerstack table: ${errorMessage(err)}`);
      process.exitCode = (err as { code?: string }).code === 'TABLE_NO_QUORUM' ? 3 : 1;
    } finally {
      await client.close();
    }
  };
  const show = (kv: { key: Uint8Array; value: Uint8Array; modRevision: number; version: number }) => ({
    key: Buffer.from(kv.key).toString(), value: Buffer.from(kv.value).toString(), modRevision: kv.modRevision, version: kv.version,
  });

  clientOpts(table.command('get <key>').description('print a key\'s value (exit 4 when absent)')).action((key: string, o) =>
    withClient(o, async (c) => {
      const kv = await c.get(key);
      if (!kv) {
        if (o.json) console.log('null');
        process.exitCode = 4;
        return;
      }
      console.log(o.json ? JSON.stringify(show(kv)) : Buffer.from(kv.value).toString());
    }),
  );
  clientOpts(table.command('put <key> <value>').description('set a key')).action((key: string, value: string, o) =>
    withClient(o, async (c) => {
      const r = await c.put(key, value);
      console.log(o.json ? JSON.stringify({ revision: r.revision }) : `OK revision ${r.revision}`);
    }),
  );
  clientOpts(table.command('del <key>').description('delete a key')).action((key: string, o) =>
    withClient(o, async (c) => {
      const r = await c.delete(key);
      console.log(o.json ? JSON.stringify({ revision: r.revision }) : `OK revision ${r.revision}`);
    }),
  );
  clientOpts(table.command('range [prefix]').description('list keys with a prefix').option('--limit <n>', 'at most this many', '100')).action((prefix: string | undefined, o) =>
    withClient(o, async (c) => {
      const r = await c.range({ prefix: prefix ?? '', limit: Number(o.limit) });
      if (o.json) console.log(JSON.stringify({ kvs: r.kvs.map(show), more: Boolean(r.next), revision: r.revision }));
      else for (const kv of r.kvs) console.log(`${Buffer.from(kv.key).toString()}\t${Buffer.from(kv.value).toString()}`);
    }),
  );
  clientOpts(table.command('watch [prefix]').description('print changes under a prefix until Ctrl-C').option('--from <rev>', 'start at this revision (0: now)', '0')).action(
    (prefix: string | undefined, o) =>
      withClient(o, async (c) => {
        await new Promise<void>((resolveDone, reject) => {
          const w = c.watch(prefix ?? '', Number(o.from), (evs) => {
            for (const e of evs) {
              const line = { type: e.type, key: Buffer.from(e.kv.key).toString(), value: Buffer.from(e.kv.value).toString(), revision: e.revision };
              console.log(o.json ? JSON.stringify(line) : `${line.revision}\t${line.type}\t${line.key}\t${line.value}`);
            }
          }, reject);
          const stop = (): void => {
            w.cancel();
            resolveDone();
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      }),
  );
  const member = table.command('member').description('change who is in the cluster');
  clientOpts(member.command('add <id> <address>').description('add a member: it joins as a learner, catches up, then becomes a voter (start it first with serve --join)')).action(
    (id: string, address: string, o) =>
      withClient(o, async (c) => {
        const r = await c.addMember(Number(id), address);
        console.log(o.json ? JSON.stringify(r) : `OK voters ${r.voters.join(',')} learners ${r.learners.join(',') || '-'}`);
      }),
  );
  clientOpts(member.command('remove <id>').description('remove a member (it may be the leader)')).action((id: string, o) =>
    withClient(o, async (c) => {
      const r = await c.removeMember(Number(id));
      console.log(o.json ? JSON.stringify(r) : `OK voters ${r.voters.join(',')} learners ${r.learners.join(',') || '-'}`);
    }),
  );
  clientOpts(member.command('list').description('voters and learners, as the cluster sees them')).action((o) =>
    withClient(o, async (c) => {
      const s = await c.status();
      const r = { voters: s.voters ?? [], learners: s.learners ?? [], leader: s.leaderId };
      console.log(o.json ? JSON.stringify(r) : `voters ${r.voters.join(',')} learners ${r.learners.join(',') || '-'} leader ${r.leader}`);
    }),
  );
  clientOpts(table.command('transfer-leader <id>').description('move leadership to a voter (before maintenance of the current leader)')).action((id: string, o) =>
    withClient(o, async (c) => {
      const leader = await c.transferLeader(Number(id));
      console.log(o.json ? JSON.stringify({ leader }) : `OK leader ${leader}`);
      if (leader !== Number(id)) process.exitCode = 1;
    }),
  );

  clientOpts(table.command('status').description('show each member\'s view: role, term, leader, applied')).action((o) =>
    withClient(o, async (c) => {
      const rows = [];
      for (const ep of String(o.endpoints).split(',')) {
        try {
          const s = await c.status(ep.trim());
          rows.push({ endpoint: ep, id: s.id, role: s.role, term: s.term, leader: s.leaderId, commit: s.commit, applied: s.applied, revision: s.revision });
        } catch (err) {
          rows.push({ endpoint: ep, error: errorMessage(err) });
        }
      }
      if (o.json) console.log(JSON.stringify(rows));
      else for (const r of rows) console.log(Object.entries(r).map(([k, v]) => `${k}=${v}`).join('  '));
    }),
  );
}
