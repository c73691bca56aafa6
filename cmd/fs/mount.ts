// `containerfs mount VOLUME DIR` and `containerfs umount DIR`: serve a ContainerFS volume through
// FUSE in the foreground (lib/fs's Volume behind fuse/'s adapter), and clear a mount whose
// process is gone. Also LocalCluster: a master, metanodes and datanodes as child processes of
// one machine, used by `containerstack up` and by the end-to-end tests.
import type { Command } from 'commander';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Gauge, describeConfig, errorMessage, LOG_LEVELS, retainFreedMemory, sleep, type LogLevel } from '../../lib/common/index.js';
import { MasterClient } from '../../lib/master/index.js';
import { Volume, VolumeFuse } from '../../lib/fs/index.js';
import { DATA_PATH_NODE_FLAGS } from '../../lib/blockgroup/index.js';
import { loadFuse, mountVolume, resolveEngine, FuseUnavailableError, type FuseEngine, type LoadResult, type MountHandle } from '../../fuse/index.js';
import { loadDaemonConfig, runDaemon } from '../lib/daemon.js';

// A child of LocalCluster (and so of `containerstack up`) stops when its parent dies, even by
// SIGKILL: the parent holds the write end of the child's stdin, and the kernel closes it. Every
// containerfs process loads this file, so the daemons get this without knowing of it.
if (process.env.CONTAINERFS_EXIT_WITH_PARENT === '1') {
  process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'));
  process.stdin.on('error', () => process.kill(process.pid, 'SIGTERM'));
  process.stdin.resume();
}

export const mountSpec = {
  master: { type: 'string[]', default: ['127.0.0.1:7200'], description: 'master addresses, comma separated', env: 'CONTAINERFS_MASTER' },
  allowOther: { type: 'boolean', default: false, description: 'let other users use the mount (non-root needs user_allow_other in /etc/fuse.conf)', env: 'CONTAINERFS_MOUNT_ALLOW_OTHER' },
  adminListen: { type: 'hostport', default: '127.0.0.1:7570', description: 'HTTP /health, /ready, /metrics', env: 'CONTAINERFS_MOUNT_ADMIN_LISTEN' },
  // 10 ms by default: long enough that the kernel does not ask again for what a reply just gave
  // it (the GETATTR of the open permission check right after CREATE, the one of stat() right
  // after its LOOKUP), too short to matter to another client. Close-to-open still holds: with
  // the entry timeout at 0 every path walk LOOKUPs, which refreshes the attributes, and an
  // open() whose fresh inode differs from what the kernel was told has the kernel drop its copy
  // (fuse/kernel revalidate). The libfuse engine cannot send that notice, so there the default
  // is 0. What may be stale for up to this long: fstat on an already open descriptor after
  // another client's change, which close-to-open allows. 0: the kernel asks every time.
  attrTimeout: { type: 'number', min: 0, max: 3600, description: "seconds the kernel caches a file's attributes from a reply (default 0.01 with the kernel engine: no second request for what a reply just gave, opens still revalidate, so close-to-open holds; 0 with libfuse, which cannot revalidate at open; 0: ask the client every time)", env: 'CONTAINERFS_MOUNT_ATTR_TIMEOUT' },
  entryTimeout: { type: 'number', default: 0, min: 0, max: 3600, description: 'seconds the kernel caches names (0: every path walk revalidates: a name another client replaced, even by a directory, is seen at once)', env: 'CONTAINERFS_MOUNT_ENTRY_TIMEOUT' },
  dirAttrTimeout: { type: 'number', default: 1, min: 0, max: 3600, description: "seconds the kernel engine caches directories' names and attributes (path walks and permission checks; requests still resolve paths fresh; files stay at --attr-timeout/--entry-timeout)", env: 'CONTAINERFS_MOUNT_DIR_ATTR_TIMEOUT' },
  cacheTtl: { type: 'duration', default: 1000, description: 'how long the client caches attributes and names (close-to-open revalidates on open)', env: 'CONTAINERFS_MOUNT_CACHE_TTL' },
  writeBuffer: { type: 'bytes', default: 4 * 1024 * 1024, min: 4096, max: 8 * 1024 * 1024, description: 'buffered bytes per file that start one append', env: 'CONTAINERFS_MOUNT_WRITE_BUFFER' },
  readAhead: { type: 'bytes', default: 4 * 1024 * 1024, min: 0, max: 8 * 1024 * 1024, description: 'read-ahead window for sequential reads', env: 'CONTAINERFS_MOUNT_READ_AHEAD' },
  kernelReadAhead: { type: 'bytes', default: 1024 * 1024, min: 0, max: 16 * 1024 * 1024, description: "the kernel's read-ahead for the mount (kernel engine, as root: sysfs read_ahead_kb); sequential READs come in pieces this large, up to 1 MiB (the kernel default, 128 KiB, is 8 requests per MiB); 0: the kernel default", env: 'CONTAINERFS_MOUNT_KERNEL_READ_AHEAD' },
  retainMemory: { type: 'boolean', default: true, description: 'keep freed memory for reuse (glibc mallopt): moving MiB-sized buffers then stops faulting in new pages; the process keeps its peak size', env: 'CONTAINERFS_MOUNT_RETAIN_MEMORY' },
  dataCacheWrites: { type: 'boolean', default: true, description: 'keep what this mount writes in the data cache (reads right after a write come from memory; costs the memory fill while writing)', env: 'CONTAINERFS_MOUNT_DATA_CACHE_WRITES' },
  dataCache: { type: 'bytes', default: 256 * 1024 * 1024, min: 0, max: 64 * 1024 * 1024 * 1024, description: 'memory for cached file data (what was written or read; never stale: extents are immutable); 0: none', env: 'CONTAINERFS_MOUNT_DATA_CACHE' },
  lease: { type: 'duration', default: 30_000, min: 300, description: 'client lease on the metadata partitions: after a crash, files this mount held open that others unlinked go this long after its last renewal', env: 'CONTAINERFS_MOUNT_LEASE' },
  token: { type: 'string', description: 'shared token required by the cluster', env: 'CONTAINERFS_TOKEN' },
  logLevel: { type: 'string', default: 'info', enum: LOG_LEVELS, description: 'log level', env: 'CONTAINERFS_LOG_LEVEL' },
  fuseEngine: { type: 'string', default: 'auto', enum: ['auto', 'kernel', 'libfuse'], description: "FUSE engine: kernel (/dev/fuse spoken directly; root, or fusermount with the native addon), libfuse (fuse-native), auto (kernel when it can mount)", env: 'CONTAINERFS_FUSE_ENGINE' },
} as const;

