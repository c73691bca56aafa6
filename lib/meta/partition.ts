// A metadata partition: the domain command ("meta") that a table group runs inside apply, and
// the read functions served from its state machine. Every namespace operation is ONE call of
// the command, so ONE log entry: it either happens completely on every replica or not at all.
//
// Determinism: everything here depends only on the request and the table. Time comes from the
// proposer (`req.now`, `req.leaseMs`); generations are the raft index of the creating entry.
import { DomainError, type DomainCommand, type DomainContext } from '../table/index.js';
import { containerstack } from '../../proto/gen/meta.js';
import {
  PART_KEY, inodeKey, dentryKey, dentryPrefix, xattrKey, xattrPrefix, openKey, orphanKey, ORPHAN_PREFIX,
  clientHandleKey, clientHandlePrefix, leaseKey, LEASE_PREFIX, intentKey, INTENT_PREFIX, lockKey, u64At, RENAME_LOCK_KEY,
} from './keys.js';
import type { PosixCode } from './errors.js';

const pb = containerstack.meta;
export type Inode = containerstack.meta.Inode;
export type ExtentKey = containerstack.meta.ExtentKey.$Properties;
export type Timespec = containerstack.meta.Timespec.$Properties;
export type MetaRequest = containerstack.meta.MetaRequest.$Properties;
export type MetaResponse = containerstack.meta.MetaResponse.$Properties;
export type PartitionInfo = containerstack.meta.PartitionInfo;

export const META_DOMAIN = 'meta';
/** The lock "name" of a whole directory (NUL is never part of a real name). */
const DIR_LOCK = new Uint8Array([0]);

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
const TYPES = new Set([S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK]);
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;

export const ROOT_INO = 1;
export const NAME_MAX = 255;
export const SYMLINK_MAX = 4096;
export const XATTR_NAME_MAX = 255;
export const XATTR_VALUE_MAX = 64 * 1024;
export const XATTRS_PER_INODE_MAX = 1024;
export const EXTENTS_PER_INODE_MAX = 65_536;
export const LINK_MAX = 65_000;
export const ALLOC_MAX = 65_536;
export const READDIR_MAX = 1024;
/** Walking up from a rename's destination to check it is not inside the source: bounded. */
export const DEPTH_MAX = 4096;
/** Bounds of the tracked-lease bookkeeping (per entry). */
/** Client leases looked at per entry; past this many, orphans wait (see trackedLeases). */
const MAX_LEASES_SCANNED = 10_000;
const MAX_HANDLES_SCANNED = 100_000;
export const MAX_LISTED_INOS = 100_000;
const SWEEP_BUDGET = 256;
/** A partition reports nearly full past this fraction of its range handed out. */
export const NEARLY_FULL = 0.9;

// setattr `valid` bits
export const SETATTR_MODE = 1;
export const SETATTR_UID = 2;
export const SETATTR_GID = 4;
export const SETATTR_SIZE = 8;
export const SETATTR_ATIME = 16;
export const SETATTR_MTIME = 32;
export const SETATTR_ATIME_NOW = 64;
export const SETATTR_MTIME_NOW = 128;
export const SETATTR_CTIME = 256;
/** With SETATTR_ATIME(_NOW): an access-time update as a read makes it (relatime), ctime unchanged. */
export const SETATTR_ATIME_ONLY = 512;

export const RENAME_NOREPLACE = 1;
/**
 * Internal rename flag: the client holds the volume's directory-rename lock and has walked the
 * destination's ancestors in every partition, so the partition's own walk stops at the first
 * ancestor it does not hold (instead of EXDEV). A directory moved to another parent needs it.
 */
export const RENAME_ANCESTORS_CHECKED = 0x100;
/** A directory moved to another parent without the lock: the client retries under it. */
export const NEEDS_RENAME_LOCK = 'META_NEEDS_RENAME_LOCK';
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

/** Where reads come from: the domain context inside apply, or the state machine after a barrier. */
export interface Reader {
  get(key: Uint8Array): Uint8Array | undefined;
  scan(prefix: Uint8Array, limit: number, startAfter?: Uint8Array): Promise<{ key: Uint8Array; value: Uint8Array }[]>;
}

function fail(code: PosixCode | 'META_UNINITIALIZED' | typeof NEEDS_RENAME_LOCK, message: string): never {
  throw new DomainError(code, `meta: ${message}`);
}

export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;

export function checkName(name: Uint8Array | null | undefined): Uint8Array {
  if (!name || name.length === 0) fail('ENOENT', 'empty name');
  if (name.length > NAME_MAX) fail('ENAMETOOLONG', `name of ${name.length} bytes exceeds ${NAME_MAX}`);
  if (name.includes(0x2f) || name.includes(0)) fail('EINVAL', 'name contains / or NUL');
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) fail('EINVAL', 'name is . or ..');
  return name;
}

const ZERO_TIME = (): Timespec => ({ sec: 0, nsec: 0 });

function readPart(r: Reader): PartitionInfo | undefined {
  const raw = r.get(PART_KEY);
  return raw ? pb.PartitionInfo.decode(raw) : undefined;
}

function readInode(r: Reader, ino: number): Inode | undefined {
  const raw = r.get(inodeKey(ino));
  return raw ? pb.Inode.decode(raw) : undefined;
}

export function nearlyFull(p: PartitionInfo): boolean {
  return p.cursor - p.start >= NEARLY_FULL * (p.end - p.start);
}

type Leases = { list: { client: string; since: number; witness: number }[]; complete: boolean };

/** One command's view of the partition: decoded records, counters written back at the end. */
class Tx {
  readonly part: PartitionInfo;
  readonly now: Timespec;
  private partDirty = false;
  readonly freed: ExtentKey[] = [];

  constructor(
    readonly ctx: DomainContext,
    readonly req: MetaRequest,
  ) {
    const p = readPart(ctx);
    if (!p) fail('META_UNINITIALIZED', 'partition not initialized');
    this.part = p;
    this.now = req.now ?? ZERO_TIME();
  }

  owns(ino: number): boolean {
    return ino >= this.part.start && ino < this.part.end;
  }

  /** An inode this partition must hold; EXDEV when another partition owns it. */
  inode(ino: number): Inode | undefined {
    if (!this.owns(ino)) fail('EXDEV', `ino ${ino} is not in this partition [${this.part.start}, ${this.part.end})`);
    return readInode(this.ctx, ino);
  }

  mustInode(ino: number, generation?: number | null): Inode {
    const i = this.inode(ino);
    if (!i) fail('ENOENT', `no inode ${ino}`);
    if (generation && i.generation !== generation) fail('ESTALE', `inode ${ino} generation ${i.generation}, not ${generation}`);
    return i;
  }

  dir(ino: number): Inode {
    const i = this.mustInode(ino);
    if (!isDir(i.mode)) fail('ENOTDIR', `inode ${ino} is not a directory`);
    return i;
  }

  /** A name reserved by a pending cross-partition operation may not change under it. */
  unlocked(parent: number, name: Uint8Array): void {
    if (this.ctx.get(lockKey(parent, name)) !== undefined) fail('EAGAIN', `${Buffer.from(name).toString()} is held by a cross-partition operation in progress`);
  }

  /** A directory being removed by a cross-partition rmdir takes no new entries meanwhile. */
  dirOpen(dir: number): void {
    if (this.ctx.get(lockKey(dir, DIR_LOCK)) !== undefined) fail('ENOENT', `directory ${dir} is being removed`);
  }

  dentry(parent: number, name: Uint8Array): containerstack.meta.Dentry | undefined {
    const raw = this.ctx.get(dentryKey(parent, name));
    return raw ? pb.Dentry.decode(raw) : undefined;
  }

  putDentry(parent: number, name: Uint8Array, ino: number, type: number, isNew: boolean): void {
    this.ctx.put(dentryKey(parent, name), pb.Dentry.encode({ ino, type }).finish());
    if (isNew) this.count('dentries', 1);
  }

  delDentry(parent: number, name: Uint8Array): void {
    this.ctx.delete(dentryKey(parent, name));
    this.count('dentries', -1);
  }

  putInode(i: Inode): void {
    this.ctx.put(inodeKey(i.ino), pb.Inode.encode(i).finish());
  }

