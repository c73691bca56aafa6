// Who owns what a process creates through a real FUSE mount (`containerfs mount` over a cluster
// of real processes). With the corrected binding (fuse/binding.ts) the caller owns it, as on a
// local filesystem: files, directories, symlinks and FIFOs made by uid 65534 (group 100) are
// 65534:100, root's stay 0:0, a setgid directory passes on its gid (and its setgid bit to new
// subdirectories), chown is refused to a non-root caller as the kernel decides. Every result is
// also compared with the same steps on a local directory. With CONTAINERFS_FUSE_BINDING=prebuilt
// the mount keeps the old behaviour (the mounting user owns everything) and says so once. The
// Volume API is unchanged: its own uid/gid, no setgid inheritance.
import t from 'tap';
import { promises as fsp, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { startTestCluster } from '../fs/cluster.js';
import { runAs, startMount, stopAllMounts } from './helpers.js';
import { Volume } from '../../lib/fs/index.js';
import { tempDirFor } from '../lib/tmp.js';

const NOBODY = 65534;
const GROUP = 100; // the caller's gid (not its uid, so the two cannot be confused)
const SG_GID = 1234; // a setgid directory's group, which the caller is not in

const { cluster, volume } = await startTestCluster();
// Removed after the teardown below has stopped the mounts and the cluster (tap: last in, first out).
const base = tempDirFor(t, 'cfs-e2e-owner-');
chmodSync(base, 0o755);
t.teardown(async () => {
  await stopAllMounts();
  await cluster.stop();
});
const a = await startMount(cluster.master, volume, join(base, 'a'));
const b = await startMount(cluster.master, volume, join(base, 'b'), ['--fuse-engine', 'libfuse'], { ...process.env, CONTAINERFS_FUSE_BINDING: 'prebuilt' });
const local = join(base, 'local');

/** As root: an open directory, a setgid one of group SG_GID, and what root makes in each. */
async function prepare(root: string): Promise<void> {
  await fsp.mkdir(root, { mode: 0o755 });
  await fsp.chmod(root, 0o755);
  await fsp.mkdir(join(root, 'open'));
  await fsp.chmod(join(root, 'open'), 0o777);
  await fsp.mkdir(join(root, 'sg'));
  await fsp.chown(join(root, 'sg'), 0, SG_GID);
  await fsp.chmod(join(root, 'sg'), 0o2777);
  for (const d of ['open', 'sg']) {
    await fsp.writeFile(join(root, d, 'rootfile'), 'r');
    await fsp.mkdir(join(root, d, 'rootdir'));
  }
}

const PATHS = ['open/rootfile', 'open/rootdir', 'open/f', 'open/d', 'open/l', 'open/p', 'open/x', 'sg/rootfile', 'sg/rootdir', 'sg/f', 'sg/d', 'sg/l', 'sg/p', 'sg/x', 'sg/d/f', 'sg/d/e'];
type Attr = { uid: number; gid: number; mode: number } | string;

/** As NOBODY:GROUP: create one of each kind in both directories, try chown; answer the results. */
function asNobody(root: string): { ops: Record<string, string>; attrs: Record<string, Attr> } {
  return runAs(
    NOBODY,
    `
    import { promises as fsp } from 'node:fs';
    import { execFileSync } from 'node:child_process';
    const r = ${JSON.stringify(root)};
    const c = async (f) => { try { await f(); return 'ok'; } catch (e) { return e.code ?? String(e); } };
    const ops = {};
    for (const d of ['open', 'sg']) {
      ops[d + '/f'] = await c(() => fsp.writeFile(r + '/' + d + '/f', 'mine'));
      ops[d + '/d'] = await c(() => fsp.mkdir(r + '/' + d + '/d'));
      ops[d + '/l'] = await c(() => fsp.symlink('f', r + '/' + d + '/l'));
      ops[d + '/p'] = await c(() => execFileSync('mkfifo', [r + '/' + d + '/p'], { stdio: 'pipe' }));
      // Asks for setgid: kept where the file's group is the caller's, dropped by the kernel in
      // a setgid directory of a group the caller is not in.
      ops[d + '/x'] = await c(async () => (await fsp.open(r + '/' + d + '/x', 'w', 0o2775)).close());
    }
    ops['sg/d/f'] = await c(() => fsp.writeFile(r + '/sg/d/f', 'deeper'));
    ops['sg/d/e'] = await c(() => fsp.mkdir(r + '/sg/d/e'));
    ops.chownToRoot = await c(() => fsp.chown(r + '/open/f', 0, -1));
    ops.chgrpOwnGroup = await c(() => fsp.chown(r + '/open/f', -1, ${GROUP}));
    ops.chgrpOtherGroup = await c(() => fsp.chown(r + '/open/f', -1, ${SG_GID}));
    ops.writeRootFile = await c(() => fsp.writeFile(r + '/open/rootfile', 'no'));
    const attrs = {};
    for (const p of ${JSON.stringify(PATHS)}) {
      try {
        const s = await fsp.lstat(r + '/' + p);
        attrs[p] = { uid: s.uid, gid: s.gid, mode: s.mode };
      } catch (e) {
        attrs[p] = e.code;
      }
    }
    console.log(JSON.stringify({ ops, attrs }));
  `,
    GROUP,
  ) as { ops: Record<string, string>; attrs: Record<string, Attr> };
}

const owner = (x: Attr | undefined): string => (typeof x === 'object' ? `${x.uid}:${x.gid}` : String(x));
const setgid = (x: Attr | undefined): boolean => typeof x === 'object' && (x.mode & 0o2000) !== 0;

await prepare(local);
const expected = asNobody(local);

t.test('the corrected binding: the caller owns what it creates, as on a local directory', async (t) => {
  // The default engine (auto: kernel as root) passes every request's caller; fuse-native only with the corrected binding.
  t.match(a.out(), /engine kernel|binding corrected/);
  t.notMatch(a.out(), /cannot tell the calling process/, 'no warning about the owner');
  const root = join(a.mnt, 'c');
  await prepare(root);
  const got = asNobody(root);
  for (const k of ['open/f', 'open/d', 'open/l', 'open/p']) t.equal(owner(got.attrs[k]), `${NOBODY}:${GROUP}`, `${k} belongs to the caller`);
  t.equal(owner(got.attrs['open/rootfile']), '0:0', "root's file stays root's");
  t.equal(owner(got.attrs['open/rootdir']), '0:0');
  for (const k of ['sg/f', 'sg/d', 'sg/l', 'sg/p', 'sg/x', 'sg/d/f', 'sg/d/e']) t.equal(owner(got.attrs[k]), `${NOBODY}:${SG_GID}`, `${k}: the setgid directory's group`);
  t.equal(owner(got.attrs['sg/rootfile']), `0:${SG_GID}`, "root's too");
  t.ok(setgid(got.attrs['sg/d']) && setgid(got.attrs['sg/d/e']) && setgid(got.attrs['sg/rootdir']), 'subdirectories inherit the setgid bit');
  t.notOk(setgid(got.attrs['sg/f']) || setgid(got.attrs['open/d']), 'files and directories elsewhere do not');
  t.ok(setgid(got.attrs['open/x']), 'setgid asked for on a file of its own group: kept');
  t.notOk(setgid(got.attrs['sg/x']), 'on a file of a group the caller is not in: dropped');
  t.equal(got.ops.chownToRoot, 'EPERM', 'a non-root caller cannot give a file away');
  t.equal(got.ops.chgrpOwnGroup, 'ok', 'but may set a group it is in');
  t.equal(got.ops.chgrpOtherGroup, 'EPERM', 'and no other');
  t.equal(got.ops.writeRootFile, 'EACCES');
  t.same(got, expected, 'every result and attribute as on a local directory');
  // A root caller may chown.
  await fsp.chown(join(root, 'open/f'), 0, 0);
  t.equal(owner(await fsp.lstat(join(root, 'open/f'))), '0:0', 'root gave it to root');
  await fsp.lchown(join(root, 'open/l'), 4321, 4322);
  t.equal(owner(await fsp.lstat(join(root, 'open/l'))), '4321:4322', 'lchown of a symlink by root');
});

t.test('the prebuilt binding: the mounting user owns everything, and the mount says so once', async (t) => {
  t.match(b.out(), /binding prebuilt/);
  t.equal(b.out().split('cannot tell the calling process').length - 1, 1, 'one warning');
  const root = join(b.mnt, 'p');
  await prepare(root);
  const got = asNobody(root);
  for (const k of ['open/f', 'open/d', 'open/l', 'open/p']) t.equal(owner(got.attrs[k]), '0:0', `${k} belongs to the mounting user`);
  t.equal(owner(got.attrs['sg/f']), '0:0', 'no setgid inheritance either (as before)');
  t.equal(got.ops['sg/d/f'], 'EACCES', "the caller cannot write in the directory it just made (root's, 0755)");
});

t.test('the Volume API: its own uid/gid, no inheritance', async (t) => {
  const v = await Volume.open({ master: cluster.master, volume, uid: 4242, gid: 4343 });
  t.teardown(() => v.close());
  await v.writeFile('/c/sg/api', 'x');
  await v.mkdir('/c/sg/apidir');
  await v.symlink('api', '/c/sg/apilink');
  for (const p of ['/c/sg/api', '/c/sg/apidir', '/c/sg/apilink']) t.equal(owner(await v.lstat(p)), '4242:4343', p);
  t.equal(((await v.stat('/c/sg/apidir')).mode & 0o2000) !== 0, false, 'no setgid bit');
});