const HELP = `
Mounts a ContainerFS volume at DIR and serves it in the foreground. Metadata goes to the volume's
metadata partitions, file data to its block groups (3 replicas); small writes are buffered per
file and committed on fsync and close. Consistency between mounts is close-to-open (as NFS):
what one mount closed, another sees on its next open. The kernel checks permissions against the
modes (default_permissions); what a process creates belongs to its uid/gid (a setgid
directory's gid inside one), except with the libfuse engine on fuse-native's prebuilt binding
(no compiler to build the corrected one: a warning says so), where the user running the mount
owns it.

Needs /dev/fuse. Engines (--fuse-engine): kernel speaks the FUSE protocol on /dev/fuse itself
(concurrent requests, 1 MiB writes; as root with mount(8), else through fusermount), libfuse
goes through fuse-native;
auto (default) is kernel when it can mount. With libfuse and no system libfuse the copy shipped
with fuse-native is used (the process re-executes itself with LD_LIBRARY_PATH set). SIGINT/SIGTERM flush every open file, unmount and
exit; a killed mount leaves a dead mountpoint that \`containerfs umount DIR\` clears.

Config precedence: defaults < --config file (JSON, keys below) < env < flags.
${describeConfig(mountSpec)}

Example:
  containerfs volume create vol1 --master 127.0.0.1:7200
  containerfs mount vol1 /mnt/vol1 --master 127.0.0.1:7200
  containerfs umount /mnt/vol1
`;

export function isMounted(dir: string): boolean {
  try {
    return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === dir);
  } catch {
    return false;
  }
}

/** Unmounts with fusermount (lazily when asked: a busy mount is detached and goes when unused). */
export function fusermountU(dir: string, lazy: boolean): { ok: boolean; message: string } {
  const r = spawnSync('fusermount', ['-u', ...(lazy ? ['-z'] : []), dir], { encoding: 'utf8' });
  if (r.error) {
    const u = spawnSync('umount', [...(lazy ? ['-l'] : []), dir], { encoding: 'utf8' });
    return { ok: u.status === 0, message: `${r.error.message}; umount: ${u.stderr.trim()}` };
  }
  return { ok: r.status === 0, message: r.stderr.trim() };
}