  count(field: 'inodes' | 'dentries' | 'bytes', delta: number): void {
    this.part[field] = Math.max(0, this.part[field] + delta);
    this.partDirty = true;
  }

  setQuota(capacity: number, full: boolean): void {
    this.part.capacityBytes = capacity;
    this.part.full = full;
    this.partDirty = true;
  }

  setCursor(c: number): void {
    this.part.cursor = c;
    this.partDirty = true;
  }

  touch(i: Inode, m: boolean, c: boolean): void {
    if (m) i.mtime = pb.Timespec.create(this.now);
    if (c) i.ctime = pb.Timespec.create(this.now);
  }

  /** No entries, and no name reserved in it by a pending cross-partition operation (whose
   * commit needs the directory to still exist). */
  async isEmptyDir(ino: number): Promise<boolean> {
    return (await this.ctx.scan(dentryPrefix(ino), 1)).length === 0 && (await this.ctx.scan(lockKey(ino, new Uint8Array(0)), 1)).length === 0;
  }

  /** Drops one link; at zero the inode goes now, or at last close when it is open (orphan). */
  async unlinkInode(i: Inode, dirRemoved: boolean): Promise<boolean> {
    i.nlink = dirRemoved ? 0 : Math.max(0, i.nlink - 1);
    this.touch(i, false, true);
    if (i.nlink > 0) {
      this.putInode(i);
      return false;
    }
    // The inode counts its open handles, so the common unlink needs no scan of handle records.
    // A regular file may also be open on a client with a tracked lease that has not told this
    // partition yet (clients register opens only through their lease renewals): it stays an
    // orphan until every such lease has renewed past this entry or expired (sweepOrphans).
    const exempt = this.req.expectIno && this.req.expectIno === i.ino ? this.req.client ?? '' : '';
    if (i.opens > 0 || (isReg(i.mode) && (await this.maybeHeld(this.ctx.index, exempt)))) {
      this.putInode(i);
      this.ctx.put(orphanKey(i.ino), pb.OrphanRecord.encode({ since: this.ctx.index, exempt }).finish());
      return true;
    }
    await this.deleteInode(i);
    return true;
  }

  /** The time leases expire by: the proposer's clock (reclaim passes its own in `leaseMs`). */
  get leaseNowMs(): number {
    return this.leaseNowOverride ?? (this.now.sec ?? 0) * 1000 + Math.floor((this.now.nsec ?? 0) / 1e6);
  }
  leaseNowOverride: number | undefined;

  /**
   * Live tracked leases (bounded scan). `complete` is false when the scan hit its bound: then
   * any lease may be among those not seen, and callers keep what a lease might hold.
   */
  async trackedLeases(): Promise<Leases> {
    const list: { client: string; since: number; witness: number }[] = [];
    const now = this.leaseNowMs;
    const all = await this.ctx.scan(LEASE_PREFIX, MAX_LEASES_SCANNED);
    for (const l of all) {
      const v = pb.ClientLease.decode(l.value);
      if (!v.tracked || v.expiresMs < now) continue;
      list.push({ client: Buffer.from(l.key).subarray(1).toString(), since: v.since, witness: v.witness });
    }
    return { list, complete: all.length < MAX_LEASES_SCANNED };
  }

  /** Could a client hold open an inode whose last link went at index `since`, unknown to us? */
  async maybeHeld(since: number, exempt: string, leases?: Leases): Promise<boolean> {
    if (since === 0) return false; // orphaned before tracked leases: only handles hold it
    const ls = leases ?? (await this.trackedLeases());
    if (!ls.complete) return true;
    for (const l of ls.list) if (l.client !== exempt && l.since < since && l.witness < since) return true;
    return false;
  }

  async deleteInode(i: Inode): Promise<void> {
    this.ctx.delete(inodeKey(i.ino));
    this.ctx.delete(orphanKey(i.ino));
    if (i.xattrs > 0) for (const x of await this.ctx.scan(xattrPrefix(i.ino), XATTRS_PER_INODE_MAX + 1)) this.ctx.delete(x.key);
    this.freed.push(...i.extents);
    this.count('inodes', -1);
    if (isReg(i.mode)) this.count('bytes', -i.size);
  }

  flush(): void {
    if (this.partDirty) this.ctx.put(PART_KEY, pb.PartitionInfo.encode(this.part).finish());
  }
}

type Op = (tx: Tx, req: MetaRequest) => Promise<MetaResponse> | MetaResponse;

/** The table domain commands of a metadata partition. */
export function metaDomains(): Record<string, DomainCommand> {
  return { [META_DOMAIN]: applyMeta };
}

async function applyMeta(ctx: DomainContext, args: Uint8Array): Promise<Uint8Array> {
  let req: containerstack.meta.MetaRequest;
  try {
    req = pb.MetaRequest.decode(args);
  } catch (err) {
    fail('EINVAL', `undecodable request: ${(err as Error).message}`);
  }
  if (req.op === 'init') return pb.MetaResponse.encode(init(ctx, req)).finish();
  const op = OPS[req.op];
  if (!op) fail('EINVAL', `unknown operation ${JSON.stringify(req.op)}`);
  const tx = new Tx(ctx, req);
  const res = await op(tx, req);
  tx.flush();
  if (tx.freed.length > 0) res.freed = [...(res.freed ?? []), ...tx.freed];
  return pb.MetaResponse.encode(res).finish();
}

function init(ctx: DomainContext, req: MetaRequest): MetaResponse {
  const start = req.start ?? 0;
  const end = req.end ?? 0;
  if (start < 1 || end <= start) fail('EINVAL', `bad partition range [${start}, ${end})`);
  const existing = readPart(ctx);
  if (existing) {
    if (existing.start !== start || existing.end !== end) fail('EINVAL', `partition already owns [${existing.start}, ${existing.end})`);
    return { partition: existing };
  }
  const part = pb.PartitionInfo.create({ volume: req.volume ?? '', start, end, cursor: start, inodes: 0, dentries: 0, bytes: 0 });
  if (start <= ROOT_INO && ROOT_INO < end) {
    const now = req.now ?? ZERO_TIME();
    const root = pb.Inode.create({ ino: ROOT_INO, mode: S_IFDIR | 0o755, uid: req.uid ?? 0, gid: req.gid ?? 0, nlink: 2, atime: now, mtime: now, ctime: now, btime: now, generation: ctx.index, parent: ROOT_INO });
    ctx.put(inodeKey(ROOT_INO), pb.Inode.encode(root).finish());
    part.cursor = ROOT_INO + 1;
    part.inodes = 1;
  }
  ctx.put(PART_KEY, pb.PartitionInfo.encode(part).finish());
  return { partition: part };
}

function allocIno(tx: Tx, req: MetaRequest): number {
  const want = req.ino ?? 0;
  const p = tx.part;
  if (want === 0) {
    if (p.cursor >= p.end) fail('ENOSPC', `partition [${p.start}, ${p.end}) has no inos left`);
    tx.setCursor(p.cursor + 1);
    return p.cursor - 1;
  }
  if (!tx.owns(want)) fail('EXDEV', `ino ${want} is not in this partition`);
  // Lease mode: the client picked an ino from a block it leased, so it must be handed out.
  if (want >= p.cursor) fail('EINVAL', `ino ${want} was never leased (cursor ${p.cursor})`);
  if (readInode(tx.ctx, want)) fail('EEXIST', `ino ${want} already in use`);
  return want;
}