export function register(program: Command): void {
  program
    .command('mount <volume> <dir>')
    .description('mount a volume at DIR through FUSE (foreground; Ctrl-C flushes and unmounts)')
    .option('-c, --config <file>', 'JSON config file')
    .option('--master <list>', mountSpec.master.description)
    .option('--allow-other', mountSpec.allowOther.description)
    .option('--admin-listen <host:port>', mountSpec.adminListen.description)
    .option('--attr-timeout <s>', mountSpec.attrTimeout.description)
    .option('--entry-timeout <s>', mountSpec.entryTimeout.description)
    .option('--dir-attr-timeout <s>', mountSpec.dirAttrTimeout.description)
    .option('--cache-ttl <duration>', mountSpec.cacheTtl.description)
    .option('--write-buffer <bytes>', mountSpec.writeBuffer.description)
    .option('--read-ahead <bytes>', mountSpec.readAhead.description)
    .option('--kernel-read-ahead <bytes>', mountSpec.kernelReadAhead.description)
    .option('--data-cache <bytes>', mountSpec.dataCache.description)
    .option('--data-cache-writes <bool>', mountSpec.dataCacheWrites.description)
    .option('--retain-memory <bool>', mountSpec.retainMemory.description)
    .option('--lease <duration>', mountSpec.lease.description)
    .option('--token <token>', mountSpec.token.description)
    .option('--log-level <level>', mountSpec.logLevel.description)
    .option('--fuse-engine <engine>', mountSpec.fuseEngine.description)
    .addHelpText('after', HELP)
    .action(async (volume: string, dirArg: string, flags: Record<string, unknown>) => {
      const cfg = loadDaemonConfig('containerfs mount', mountSpec, flags);
      const dir = resolve(dirArg);
      let loaded: LoadResult | undefined;
      let engine: ReturnType<typeof resolveEngine>;
      try {
        engine = resolveEngine(cfg.fuseEngine as FuseEngine);
        if (engine.engine === 'libfuse') loaded = loadFuse();
      } catch (err) {
        if (err instanceof FuseUnavailableError) {
          console.error(`containerfs mount: ${err.message}`);
          process.exit(2);
        }
        throw err;
      }
      if (loaded?.kind === 'reexec') {
        // The dynamic linker reads LD_LIBRARY_PATH only at start: run again with the bundled libfuse.
        const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env: loaded.env, stdio: 'inherit' });
        for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
        child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
        return;
      }
      const lib = loaded;
      const Fuse = lib?.Fuse;
      if (isMounted(dir)) {
        console.error(`containerfs mount: ${dir} is already a mountpoint (a dead mount? clear it with: containerfs umount ${dir})`);
        process.exit(2);
      }
      let vol: Volume | undefined;
      let handle: MountHandle | undefined;
      await runDaemon({
        name: 'mount',
        logLevel: cfg.logLevel as LogLevel,
        adminListen: cfg.adminListen,
        // A stop stuck behind a dead cluster (a flush, an unmount waiting on a request) must
        // still not leave the mountpoint dead for the next user: detach it lazily.
        onShutdownTimeout: () => void fusermountU(dir, true),
        start: async ({ log, registry }) => {
          mkdirSync(dir, { recursive: true });
          if (cfg.retainMemory) {
            const r = retainFreedMemory();
            if (!r.ok) log.warn({ reason: r.reason }, 'mount: cannot keep freed memory for reuse; buffers fault in new pages');
          }
          vol = await Volume.open({
            master: cfg.master, volume, logger: log, ...(cfg.token ? { token: cfg.token } : {}),
            attrTtlMs: cfg.cacheTtl, dentryTtlMs: cfg.cacheTtl, flushBytes: cfg.writeBuffer, maxAppendBytes: Math.max(cfg.writeBuffer, 1024 * 1024), readAheadBytes: cfg.readAhead, readCacheBytes: cfg.dataCache, cacheWrites: cfg.dataCacheWrites, leaseMs: cfg.lease,
          });
          const v = vol;
          handle = await mountVolume(Fuse, new VolumeFuse(v), dir, {
            allowOther: cfg.allowOther, defaultPermissions: true, attrTimeoutS: cfg.attrTimeout ?? (engine.engine === 'kernel' ? 0.01 : 0), entryTimeoutS: cfg.entryTimeout, dirAttrTimeoutS: cfg.dirAttrTimeout,
            fsname: `containerfs:${volume}`, engine: engine.engine,
            // The kernel engine takes 1 MiB writes (max_pages 256); libfuse 2.9 caps them at 128 KiB.
            logger: log, maxWriteBytes: engine.engine === 'kernel' ? 1024 * 1024 : 128 * 1024, readAheadKb: Math.floor(cfg.kernelReadAhead / 1024),
          });
          const h = handle;
          if (h.opStats) {
            // The kernel engine's per-operation counts and times, read at scrape time.
            const stats = (): Record<string, { count: number; errors: number; meanMs: number }> => h.opStats?.() ?? {};
            const fields: [string, string, (x: { count: number; errors: number; meanMs: number }) => number][] = [
              ['containerfs_fuse_requests', 'FUSE requests answered since the mount, by operation', (x) => x.count],
              ['containerfs_fuse_request_errors', 'FUSE requests answered with an error since the mount, by operation', (x) => x.errors],
              ['containerfs_fuse_request_mean_seconds', 'Mean time a FUSE request spent in the volume, by operation', (x) => x.meanMs / 1000],
            ];
            for (const [name, help, pick] of fields) {
              new Gauge({ name, help, labelNames: ['op'], registers: [registry], collect() { this.reset(); for (const [op, x] of Object.entries(stats())) this.set({ op }, pick(x)); } });
            }
          }
          if (!lib) {
            log.info({ volume, dir, engine: 'kernel', master: cfg.master }, 'mounted');
            process.stdout.write(`containerfs: mounted volume ${volume} at ${dir} (engine kernel, pid ${process.pid})\n`);
          } else {
            log.info({ volume, dir, engine: 'libfuse', libfuse: lib.libfuse, binding: lib.binding, master: cfg.master, ...(engine.reason ? { whyNotKernel: engine.reason } : {}) }, 'mounted');
            if (lib.bindingError) log.warn({ reason: lib.bindingError }, "fuse-native's prebuilt binding in use: utimens sets the atime as the mtime");
            if (!lib.callerContext) log.warn({ uid: process.getuid?.(), gid: process.getgid?.() }, 'the FUSE binding cannot tell the calling process: new files, directories and symlinks are owned by the user running the mount');
            process.stdout.write(`containerfs: mounted volume ${volume} at ${dir} (engine libfuse, libfuse ${lib.libfuse}, binding ${lib.binding}, pid ${process.pid})\n`);
          }
          return async () => {
            // Flush first: after the unmount nothing may be lost that a close would have kept.
            await v.flushAll().catch((err: unknown) => log.error({ err }, 'flush before unmount failed'));
            try {
              await handle?.unmount();
            } catch (err) {
              log.warn({ err: errorMessage(err) }, 'unmount failed (busy?); detaching lazily');
              fusermountU(dir, true);
            }
            await v.close();
          };
        },
        health: () => ({ status: handle && isMounted(dir) ? 'ok' : 'down' }),
        ready: () => handle !== undefined,
      });
    });

  program
    .command('umount <dir>')
    .description('unmount a ContainerFS mount (also one whose process was killed)')
    .option('--lazy', 'detach now even if busy; the mount goes once no process uses it')
    .action((dirArg: string, opts: { lazy?: boolean }) => {
      const dir = resolve(dirArg);
      if (!isMounted(dir)) {
        console.error(`containerfs umount: ${dir} is not mounted`);
        process.exit(1);
      }
      const r = fusermountU(dir, Boolean(opts.lazy));
      if (!r.ok) {
        console.error(`containerfs umount: ${dir}: ${r.message || 'failed'}${/busy/i.test(r.message) ? ' (files still open there; retry with --lazy)' : ''}`);
        process.exit(1);
      }
      console.log(`containerfs: unmounted ${dir}`);
    });
}