const OPS: Record<string, Op> = {
  alloc(tx, req) {
    const p = tx.part;
    const n = Math.min(req.count || 1, ALLOC_MAX);
    if (p.cursor >= p.end) fail('ENOSPC', `partition [${p.start}, ${p.end}) has no inos left`);
    const first = p.cursor;
    const count = Math.min(n, p.end - first);
    tx.setCursor(first + count);
    return { first, count, partition: p, nearlyFull: nearlyFull(p) };
  },

  async create(tx, req) {
    const name = checkName(req.name);
    const parent = tx.dir(req.parent ?? 0);
    tx.dirOpen(parent.ino);
    const type = fileType(req);
    if (tx.dentry(parent.ino, name)) fail('EEXIST', `${Buffer.from(name).toString()} exists`);
    tx.unlocked(parent.ino, name);
    if (type === S_IFDIR && parent.nlink >= LINK_MAX) fail('EMLINK', 'too many subdirectories');
    const node = newInode(tx, req, parent.ino, type);
    tx.putDentry(parent.ino, name, node.ino, type, true);
    if (type === S_IFDIR) parent.nlink++;
    tx.touch(parent, true, true);
    tx.putInode(parent);
    return { inode: node, parentInode: parent };
  },

  link(tx, req) {
    const name = checkName(req.name);
    const parent = tx.dir(req.parent ?? 0);
    tx.dirOpen(parent.ino);
    const node = tx.mustInode(req.ino ?? 0, req.generation);
    if (isDir(node.mode)) fail('EPERM', 'hard link to a directory');
    if (node.nlink === 0) fail('ENOENT', `inode ${node.ino} was unlinked`);
    if (node.nlink >= LINK_MAX) fail('EMLINK', `inode ${node.ino} has ${node.nlink} links`);
    if (tx.dentry(parent.ino, name)) fail('EEXIST', `${Buffer.from(name).toString()} exists`);
    tx.unlocked(parent.ino, name);
    tx.putDentry(parent.ino, name, node.ino, node.mode & S_IFMT, true);
    node.nlink++;
    tx.touch(node, false, true);
    tx.putInode(node);
    tx.touch(parent, true, true);
    tx.putInode(parent);
    return { inode: node, parentInode: parent };
  },

  async unlink(tx, req) {
    const name = checkName(req.name);
    const parent = tx.dir(req.parent ?? 0);
    const d = tx.dentry(parent.ino, name);
    if (!d) fail('ENOENT', `${Buffer.from(name).toString()} does not exist`);
    if (d.type === S_IFDIR) fail('EISDIR', `${Buffer.from(name).toString()} is a directory`);
    tx.unlocked(parent.ino, name);
    const node = tx.mustInode(d.ino);
    tx.delDentry(parent.ino, name);
    tx.touch(parent, true, true);
    tx.putInode(parent);
    const gone = await tx.unlinkInode(node, false);
    return { inode: node, parentInode: parent, replacedIno: gone ? node.ino : 0 };
  },

  async rmdir(tx, req) {
    const name = checkName(req.name);
    const parent = tx.dir(req.parent ?? 0);
    const d = tx.dentry(parent.ino, name);
    if (!d) fail('ENOENT', `${Buffer.from(name).toString()} does not exist`);
    if (d.type !== S_IFDIR) fail('ENOTDIR', `${Buffer.from(name).toString()} is not a directory`);
    tx.unlocked(parent.ino, name);
    const node = tx.mustInode(d.ino);
    if (!(await tx.isEmptyDir(node.ino))) fail('ENOTEMPTY', `${Buffer.from(name).toString()} is not empty`);
    tx.delDentry(parent.ino, name);
    parent.nlink = Math.max(2, parent.nlink - 1);
    tx.touch(parent, true, true);
    tx.putInode(parent);
    await tx.unlinkInode(node, true);
    return { parentInode: parent, replacedIno: node.ino };
  },

  rename(tx, req) {
    return renameIn(tx, req, false, 'none');
  },

  setattr(tx, req) {
    const node = tx.mustInode(req.ino ?? 0, req.generation);
    const a = req.attr ?? {};
    const v = a.valid ?? 0;
    let changed = false;
    if (v & SETATTR_SIZE) {
      if (isDir(node.mode)) fail('EISDIR', `inode ${node.ino} is a directory`);
      if (!isReg(node.mode)) fail('EINVAL', `inode ${node.ino} is not a regular file`);
      const size = a.size ?? 0;
      truncateExtents(node, size, tx.freed);
      tx.count('bytes', size - node.size);
      node.size = size;
      // POSIX truncate: mtime and ctime change (Linux does so even when the size is unchanged).
      tx.touch(node, true, true);
    }
    if (v & SETATTR_MODE) {
      node.mode = (node.mode & S_IFMT) | ((a.mode ?? 0) & 0o7777);
      changed = true;
    }
    if (v & (SETATTR_UID | SETATTR_GID)) {
      if (v & SETATTR_UID) node.uid = a.uid ?? 0;
      if (v & SETATTR_GID) node.gid = a.gid ?? 0;
      // chown of a non-directory clears set-user-ID and set-group-ID (POSIX, Linux).
      if (!isDir(node.mode) && !(v & SETATTR_MODE)) node.mode &= ~(S_ISUID | S_ISGID);
      changed = true;
    }
    if (v & SETATTR_ATIME_NOW) node.atime = pb.Timespec.create(tx.now);
    else if (v & SETATTR_ATIME) node.atime = pb.Timespec.create(a.atime ?? ZERO_TIME());
    if (v & SETATTR_MTIME_NOW) node.mtime = pb.Timespec.create(tx.now);
    else if (v & SETATTR_MTIME) node.mtime = pb.Timespec.create(a.mtime ?? ZERO_TIME());
    // An access-time update made by reading is not a change of the inode (Linux leaves ctime).
    const atimeOnly = (v & SETATTR_ATIME_ONLY) !== 0 && (v & ~(SETATTR_ATIME | SETATTR_ATIME_NOW | SETATTR_ATIME_ONLY)) === 0;
    if (v & (SETATTR_ATIME | SETATTR_MTIME | SETATTR_ATIME_NOW | SETATTR_MTIME_NOW) && !atimeOnly) changed = true;
    // Any attribute change sets ctime to now, unless the caller sets ctime itself.
    if (v & SETATTR_CTIME) node.ctime = pb.Timespec.create(a.ctime ?? ZERO_TIME());
    else if (changed) tx.touch(node, false, true);
    tx.putInode(node);
    return { inode: node };
  },

  write(tx, req) {
    const node = tx.mustInode(req.ino ?? 0, req.generation);
    if (isDir(node.mode)) fail('EISDIR', `inode ${node.ino} is a directory`);
    if (!isReg(node.mode)) fail('EINVAL', `inode ${node.ino} is not a regular file`);
    let end = node.size;
    // One copy of the list per entry (it may be shared with what the state machine holds),
    // then in-place edits (addExtent).
    node.extents = node.extents.slice();
    for (const e of req.extents ?? []) {
      if ((e.length ?? 0) <= 0) fail('EINVAL', 'empty extent');
      const last = (e.fileOffset ?? 0) + (e.length ?? 0);
      if (!Number.isSafeInteger(last)) fail('EFBIG', 'extent past the largest file offset');
      addExtent(node, e, tx.freed);
      end = Math.max(end, last);
    }
    if (node.extents.length > EXTENTS_PER_INODE_MAX) fail('EFBIG', `inode ${node.ino} would have ${node.extents.length} extents`);
    // An explicit size (a write that ends in a hole is impossible, but the client may extend).
    if ((req.size ?? 0) > end) end = req.size ?? 0;
    // Quota: once the master has said the volume is full, data may be overwritten but no file
    // may grow (the entry fails whole: nothing of it is applied).
    if (tx.part.full && end > node.size) fail('ENOSPC', `volume ${tx.part.volume} is full (capacity ${tx.part.capacityBytes} bytes)`);
    tx.count('bytes', end - node.size);
    node.size = end;
    tx.touch(node, true, true);
    tx.putInode(node);
    return { inode: node };
  },

  setxattr(tx, req) {
    const node = tx.mustInode(req.ino ?? 0);
    const name = req.name ?? new Uint8Array(0);
    if (name.length === 0 || name.length > XATTR_NAME_MAX) fail('ERANGE', `xattr name of ${name.length} bytes`);
    const value = req.value ?? new Uint8Array(0);
    if (value.length > XATTR_VALUE_MAX) fail('E2BIG', `xattr value of ${value.length} bytes exceeds ${XATTR_VALUE_MAX}`);
    const key = xattrKey(node.ino, name);
    const exists = tx.ctx.get(key) !== undefined;
    const flags = req.flags ?? 0;
    if (flags & XATTR_CREATE && exists) fail('EEXIST', 'xattr exists');
    if (flags & XATTR_REPLACE && !exists) fail('ENODATA', 'no such xattr');
    return (async () => {
      if (!exists && node.xattrs >= XATTRS_PER_INODE_MAX) fail('ENOSPC', `inode ${node.ino} has ${XATTRS_PER_INODE_MAX} xattrs`);
      tx.ctx.put(key, value);
      if (!exists) node.xattrs++;
      tx.touch(node, false, true);
      tx.putInode(node);
      return { inode: node };
    })();
  },

  removexattr(tx, req) {
    const node = tx.mustInode(req.ino ?? 0);
    const key = xattrKey(node.ino, req.name ?? new Uint8Array(0));
    if (tx.ctx.get(key) === undefined) fail('ENODATA', 'no such xattr');
    tx.ctx.delete(key);
    node.xattrs = Math.max(0, node.xattrs - 1);
    tx.touch(node, false, true);
    tx.putInode(node);
    return { inode: node };
  },

  open(tx, req) {
    const client = req.client ?? '';
    if (client.length === 0 || client.length > 128 || client.includes('\u0000')) fail('EINVAL', 'bad client id');
    const node = tx.mustInode(req.ino ?? 0, req.generation);
    if (node.nlink === 0 && !isDir(node.mode)) fail('ENOENT', `inode ${node.ino} was unlinked`);
    const k = openKey(node.ino, client);
    const raw = tx.ctx.get(k);
    const rec = raw ? pb.OpenRecord.decode(raw) : pb.OpenRecord.create({ count: 0 });
    rec.count++;
    tx.ctx.put(k, pb.OpenRecord.encode(rec).finish());
    tx.ctx.put(clientHandleKey(client, node.ino), new Uint8Array([1]));
    node.opens++;
    tx.putInode(node);
    if (req.leaseMs) {
      const lr = tx.ctx.get(leaseKey(client));
      tx.ctx.put(leaseKey(client), pb.ClientLease.encode({ ...(lr ? pb.ClientLease.decode(lr) : {}), expiresMs: req.leaseMs }).finish());
    }
    return { inode: node };
  },

  async close(tx, req) {
    const client = req.client ?? '';
    const ino = req.ino ?? 0;
    const k = openKey(ino, client);
    const raw = tx.ctx.get(k);
    const rec = raw ? pb.OpenRecord.decode(raw) : undefined;
    if (!rec || rec.count === 0) fail('EBADF', `client ${client} has no open handle on ${ino}`);
    const count = rec.count - 1;
    dropOpens(tx, ino, 1);
    if (count > 0 || rec.lease) {
      tx.ctx.put(k, pb.OpenRecord.encode({ count, lease: rec.lease }).finish());
      return {};
    }
    tx.ctx.delete(k);
    tx.ctx.delete(clientHandleKey(client, ino));
    return { reclaimed: (await releaseOrphan(tx, ino)) ? 1 : 0 };
  },

  // The volume's directory-rename lock (as Linux's s_vfs_rename_mutex), a lease in the root
  // partition: taken when free, expired (by the proposer's clock) or already this holder's
  // (renewal); `leaseMs` is the new expiry.
  rlock(tx, req) {
    if (!tx.owns(ROOT_INO)) fail('EINVAL', 'the rename lock lives in the partition of the root');
    const txid = req.txid ?? '';
    if (txid.length === 0 || txid.length > 128) fail('EINVAL', 'bad rename lock holder');
    const raw = tx.ctx.get(RENAME_LOCK_KEY);
    const nowMs = (tx.now.sec ?? 0) * 1000 + Math.floor((tx.now.nsec ?? 0) / 1e6);
    if (raw) {
      const cur = pb.MetaRequest.decode(raw);
      if (cur.txid !== txid && cur.leaseMs >= nowMs) fail('EAGAIN', 'another directory rename holds the volume rename lock');
    }
    tx.ctx.put(RENAME_LOCK_KEY, pb.MetaRequest.encode({ txid, leaseMs: req.leaseMs ?? 0 }).finish());
    return {};
  },
  runlock(tx, req) {
    const raw = tx.ctx.get(RENAME_LOCK_KEY);
    if (raw && pb.MetaRequest.decode(raw).txid === (req.txid ?? '')) tx.ctx.delete(RENAME_LOCK_KEY);
    return {};
  },

  // The volume's capacity and fullness as the master computed them from every partition's
  // counters, proposed by the partition's leader when they change.
  quota(tx, req) {
    tx.setQuota(req.capacity ?? 0, req.full ?? false);
    return { partition: tx.part };
  },

  async lease(tx, req) {
    const client = req.client ?? '';
    if (client.length === 0 || client.length > 128 || client.includes('\u0000')) fail('EINVAL', 'bad client id');
    const raw = tx.ctx.get(leaseKey(client));
    const old = raw ? pb.ClientLease.decode(raw) : undefined;
    if (!req.track) {
      tx.ctx.put(leaseKey(client), pb.ClientLease.encode({ ...(old ?? {}), expiresMs: req.leaseMs ?? 0 }).finish());
      return {};
    }
    // A tracked renewal (see the README): the client lists every ino it holds open here and
    // vouches for `witness`; a renewal applied late never moves the witness back.
    if ((req.inos?.length ?? 0) > MAX_LISTED_INOS) fail('EINVAL', `more than ${MAX_LISTED_INOS} inos listed`);
    const since = old?.tracked ? old.since : tx.ctx.index;
    const witness = Math.max(old?.tracked ? old.witness : 0, Math.min(req.witness ?? 0, tx.ctx.index));
    tx.ctx.put(leaseKey(client), pb.ClientLease.encode({ expiresMs: req.leaseMs ?? 0, since, witness, tracked: true }).finish());
    const held = await reconcileLeaseHolds(tx, client, new Set((req.inos ?? []).map(Number)));
    const reclaimed = await sweepOrphans(tx, SWEEP_BUDGET);
    // Orphans still waiting for this very lease: the client renews again at once (vouching for
    // this entry's index), so an unlink waits about one renewal period, not two.
    let waiting = 0;
    for (const o of await tx.ctx.scan(ORPHAN_PREFIX, SWEEP_BUDGET)) {
      const rec = orphanRecord(o.value);
      if (rec.exempt !== client && since < rec.since && witness < rec.since) waiting++;
    }
    return { index: tx.ctx.index, inos: held, reclaimed, count: waiting };
  },

  // Drops the handles of clients whose lease expired before `leaseMs` (the proposer's now), and
  // deletes orphans that no handle holds any more. Bounded per call; the caller repeats.
  async reclaim(tx, req) {
    const nowMs = req.leaseMs ?? 0;
    tx.leaseNowOverride = nowMs;
    const budget = Math.min(req.limit || 1000, 10_000);
    let handles = 0;
    let reclaimed = 0;
    for (const l of await tx.ctx.scan(LEASE_PREFIX, 1000)) {
      if (handles >= budget) break;
      if (pb.ClientLease.decode(l.value).expiresMs >= nowMs) continue;
      const client = Buffer.from(l.key).subarray(1).toString();
      const hs = await tx.ctx.scan(clientHandlePrefix(client), budget - handles);
      for (const h of hs) {
        const ino = u64At(h.key, h.key.length - 8);
        const raw = tx.ctx.get(openKey(ino, client));
        const rec = raw ? pb.OpenRecord.decode(raw) : undefined;
        dropOpens(tx, ino, rec ? rec.count + (rec.lease ? 1 : 0) : 0);
        tx.ctx.delete(h.key);
        tx.ctx.delete(openKey(ino, client));
        handles++;
        if (await releaseOrphan(tx, ino)) reclaimed++;
      }
      if ((await tx.ctx.scan(clientHandlePrefix(client), 1)).length === 0) tx.ctx.delete(l.key);
    }
    // Orphans that waited for leases which have run out meanwhile.
    if (handles < budget) reclaimed += await sweepOrphans(tx, Math.min(SWEEP_BUDGET, budget - handles));
    return { reclaimed, count: handles };
  },

  // Two-phase cross-partition operations: see crosspart.ts for the protocol.
  prepare(tx, req) {
    return prepareIntent(tx, req);
  },
  finish(tx, req) {
    return finishIntent(tx, req);
  },
  forget(tx, req) {
    const raw = tx.ctx.get(intentKey(req.txid ?? ''));
    if (raw && pb.Intent.decode(raw).kind.startsWith('decided-')) tx.ctx.delete(intentKey(req.txid ?? ''));
    return {};
  },
  // Drops one link of an inode whose dentry went away in another partition (a cross-partition
  // rename replaced it).
  async droplink(tx, req) {
    const node = tx.inode(req.ino ?? 0);
    if (!node) return {};
    const gone = await tx.unlinkInode(node, isDir(node.mode));
    return { inode: node, replacedIno: gone ? node.ino : 0 };
  },
};

/**
 * A rename with both parents here. `checkOnly`: every check, no write (phase one of the
 * two-phase form). `remote` names the one inode that may live in another partition, handled by
 * a participant intent there: 'movedDir' (its parent pointer: 'reparent') or 'target' (the
 * replaced entry's inode loses its link, a directory is checked empty: 'unlink-inode'). With
 * 'none' (the one-entry form) either answers EXDEV, sending the client to the two-phase form.
 */
async function renameIn(tx: Tx, req: MetaRequest, checkOnly: boolean, remote: 'none' | 'movedDir' | 'target' | 'both'): Promise<MetaResponse> {
  const name = checkName(req.name);
  const newName = checkName(req.newName);
  const src = tx.dir(req.parent ?? 0);
  const dst = (req.newParent ?? 0) === src.ino ? src : tx.dir(req.newParent ?? 0);
  tx.dirOpen(dst.ino);
  const sd = tx.dentry(src.ino, name);
  if (!sd) fail('ENOENT', `${Buffer.from(name).toString()} does not exist`);
  const dd = tx.dentry(dst.ino, newName);
  tx.unlocked(src.ino, name);
  tx.unlocked(dst.ino, newName);
  const srcIsDir = sd.type === S_IFDIR;
  if (dd) {
    if (dd.ino === sd.ino) return { parentInode: src, newParentInode: dst }; // same file: POSIX says do nothing
    if ((req.flags ?? 0) & RENAME_NOREPLACE) fail('EEXIST', `${Buffer.from(newName).toString()} exists`);
    const targetIsDir = dd.type === S_IFDIR;
    if (srcIsDir && !targetIsDir) fail('ENOTDIR', `${Buffer.from(newName).toString()} is not a directory`);
    if (!srcIsDir && targetIsDir) fail('EISDIR', `${Buffer.from(newName).toString()} is a directory`);
    // The replaced inode loses a link, and a directory's emptiness is only known where its
    // entries are (with its inode): elsewhere, the two-phase form does both there.
    if (!tx.owns(dd.ino) && remote !== 'target' && remote !== 'both') fail('EXDEV', `${Buffer.from(newName).toString()} has its inode in another partition`);
    if (targetIsDir && tx.owns(dd.ino) && !(await tx.isEmptyDir(dd.ino))) fail('ENOTEMPTY', `${Buffer.from(newName).toString()} is not empty`);
  }
  // A moved directory's parent pointer (the subtree check) must change in the same entry.
  if (srcIsDir && !tx.owns(sd.ino) && remote !== 'movedDir' && remote !== 'both') fail('EXDEV', `${Buffer.from(name).toString()} is a directory in another partition`);
  const checked = ((req.flags ?? 0) & RENAME_ANCESTORS_CHECKED) !== 0;
  if (srcIsDir && dst.ino !== src.ino) {
    // Every move of a directory to another parent holds the volume's rename lock, so no
    // parent pointer changes while a client walks ancestors in other partitions (a move
    // without it could interleave with that walk and build a cycle).
    if (!checked) fail(NEEDS_RENAME_LOCK, 'a directory moves to another parent: take the volume rename lock');
    // A directory may not move into its own subtree: walk up from the destination (as far as
    // this partition holds the chain; the client walked the rest under the lock).
    let cur = dst;
    for (let depth = 0; ; depth++) {
      if (cur.ino === sd.ino) fail('EINVAL', 'cannot move a directory into itself');
      if (cur.ino === ROOT_INO || cur.parent === 0 || cur.parent === cur.ino) break;
      if (depth >= DEPTH_MAX) fail('EINVAL', 'directory tree deeper than the walk limit');
      if (!tx.owns(cur.parent)) break;
      cur = tx.dir(cur.parent);
    }
  }
  if (checkOnly) return { entries: [{ name, ino: sd.ino, type: sd.type }] };
  // A moved file whose inode lives elsewhere keeps its ctime until the client's follow-up.
  const node = tx.owns(sd.ino) ? tx.mustInode(sd.ino) : undefined;
  let replaced = 0;
  if (dd && tx.owns(dd.ino)) {
    const target = tx.mustInode(dd.ino);
    const targetIsDir = isDir(target.mode);
    if (targetIsDir) dst.nlink = Math.max(2, dst.nlink - 1);
    if (await tx.unlinkInode(target, targetIsDir)) replaced = target.ino;
  } else if (dd) {
    // The replaced inode lives in another partition: its participant intent drops the link.
    if (dd.type === S_IFDIR) dst.nlink = Math.max(2, dst.nlink - 1);
    replaced = dd.ino;
  }
  tx.delDentry(src.ino, name);
  tx.putDentry(dst.ino, newName, sd.ino, sd.type, !dd);
  if (srcIsDir && dst.ino !== src.ino) {
    src.nlink = Math.max(2, src.nlink - 1);
    dst.nlink++;
    if (node) node.parent = dst.ino;
  }
  if (node) {
    tx.touch(node, false, true);
    tx.putInode(node);
  }
  tx.touch(src, true, true);
  tx.putInode(src);
  if (dst !== src) {
    tx.touch(dst, true, true);
    tx.putInode(dst);
  }
  return { ...(node ? { inode: node } : { entries: [{ name: newName, ino: sd.ino, type: sd.type }] }), parentInode: src, newParentInode: dst, replacedIno: replaced };
}