// ---------------------------------------------------------------- LocalCluster

const containerfsBin = join(dirname(fileURLToPath(import.meta.url)), '..', 'containerfs.js');

export interface LocalNode {
  kind: 'master' | 'meta' | 'data' | 'mount';
  name: string;
  address: string;
  admin: string;
  dir: string;
  child?: ChildProcess;
  /** The last output of the process (bounded). */
  out: string;
}

export interface LocalClusterOptions {
  dataDir: string;
  /** Addresses per role; the same addresses must be used again for the data to be found. */
  master: { address: string; admin: string };
  metas: { address: string; admin: string }[];
  datas: { address: string; admin: string }[];
  logLevel?: string;
  /** Short raft ticks and heartbeats (tests). */
  fast?: boolean;
  token?: string;
  /** Echo children's output to this process (useful in the foreground). */
  inheritOutput?: boolean;
}

/** A master, metanodes and datanodes on this machine, each a `containerfs` child process. */
export class LocalCluster {
  readonly nodes: LocalNode[] = [];
  constructor(private readonly o: LocalClusterOptions) {
    const mk = (kind: LocalNode['kind'], name: string, a: { address: string; admin: string }): LocalNode => ({ kind, name, address: a.address, admin: a.admin, dir: join(o.dataDir, name), out: '' });
    this.nodes.push(mk('master', 'master', o.master));
    o.metas.forEach((a, i) => this.nodes.push(mk('meta', `meta${i + 1}`, a)));
    o.datas.forEach((a, i) => this.nodes.push(mk('data', `data${i + 1}`, a)));
  }