function fileType(req: MetaRequest): number {
  let type = (req.mode ?? 0) & S_IFMT;
  if (type === 0) type = S_IFREG;
  if (!TYPES.has(type)) fail('EINVAL', `bad file type ${type.toString(8)}`);
  if (type === S_IFLNK) {
    const target = req.target ?? new Uint8Array(0);
    if (target.length === 0) fail('ENOENT', 'empty symlink target');
    if (target.length > SYMLINK_MAX) fail('ENAMETOOLONG', `symlink target of ${target.length} bytes`);
  }
  return type;
}

/**
 * A rename-local's target is what its participants were prepared for: the replaced inode
 * elsewhere it names, or (naming none) no target or one whose inode is here (replaced in the
 * same entry).
 */
function renameTargetAsPrepared(tx: Tx, it: containerstack.meta.Intent.$Properties): boolean {
  const target = tx.dentry(it.newParent ?? 0, it.newName ?? new Uint8Array(0));
  if (it.replacedIno) return target?.ino === it.replacedIno;
  return !target || tx.owns(target.ino);
}

/** Which inodes of a rename-local live in other partitions (its participants). */
function remoteOf(it: containerstack.meta.Intent.$Properties): 'movedDir' | 'target' | 'both' {
  if (it.peerGroup2) return 'both';
  return it.replacedIno ? 'target' : 'movedDir';
}

/** The txid of the coordinator a participant intent belongs to (a second participant's ends in #2). */
export function coordinatorTxid(txid: string): string {
  return txid.endsWith('#2') ? txid.slice(0, -2) : txid;
}

function renameArgs(it: containerstack.meta.Intent.$Properties): MetaRequest {
  return { op: 'rename', parent: it.parent ?? 0, name: it.name ?? new Uint8Array(0), newParent: it.newParent ?? 0, newName: it.newName ?? new Uint8Array(0), flags: it.flags ?? 0 };
}

/** Allocates and stores a new inode (no dentry: the caller adds one, here or in another partition). */
function newInode(tx: Tx, req: MetaRequest, parentIno: number, type: number): Inode {
  const ino = allocIno(tx, req);
  const now = tx.now;
  const target = req.target ?? new Uint8Array(0);
  const node = pb.Inode.create({
    ino, mode: type | ((req.mode ?? 0) & 0o7777), uid: req.uid ?? 0, gid: req.gid ?? 0,
    size: type === S_IFLNK ? target.length : 0, nlink: type === S_IFDIR ? 2 : 1,
    atime: now, mtime: now, ctime: now, btime: now, generation: tx.ctx.index,
    target: type === S_IFLNK ? target : new Uint8Array(0),
    rdev: type === S_IFCHR || type === S_IFBLK ? req.rdev ?? 0 : 0,
    parent: type === S_IFDIR ? parentIno : 0,
  });
  tx.putInode(node);
  tx.count('inodes', 1);
  return node;
}

/** After a handle closes: an orphan that no handle holds any more is deleted. */
function dropOpens(tx: Tx, ino: number, n: number): void {
  const node = readInode(tx.ctx, ino);
  if (!node || n === 0) return;
  node.opens = Math.max(0, node.opens - n);
  tx.putInode(node);
}

async function releaseOrphan(tx: Tx, ino: number, leases?: Leases): Promise<boolean> {
  const raw = tx.ctx.get(orphanKey(ino));
  if (raw === undefined) return false;
  const node = readInode(tx.ctx, ino);
  if (node && node.opens > 0) return false;
  if (node && node.nlink === 0) {
    const rec = orphanRecord(raw);
    if (await tx.maybeHeld(rec.since, rec.exempt, leases)) return false;
    await tx.deleteInode(node);
  } else tx.ctx.delete(orphanKey(ino));
  return true;
}

/** An orphan record; the one-byte form written before tracked leases waits for no lease. */
function orphanRecord(raw: Uint8Array): { since: number; exempt: string } {
  if (raw.length === 1 && raw[0] === 1) return { since: 0, exempt: '' };
  const r = pb.OrphanRecord.decode(raw);
  return { since: r.since, exempt: r.exempt };
}

/** Deletes orphans nothing may hold any more (bounded; the next renewal or reclaim goes on). */
async function sweepOrphans(tx: Tx, budget: number): Promise<number> {
  const orphans = await tx.ctx.scan(ORPHAN_PREFIX, budget);
  if (orphans.length === 0) return 0;
  const leases = await tx.trackedLeases();
  let n = 0;
  for (const o of orphans) if (await releaseOrphan(tx, u64At(o.key), leases)) n++;
  return n;
}

/**
 * A tracked renewal's listing: every listed orphan gets a lease-held handle of this client;
 * lease-held handles of inos no longer listed go.
 */
async function reconcileLeaseHolds(tx: Tx, client: string, listed: Set<number>): Promise<number[]> {
  const held: number[] = [];
  for (const ino of listed) {
    if (!tx.owns(ino) || tx.ctx.get(orphanKey(ino)) === undefined) continue;
    const node = readInode(tx.ctx, ino);
    if (!node || node.nlink !== 0) continue;
    const k = openKey(ino, client);
    const raw = tx.ctx.get(k);
    const rec = raw ? pb.OpenRecord.decode(raw) : pb.OpenRecord.create({ count: 0 });
    held.push(ino);
    if (rec.lease) continue;
    rec.lease = true;
    tx.ctx.put(k, pb.OpenRecord.encode(rec).finish());
    tx.ctx.put(clientHandleKey(client, ino), new Uint8Array([1]));
    node.opens++;
    tx.putInode(node);
  }
  for (const h of await tx.ctx.scan(clientHandlePrefix(client), MAX_HANDLES_SCANNED)) {
    const ino = u64At(h.key, h.key.length - 8);
    if (listed.has(ino)) continue;
    const k = openKey(ino, client);
    const raw = tx.ctx.get(k);
    if (!raw) continue;
    const rec = pb.OpenRecord.decode(raw);
    if (!rec.lease) continue;
    dropOpens(tx, ino, 1);
    if (rec.count > 0) {
      tx.ctx.put(k, pb.OpenRecord.encode({ count: rec.count }).finish());
    } else {
      tx.ctx.delete(k);
      tx.ctx.delete(h.key);
    }
  }
  return held;
}

/**
 * Index of the first extent of a file-ordered, non-overlapping list that ends after `pos`
 * (list.length if none): where a range starting at `pos` begins to overlap.
 */