  get master(): string {
    return this.o.master.address;
  }

  private args(n: LocalNode): string[] {
    const fast = this.o.fast;
    const common = ['--listen', n.address, '--admin-listen', n.admin, '--data-dir', n.dir, '--log-level', this.o.logLevel ?? 'warn', ...(this.o.token ? ['--token', this.o.token] : [])];
    switch (n.kind) {
      // The daemons' raft ticks (100 ms: heartbeats every tick, elections after 1-2 s) and
      // heartbeat intervals, except datanodes report every second rather than every 3 s (group
      // lengths reach the master sooner). The old 50 ms ticks and 500 ms heartbeats (start-up
      // a little faster) kept an idle stack busy: ~145 ms of CPU per second across the
      // daemons here, ~85 with these; each raft heartbeat, and each heartbeat to the master (a
      // raft entry there), costs a daemon about a millisecond. `fast` (tests) keeps 20 ms ticks.
      case 'master':
        return ['master', ...common, ...(fast ? ['--tick-ms', '20', '--node-timeout', '3s', '--check-interval', '200ms'] : [])];
      // Every node shares this machine's clock, so raft lease reads (no quorum round per
      // metadata read) cannot be broken by clock drift.
      case 'meta':
        return ['meta', ...common, '--master', this.master, ...(fast ? ['--tick-ms', '20', '--heartbeat-interval', '200ms'] : []), '--lease-reads', ...(fast ? ['--maintenance-interval', '1s'] : [])];
      case 'data':
        // Three replicas share this machine's page cache: each keeps none of what it wrote.
        return ['data', ...common, '--master', this.master, '--heartbeat-interval', fast ? '200ms' : '1s', '--drop-behind-writes', ...(fast ? ['--recovery-interval', '200ms'] : [])];
      case 'mount':
        throw new Error('local cluster: a mount starts through mount()');
    }
  }

  async startNode(n: LocalNode, timeoutMs = 60_000): Promise<void> {
    mkdirSync(n.dir, { recursive: true });
    // V8 heap sizing for the data path (see lib/blockgroup); CONTAINERFS_NODE_ARGS adds flags to
    // every daemon for profiling (e.g. --cpu-prof --cpu-prof-dir=DIR).
    const flags = [...(n.kind === 'data' ? DATA_PATH_NODE_FLAGS : []), ...(process.env.CONTAINERFS_NODE_ARGS ?? '').split(' ').filter((x) => x !== '')];
    const child = spawn(process.execPath, [...flags, containerfsBin, ...this.args(n)], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, CONTAINERFS_EXIT_WITH_PARENT: '1' } });
    n.child = child;
    n.out = '';
    const keep = (d: Buffer): void => {
      n.out = (n.out + d.toString()).slice(-20_000);
      if (this.o.inheritOutput) process.stderr.write(`[${n.name}] ${d.toString()}`);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${n.name} exited early (${child.exitCode ?? child.signalCode}): ${n.out.slice(-2000)}`);
      try {
        const r = await fetch(`http://${n.admin}/ready`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > until) throw new Error(`${n.name} did not become ready within ${timeoutMs}ms: ${n.out.slice(-2000)}`);
      await sleep(50);
    }
  }

  /** Starts every daemon at once: metanodes and datanodes retry the master until it answers. */
  async start(): Promise<void> {
    const r = await Promise.allSettled(this.nodes.filter((n) => n.kind !== 'mount').map((n) => this.startNode(n)));
    const failed = r.find((x) => x.status === 'rejected');
    if (failed) {
      await this.stop();
      throw (failed as PromiseRejectedResult).reason;
    }
  }

  /** Creates the volume if it does not exist; waits until enough nodes have registered. */
  async ensureVolume(name: string, replicas = 3, timeoutMs = 60_000): Promise<void> {
    const m = new MasterClient({ endpoints: [this.master], ...(this.o.token ? { token: this.o.token } : {}) });
    try {
      const until = Date.now() + timeoutMs;
      for (;;) {
        try {
          await m.volumeInfo(name);
          return;
        } catch (err) {
          if ((err as { code?: string }).code !== 'MASTER_NOT_FOUND') throw err;
        }
        try {
          const v = await m.view();
          const datas = v.nodes.filter((x) => x.kind === 'data' && x.state === 'up').length;
          if (datas >= replicas) {
            await m.createVolume(name, { replicas });
            return;
          }
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === 'MASTER_EXISTS') return;
          if (code !== 'MASTER_NO_CAPACITY' || Date.now() > until) throw err;
        }
        if (Date.now() > until) throw new Error(`volume ${name}: fewer than ${replicas} datanodes registered within ${timeoutMs}ms`);
        await sleep(100);
      }
    } finally {
      await m.close();
    }
  }

  kill(n: LocalNode, sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = n.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    const done = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(sig);
    return done;
  }

  /** Starts `containerfs mount VOLUME DIR` against this cluster; stop() unmounts it first. */
  async mount(volume: string, dir: string, admin: string, timeoutMs = 60_000, extraArgs: string[] = []): Promise<LocalNode> {
    const n: LocalNode = { kind: 'mount', name: 'mount', address: dir, admin, dir, out: '' };
    const args = ['mount', volume, dir, '--master', this.master, '--admin-listen', admin, '--log-level', this.o.logLevel ?? 'warn', ...(this.o.token ? ['--token', this.o.token] : []), ...extraArgs];
    // The mount moves block data through BlockGroupClient: the same V8 heap sizing as datanodes
    // (CONTAINERFS_MOUNT_NODE_ARGS adds flags for profiling, e.g. --cpu-prof).
    const nodeArgs = [...DATA_PATH_NODE_FLAGS, ...(process.env.CONTAINERFS_MOUNT_NODE_ARGS ?? '').split(' ').filter((x) => x !== '')];
    const child = spawn(process.execPath, [...nodeArgs, containerfsBin, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, CONTAINERFS_EXIT_WITH_PARENT: '1' } });
    n.child = child;
    const keep = (d: Buffer): void => {
      n.out = (n.out + d.toString()).slice(-20_000);
      if (this.o.inheritOutput) process.stderr.write(`[mount] ${d.toString()}`);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.nodes.push(n);
    const until = Date.now() + timeoutMs;
    while (!(/mounted volume/.test(n.out) && isMounted(dir))) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`mount exited (${child.exitCode ?? child.signalCode}): ${n.out.trim().slice(-2000)}`);
      if (Date.now() > until) throw new Error(`mount did not appear within ${timeoutMs}ms: ${n.out.slice(-2000)}`);
      await sleep(25);
    }
    return n;
  }

  /** SIGTERM in reverse order of start (the mount, then clients of the master); SIGKILL after 10 s. */
  async stop(): Promise<void> {
    for (const m of this.nodes.filter((n) => n.kind === 'mount')) {
      await this.stopOne(m);
      if (isMounted(m.dir)) fusermountU(m.dir, true);
    }
    const rest = this.nodes.slice(1).filter((n) => n.kind !== 'mount');
    await Promise.all(rest.map((n) => this.stopOne(n)));
    await this.stopOne(this.nodes[0] as LocalNode);
  }

  private async stopOne(n: LocalNode): Promise<void> {
    const c = n.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const done = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(t);
  }

  exists(): boolean {
    return existsSync(join(this.o.dataDir, 'master'));
  }
}