export function firstExtentEndingAfter(list: readonly ExtentKey[], pos: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const m = list[mid] as ExtentKey;
    if ((m.fileOffset ?? 0) + (m.length ?? 0) <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Puts a new extent over the file range it covers: pieces of older extents under it are cut
 * away (returned in `freed`), and a piece that continues the previous one in the same extent is
 * merged with it, so sequential appends keep one key. A cut or merged piece loses its crc (0):
 * readers then verify against the block group's own per-block checksums. Edits `node.extents`
 * in place and looks only at the extents the new one overlaps (a binary search finds them): a
 * commit of K keys on a file of N extents costs K log N plus the splices, not K x N (random
 * 4 KiB writes to a 64 MiB file left metanodes copying 16k-entry lists for seconds per commit).
 */
export function addExtent(node: Inode, add: ExtentKey, freed: ExtentKey[]): void {
  const n = full(add);
  const a = n.fileOffset;
  const b = n.fileOffset + n.length;
  const list = node.extents as ExtentKey[];
  const first = firstExtentEndingAfter(list, a);
  let left: Ext | undefined;
  let right: Ext | undefined;
  let j = first;
  for (; j < list.length; j++) {
    const e = full(list[j] as ExtentKey);
    const s = e.fileOffset;
    const t = e.fileOffset + e.length;
    if (s >= b) break;
    if (s < a) left = { ...e, length: a - s, crc: 0 };
    const cs = Math.max(s, a);
    const ct = Math.min(t, b);
    freed.push({ groupId: e.groupId, extentId: e.extentId, offset: e.offset + (cs - s), length: ct - cs, crc: 0, fileOffset: cs });
    if (t > b) right = { ...e, offset: e.offset + (b - s), length: t - b, crc: 0, fileOffset: b };
  }
  // In file order, merging with a contiguous predecessor in the same extent.
  const items: ExtentKey[] = [];
  const prev = left ?? (first > 0 ? full(list[first - 1] as ExtentKey) : undefined);
  const merges = prev !== undefined && prev.groupId === n.groupId && prev.extentId === n.extentId && prev.fileOffset + prev.length === a && prev.offset + prev.length === n.offset;
  if (left) items.push(merges ? { ...left, length: left.length + n.length, crc: 0 } : left);
  else if (merges) list[first - 1] = { ...(prev as Ext), length: (prev as Ext).length + n.length, crc: 0 };
  if (!merges) items.push(n);
  if (right) items.push(right);
  list.splice(first, j - first, ...items);
}

type Ext = { groupId: number; extentId: number; offset: number; length: number; crc: number; fileOffset: number };
function full(e: ExtentKey): Ext {
  return { groupId: e.groupId ?? 0, extentId: e.extentId ?? 0, offset: e.offset ?? 0, length: e.length ?? 0, crc: e.crc ?? 0, fileOffset: e.fileOffset ?? 0 };
}

/** Cuts the extent list at `size`; the bytes past it are returned in `freed`. */
export function truncateExtents(node: Inode, size: number, freed: ExtentKey[]): void {
  const out: Ext[] = [];
  for (const e of node.extents.map(full)) {
    const t = e.fileOffset + e.length;
    if (t <= size) out.push(e);
    else if (e.fileOffset >= size) freed.push(e);
    else {
      out.push({ ...e, length: size - e.fileOffset, crc: 0 });
      freed.push({ groupId: e.groupId, extentId: e.extentId, offset: e.offset + (size - e.fileOffset), length: t - size, crc: 0, fileOffset: size });
    }
  }
  node.extents = out;
}

// ---------------------------------------------------------------- two-phase intents
//
// A cross-partition operation has a participant side (prepared first) and a coordinator side
// (prepared second). Finishing the coordinator is the decision: it applies (or drops) its side
// and leaves a `decided-commit` / `decided-abort` record in ONE entry. The participant is then
// finished the same way, and the decision record forgotten. Recovery of a stale participant
// intent asks the coordinator to finish with abort: a coordinator that never prepared records
// `decided-abort` (so a late prepare fails), one prepared but undecided aborts, and a decided
// one answers its decision, which the participant then follows.

/** Intents older than this are resolved by recovery; decision records are kept 10x longer. */
export const INTENT_TIMEOUT_MS = 30_000;
const COORD_KINDS = new Set(['rename-src', 'link-inode', 'create-inode', 'unlink-dentry', 'rename-local']);
export const isCoordinatorKind = (kind: string): boolean => COORD_KINDS.has(kind);

async function prepareIntent(tx: Tx, req: MetaRequest): Promise<MetaResponse> {
  const it = req.intent;
  const txid = req.txid ?? '';
  if (!it || txid.length === 0 || txid.length > 160) fail('EINVAL', 'prepare without an intent or txid');
  const key = intentKey(txid);
  const prior = tx.ctx.get(key);
  if (prior) {
    const p = pb.Intent.decode(prior);
    if (p.kind === 'decided-abort') fail('EAGAIN', `operation ${txid} was aborted`);
    return { intents: [p] }; // a retried prepare
  }
  // A coordinator that stalled past the recovery window may find its participant already
  // resolved (and the fence forgotten): it must not prepare then. Clocks are the proposers'.
  if (isCoordinatorKind(it.kind ?? '') && (req.leaseMs ?? 0) > 0 && (it.createdMs ?? 0) + 2 * INTENT_TIMEOUT_MS < (req.leaseMs ?? 0)) fail('EAGAIN', `operation ${txid} started too long ago`);
  const name = it.name ?? new Uint8Array(0);
  const intent = pb.Intent.create({ ...it, txid, createdMs: it.createdMs ?? 0 });
  switch (it.kind) {
    case 'rename-src': {
      // Source side: the dentry must exist and is reserved (unchanged) until the decision.
      checkName(name);
      tx.dir(it.parent ?? 0);
      const d = tx.dentry(it.parent ?? 0, name);
      if (!d) fail('ENOENT', `${Buffer.from(name).toString()} does not exist`);
      if (d.ino !== it.ino) fail('ESTALE', 'source dentry changed');
      tx.unlocked(it.parent ?? 0, name);
      tx.ctx.put(lockKey(it.parent ?? 0, name), Buffer.from(txid));
      break;
    }
    case 'rename-dst':
    case 'link-dentry': {
      checkName(name);
      tx.dir(it.parent ?? 0);
      const d = tx.dentry(it.parent ?? 0, name);
      // With a second participant the client named the replaced inode: it must still be there.
      if (it.peerGroup2 && (d?.ino ?? 0) !== (it.replacedIno ?? 0)) fail('ESTALE', 'target entry changed');
      if (d) {
        if (it.kind === 'link-dentry' || ((req.flags ?? 0) & RENAME_NOREPLACE)) fail('EEXIST', `${Buffer.from(name).toString()} exists`);
        if (d.type === S_IFDIR && it.type !== S_IFDIR) fail('EISDIR', `${Buffer.from(name).toString()} is a directory`);
        if (d.type !== S_IFDIR && it.type === S_IFDIR) fail('ENOTDIR', `${Buffer.from(name).toString()} is not a directory`);
        // A directory's entries live with its inode: emptiness is only known if that is here;
        // elsewhere a second participant (`unlink-inode` there, peer_group2) checks and unlinks it.
        if (d.type === S_IFDIR && !tx.owns(d.ino) && !it.peerGroup2) fail('EXDEV', `${Buffer.from(name).toString()} is a directory in another partition`);
        if (d.type === S_IFDIR && tx.owns(d.ino) && !(await tx.isEmptyDir(d.ino))) fail('ENOTEMPTY', `${Buffer.from(name).toString()} is not empty`);
        intent.replacedIno = d.ino;
      }
      tx.unlocked(it.parent ?? 0, name);
      tx.ctx.put(lockKey(it.parent ?? 0, name), Buffer.from(txid));
      break;
    }
    case 'reparent': {
      // A directory moved by a rename in another partition: its parent pointer follows.
      const node = tx.mustInode(it.ino ?? 0);
      if (!isDir(node.mode)) fail('ENOTDIR', `inode ${node.ino} is not a directory`);
      break;
    }
    case 'rename-local': {
      // Both parents here, one inode elsewhere: every check now, names held.
      const r = await renameIn(tx, renameArgs(it), true, remoteOf(it));
      if (r.entries?.[0]?.ino !== it.ino) fail('ESTALE', 'source entry changed');
      if (!renameTargetAsPrepared(tx, it)) fail('ESTALE', 'target entry changed');
      tx.ctx.put(lockKey(it.parent ?? 0, name), Buffer.from(txid));
      tx.ctx.put(lockKey(it.newParent ?? 0, it.newName ?? new Uint8Array(0)), Buffer.from(txid));
      break;
    }
    case 'unlink-inode': {
      // Inode side of an unlink/rmdir whose dentry lives elsewhere: a directory must be empty
      // and takes no new entries until the decision.
      const node = tx.mustInode(it.ino ?? 0);
      if (isDir(node.mode)) {
        if (!(await tx.isEmptyDir(node.ino))) fail('ENOTEMPTY', `directory ${node.ino} is not empty`);
        tx.dirOpen(node.ino);
        tx.ctx.put(lockKey(node.ino, DIR_LOCK), Buffer.from(txid));
      }
      intent.type = node.mode & S_IFMT;
      break;
    }
    case 'unlink-dentry': {
      checkName(name);
      tx.dir(it.parent ?? 0);
      const d = tx.dentry(it.parent ?? 0, name);
      if (!d) fail('ENOENT', `${Buffer.from(name).toString()} does not exist`);
      if (d.ino !== it.ino) fail('ESTALE', 'dentry changed');
      tx.unlocked(it.parent ?? 0, name);
      tx.ctx.put(lockKey(it.parent ?? 0, name), Buffer.from(txid));
      intent.type = d.type;
      break;
    }
    case 'create-inode': {
      // Inode side of a create whose dentry lives in another partition: the inode exists from
      // now on with its link counted; abort deletes it again.
      const node = newInode(tx, req, it.parent ?? 0, fileType(req));
      intent.ino = node.ino;
      intent.type = node.mode & S_IFMT;
      break;
    }
    case 'link-inode': {
      // Inode side of a link: the new link is counted now (so the inode cannot vanish), and
      // dropped again on abort.
      const node = tx.mustInode(it.ino ?? 0);
      if (isDir(node.mode)) fail('EPERM', 'hard link to a directory');
      if (node.nlink === 0) fail('ENOENT', `inode ${node.ino} was unlinked`);
      if (node.nlink >= LINK_MAX) fail('EMLINK', `inode ${node.ino} has ${node.nlink} links`);
      node.nlink++;
      tx.touch(node, false, true);
      tx.putInode(node);
      intent.type = node.mode & S_IFMT;
      break;
    }
    default:
      fail('EINVAL', `unknown intent kind ${JSON.stringify(it.kind)}`);
  }
  tx.ctx.put(key, pb.Intent.encode(intent).finish());
  return { intents: [intent] };
}

async function finishIntent(tx: Tx, req: MetaRequest): Promise<MetaResponse> {
  const txid = req.txid ?? '';
  if (txid.length === 0 || txid.length > 160) fail('EINVAL', 'finish without a txid');
  const key = intentKey(txid);
  const raw = tx.ctx.get(key);
  const asCoordinator = isCoordinatorKind(req.intent?.kind ?? '');
  if (!raw) {
    // Never prepared here. On the coordinator side this fences a late prepare out.
    if (!asCoordinator) return {};
    const fence = pb.Intent.create({ txid, kind: 'decided-abort', createdMs: req.leaseMs ?? 0 });
    tx.ctx.put(key, pb.Intent.encode(fence).finish());
    return { intents: [fence] };
  }
  const it = pb.Intent.decode(raw);
  if (it.kind.startsWith('decided-')) return { intents: [it] }; // already decided: its outcome
  const commit = req.commit ?? false;
  const name = it.name;
  let replaced = 0;
  switch (it.kind) {
    case 'rename-src': {
      tx.ctx.delete(lockKey(it.parent, name));
      if (!commit) break;
      const parent = tx.dir(it.parent);
      if (tx.dentry(parent.ino, name)) tx.delDentry(parent.ino, name);
      if (it.type === S_IFDIR) parent.nlink = Math.max(2, parent.nlink - 1);
      tx.touch(parent, true, true);
      tx.putInode(parent);
      const node = tx.owns(it.ino) ? readInode(tx.ctx, it.ino) : undefined;
      if (node) {
        if (isDir(node.mode) && it.newParent) node.parent = it.newParent;
        tx.touch(node, false, true);
        tx.putInode(node);
      }
      break;
    }
    case 'rename-dst':
    case 'link-dentry': {
      tx.ctx.delete(lockKey(it.parent, name));
      if (!commit) break;
      const parent = tx.dir(it.parent);
      const old = tx.dentry(parent.ino, name);
      if (old && old.ino !== it.ino) {
        if (old.type === S_IFDIR) parent.nlink = Math.max(2, parent.nlink - 1);
        const target = tx.owns(old.ino) ? readInode(tx.ctx, old.ino) : undefined;
        if (target) {
          if (await tx.unlinkInode(target, isDir(target.mode))) replaced = target.ino;
        } else replaced = old.ino; // lives in another partition: the client drops that link there
      }
      tx.putDentry(parent.ino, name, it.ino, it.type, !old);
      if (it.type === S_IFDIR) parent.nlink++;
      tx.touch(parent, true, true);
      tx.putInode(parent);
      if (tx.owns(it.ino)) {
        const node = readInode(tx.ctx, it.ino);
        if (node) {
          if (isDir(node.mode)) node.parent = parent.ino;
          tx.touch(node, false, true);
          tx.putInode(node);
        }
      }
      break;
    }
    case 'reparent': {
      if (!commit) break;
      const node = readInode(tx.ctx, it.ino);
      if (node) {
        node.parent = it.newParent;
        tx.touch(node, false, true);
        tx.putInode(node);
      }
      break;
    }
    case 'rename-local': {
      tx.ctx.delete(lockKey(it.parent, name));
      tx.ctx.delete(lockKey(it.newParent, it.newName));
      if (!commit) break;
      try {
        // Checked at prepare with the names held, but the target directory may have taken
        // entries since: check again, before any write, and decide abort if it no longer holds.
        await renameIn(tx, renameArgs(it), true, remoteOf(it));
        if (!renameTargetAsPrepared(tx, it)) fail('ESTALE', 'target entry changed');
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        const decided = pb.Intent.create({ ...it, kind: 'decided-abort' });
        tx.ctx.put(key, pb.Intent.encode(decided).finish());
        return { intents: [decided] };
      }
      replaced = (await renameIn(tx, renameArgs(it), false, remoteOf(it))).replacedIno ?? 0;
      break;
    }
    case 'unlink-dentry': {
      tx.ctx.delete(lockKey(it.parent, name));
      if (!commit) break;
      const parent = tx.dir(it.parent);
      const d = tx.dentry(parent.ino, name);
      if (d && d.ino === it.ino) tx.delDentry(parent.ino, name);
      if (it.type === S_IFDIR) parent.nlink = Math.max(2, parent.nlink - 1);
      tx.touch(parent, true, true);
      tx.putInode(parent);
      break;
    }
    case 'unlink-inode': {
      tx.ctx.delete(lockKey(it.ino, DIR_LOCK));
      if (!commit) break;
      const node = readInode(tx.ctx, it.ino);
      if (node && (await tx.unlinkInode(node, isDir(node.mode)))) replaced = node.ino;
      break;
    }
    case 'create-inode': {
      if (commit) break;
      const node = readInode(tx.ctx, it.ino);
      if (node) await tx.deleteInode(node);
      break;
    }
    case 'link-inode': {
      if (commit) break;
      const node = readInode(tx.ctx, it.ino);
      if (node) await tx.unlinkInode(node, false);
      break;
    }
    default:
      break;
  }
  if (isCoordinatorKind(it.kind)) {
    const decided = pb.Intent.create({ ...it, kind: commit ? 'decided-commit' : 'decided-abort' });
    tx.ctx.put(key, pb.Intent.encode(decided).finish());
    return { replacedIno: replaced, intents: [decided] };
  }
  tx.ctx.delete(key);
  return { replacedIno: replaced, intents: [it] };
}

// ---------------------------------------------------------------- reads

export function partitionInfo(r: Reader): PartitionInfo {
  const p = readPart(r);
  if (!p) fail('META_UNINITIALIZED', 'partition not initialized');
  return p;
}

function readOwned(r: Reader, ino: number): Inode | undefined {
  const p = partitionInfo(r);
  if (ino < p.start || ino >= p.end) fail('EXDEV', `ino ${ino} is not in this partition`);
  return readInode(r, ino);
}

/** Runs a read-only operation against a partition's state. */
export async function readMeta(r: Reader, req: MetaRequest): Promise<MetaResponse> {
  switch (req.op) {
    case 'getattr': {
      const i = readOwned(r, req.ino ?? 0);
      if (!i) fail('ENOENT', `no inode ${req.ino}`);
      if (req.generation && i.generation !== req.generation) fail('ESTALE', `inode ${req.ino} was replaced`);
      return { inode: i };
    }
    case 'lookup': {
      const name = checkName(req.name);
      const parent = readOwned(r, req.parent ?? 0);
      if (!parent) fail('ENOENT', `no directory ${req.parent}`);
      if (!isDir(parent.mode)) fail('ENOTDIR', `inode ${req.parent} is not a directory`);
      const raw = r.get(dentryKey(parent.ino, name));
      if (!raw) fail('ENOENT', `${Buffer.from(name).toString()} does not exist`);
      const d = pb.Dentry.decode(raw);
      const p = partitionInfo(r);
      // The inode comes along when it lives here (the common case: one round trip).
      const i = d.ino >= p.start && d.ino < p.end ? readInode(r, d.ino) : undefined;
      return { entries: [{ name, ino: d.ino, type: d.type }], ...(i ? { inode: i } : {}) };
    }
    case 'readdir': {
      const parent = readOwned(r, req.parent ?? 0);
      if (!parent) fail('ENOENT', `no directory ${req.parent}`);
      if (!isDir(parent.mode)) fail('ENOTDIR', `inode ${req.parent} is not a directory`);
      const limit = Math.max(1, Math.min(req.limit || READDIR_MAX, READDIR_MAX));
      const prefix = dentryPrefix(parent.ino);
      const after = req.cookie && req.cookie.length > 0 ? Buffer.concat([prefix, req.cookie]) : undefined;
      const kvs = await r.scan(prefix, limit + 1, after);
      const entries = kvs.slice(0, limit).map((kv) => {
        const d = pb.Dentry.decode(kv.value);
        return { name: Buffer.from(kv.key).subarray(9), ino: d.ino, type: d.type };
      });
      const last = entries[entries.length - 1];
      return { entries, cookie: kvs.length > limit && last ? last.name : new Uint8Array(0), inode: parent };
    }
    case 'readlink': {
      const i = readOwned(r, req.ino ?? 0);
      if (!i) fail('ENOENT', `no inode ${req.ino}`);
      if (!isLnk(i.mode)) fail('EINVAL', `inode ${req.ino} is not a symlink`);
      return { value: i.target };
    }
    case 'getxattr': {
      const i = readOwned(r, req.ino ?? 0);
      if (!i) fail('ENOENT', `no inode ${req.ino}`);
      const v = r.get(xattrKey(i.ino, req.name ?? new Uint8Array(0)));
      if (v === undefined) fail('ENODATA', 'no such xattr');
      return { value: v };
    }
    case 'listxattr': {
      const i = readOwned(r, req.ino ?? 0);
      if (!i) fail('ENOENT', `no inode ${req.ino}`);
      const kvs = await r.scan(xattrPrefix(i.ino), XATTRS_PER_INODE_MAX);
      return { names: kvs.map((kv) => Buffer.from(kv.key).subarray(9)) };
    }
    case 'statfs':
    case 'partition': {
      const p = partitionInfo(r);
      return { partition: p, nearlyFull: nearlyFull(p) };
    }
    case 'orphans': {
      const kvs = await r.scan(ORPHAN_PREFIX, Math.min(req.limit || 1000, 10_000));
      return { names: kvs.map((kv) => Buffer.from(kv.key).subarray(1)) };
    }
    case 'intent': {
      const raw = r.get(intentKey(req.txid ?? ''));
      return { intents: raw ? [pb.Intent.decode(raw)] : [] };
    }
    case 'intents': {
      const kvs = await r.scan(INTENT_PREFIX, Math.min(req.limit || 1000, 10_000));
      return { intents: kvs.map((kv) => pb.Intent.decode(kv.value)) };
    }
    default:
      fail('EINVAL', `unknown read ${JSON.stringify(req.op)}`);
  }
}

export const READ_OPS = new Set(['getattr', 'lookup', 'readdir', 'readlink', 'getxattr', 'listxattr', 'statfs', 'partition', 'orphans', 'intents', 'intent']);
