// The FUSE kernel protocol (linux/fuse.h, 7.x): decoding of the requests /dev/fuse hands us and
// encoding of the replies we write back. Pure functions over Buffers, no I/O, so the decoder can
// be fuzzed on its own. Every read is bounds-checked against the request's length: a short or
// malformed request decodes to an errno to answer with (EIO/EINVAL), never to a throw that could
// escape the session loop, and a request whose header is unreadable decodes to 'drop' (there is
// no `unique` to answer to).
//
// Numbers: u64 fields (unique, nodeid, fh, offsets, sizes) are read as JS numbers. The values we
// hand out (nodeids, fhs) stay far below 2^53; a kernel value at or above 2^53 (an offset or
// size no file here reaches) is refused with EINVAL rather than silently rounded.

export const FUSE_KERNEL_VERSION = 7;
/** The minor we speak: 7.33 (max_pages since 7.28, HANDLE_KILLPRIV_V2 since 7.33; fuse_attr.flags, 7.32, we leave 0). */
export const FUSE_KERNEL_MINOR = 33;

export const OP = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9, UNLINK: 10, RMDIR: 11,
  RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18, FSYNC: 20, SETXATTR: 21, GETXATTR: 22,
  LISTXATTR: 23, REMOVEXATTR: 24, FLUSH: 25, INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, FSYNCDIR: 30,
  GETLK: 31, SETLK: 32, SETLKW: 33, ACCESS: 34, CREATE: 35, INTERRUPT: 36, BMAP: 37, DESTROY: 38, IOCTL: 39, POLL: 40,
  NOTIFY_REPLY: 41, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46, COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48, REMOVEMAPPING: 49, SYNCFS: 50, TMPFILE: 51,
} as const;

export const INIT_FLAGS = {
  ASYNC_READ: 1 << 0, POSIX_LOCKS: 1 << 1, ATOMIC_O_TRUNC: 1 << 3, EXPORT_SUPPORT: 1 << 4, BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6, FLOCK_LOCKS: 1 << 10, AUTO_INVAL_DATA: 1 << 12, DO_READDIRPLUS: 1 << 13, ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16, PARALLEL_DIROPS: 1 << 18, HANDLE_KILLPRIV: 1 << 19, ABORT_ERROR: 1 << 21, MAX_PAGES: 1 << 22,
  HANDLE_KILLPRIV_V2: 1 << 28, INIT_EXT: 1 << 30,
} as const;

export const FATTR = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, LOCKOWNER: 1 << 9, CTIME: 1 << 10, KILL_SUIDGID: 1 << 11,
} as const;

export const GETATTR_FH = 1;
/** WRITE: the writer lacks CAP_FSETID; OPEN (O_TRUNC): the same; the server kills suid/sgid (HANDLE_KILLPRIV_V2). */
export const WRITE_KILL_SUIDGID = 1 << 2;
export const OPEN_KILL_SUIDGID = 1 << 0;
export const FSYNC_FDATASYNC = 1;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const OPEN_OUT_SIZE = 16;
export const INIT_OUT_SIZE = 64;
export const STATFS_OUT_SIZE = 80;
/** The kernel refuses a read buffer smaller than this (FUSE_MIN_READ_BUFFER). */
export const MIN_READ_BUFFER = 8192;

// errnos (Linux): the protocol carries them as negative numbers in the out header.
export const E = { EPERM: 1, ENOENT: 2, EIO: 5, EBADF: 9, ENOMEM: 12, EEXIST: 17, EINVAL: 22, ENFILE: 23, ERANGE: 34, ENOSYS: 38, ENODATA: 61, EPROTO: 71 } as const;

export interface InHeader {
  len: number;
  opcode: number;
  unique: number;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

/** A time as the protocol carries it: seconds and nanoseconds. */
export interface Timespec {
  sec: number;
  nsec: number;
}

export type Request =
  | { op: 'init'; major: number; minor: number; maxReadahead: number; flags: number }
  | { op: 'lookup' | 'unlink' | 'rmdir' | 'removexattr'; name: string }
  | { op: 'forget'; nlookup: number }
  | { op: 'batch_forget'; items: { nodeid: number; nlookup: number }[] }
  | { op: 'getattr'; flags: number; fh: number }
  | {
      op: 'setattr'; valid: number; fh: number; size: number; atime: Timespec; mtime: Timespec;
      mode: number; uid: number; gid: number;
    }
  | { op: 'readlink' | 'statfs' | 'destroy' }
  | { op: 'symlink'; name: string; target: string }
  | { op: 'mknod'; mode: number; rdev: number; umask: number; name: string }
  | { op: 'mkdir'; mode: number; umask: number; name: string }
  | { op: 'rename'; newdir: number; flags: number; from: string; to: string }
  | { op: 'link'; oldnodeid: number; name: string }
  | { op: 'open' | 'opendir'; flags: number; openFlags: number }
  | { op: 'create'; flags: number; mode: number; umask: number; name: string }
  | { op: 'read' | 'readdir'; fh: number; offset: number; size: number }
  | { op: 'write'; fh: number; offset: number; size: number; writeFlags: number; data: Buffer }
  | { op: 'release' | 'releasedir'; fh: number; flags: number }
  | { op: 'flush'; fh: number }
  | { op: 'fsync' | 'fsyncdir'; fh: number; flags: number }
  | { op: 'setxattr'; size: number; flags: number; name: string; value: Buffer }
  | { op: 'getxattr'; size: number; name: string }
  | { op: 'listxattr'; size: number }
  | { op: 'access'; mask: number }
  | { op: 'interrupt'; unique: number }
  | { op: 'unsupported'; opcode: number };

export type Decoded =
  /** Not even the header could be read: nothing to answer. */
  | { kind: 'drop'; reason: string }
  /** A header, but a body we cannot use: answer `errno`. */
  | { kind: 'bad'; header: InHeader; errno: number; reason: string }
  | { kind: 'ok'; header: InHeader; req: Request };

class Short extends Error {}

/** A bounds-checked cursor over one request's bytes [pos, end). */
class Cursor {
  constructor(
    private readonly b: Buffer,
    public pos: number,
    private readonly end: number,
  ) {}
  private need(n: number): void {
    if (this.pos + n > this.end) throw new Short(`request too short: need ${n} bytes at ${this.pos}, have ${this.end - this.pos}`);
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): number {
    this.need(8);
    const lo = this.b.readUInt32LE(this.pos);
    const hi = this.b.readUInt32LE(this.pos + 4);
    this.pos += 8;
    if (hi >= 0x200000) throw new TooBig(`u64 at ${this.pos - 8} is beyond 2^53`);
    return hi * 0x1_0000_0000 + lo;
  }
  /** A u64 the kernel may set to all ones (e.g. an unused lock owner): read, but not needed exactly. */
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }
  /** A NUL-terminated name. */
  cstring(): string {
    const at = this.b.indexOf(0, this.pos);
    if (at < 0 || at >= this.end) throw new Short(`unterminated name at ${this.pos}`);
    const s = this.b.toString('utf8', this.pos, at);
    this.pos = at + 1;
    return s;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

class TooBig extends Error {}

function readHeader(b: Buffer, n: number): InHeader | string {
  if (n < IN_HEADER_SIZE || b.length < IN_HEADER_SIZE) return `short header (${n} bytes)`;
  const len = b.readUInt32LE(0);
  if (len !== n) return `header length ${len} differs from the ${n} bytes read`;
  const uLo = b.readUInt32LE(8);
  const uHi = b.readUInt32LE(12);
  const nLo = b.readUInt32LE(16);
  const nHi = b.readUInt32LE(20);
  if (uHi >= 0x200000 || nHi >= 0x200000) return 'unique or nodeid beyond 2^53';
  return {
    len, opcode: b.readUInt32LE(4), unique: uHi * 0x1_0000_0000 + uLo, nodeid: nHi * 0x1_0000_0000 + nLo,
    uid: b.readUInt32LE(24), gid: b.readUInt32LE(28), pid: b.readUInt32LE(32),
  };
}

/** Bounds on what a request may carry (names: the kernel's FUSE_NAME_MAX; batch forgets: one page's worth and more). */
export const NAME_MAX_BYTES = 1024;
export const BATCH_FORGET_MAX = 65_536;

function name(c: Cursor): string {
  const s = c.cstring();
  if (s.length === 0 || Buffer.byteLength(s) > NAME_MAX_BYTES || s.includes('/')) throw new Short(`bad name ${JSON.stringify(s.slice(0, 64))}`);
  return s;
}

/** Decodes the `n` bytes at the start of `b` (one read from /dev/fuse). Never throws. */
export function decodeRequest(b: Buffer, n: number): Decoded {
  const h = readHeader(b, n);
  if (typeof h === 'string') return { kind: 'drop', reason: h };
  const c = new Cursor(b, IN_HEADER_SIZE, n);
  try {
    return { kind: 'ok', header: h, req: decodeBody(h.opcode, c) };
  } catch (e) {
    if (e instanceof Short) return { kind: 'bad', header: h, errno: E.EIO, reason: e.message };
    if (e instanceof TooBig) return { kind: 'bad', header: h, errno: E.EINVAL, reason: e.message };
    // Nothing else in decodeBody throws; if it ever does, still answer rather than crash the loop.
    return { kind: 'bad', header: h, errno: E.EIO, reason: `decoder bug: ${(e as Error).message}` };
  }
}

function decodeBody(opcode: number, c: Cursor): Request {
  switch (opcode) {
    case OP.INIT: {
      const major = c.u32();
      const minor = c.u32();
      const maxReadahead = c.u32();
      const flags = c.u32();
      return { op: 'init', major, minor, maxReadahead, flags };
    }
    case OP.LOOKUP:
      return { op: 'lookup', name: name(c) };
    case OP.UNLINK:
      return { op: 'unlink', name: name(c) };
    case OP.RMDIR:
      return { op: 'rmdir', name: name(c) };
    case OP.REMOVEXATTR:
      return { op: 'removexattr', name: c.cstring() };
    case OP.FORGET:
      return { op: 'forget', nlookup: c.u64() };
    case OP.BATCH_FORGET: {
      const count = c.u32();
      c.skip(4);
      if (count > BATCH_FORGET_MAX) throw new Short(`batch forget of ${count} entries`);
      const items: { nodeid: number; nlookup: number }[] = [];
      for (let i = 0; i < count; i++) items.push({ nodeid: c.u64(), nlookup: c.u64() });
      return { op: 'batch_forget', items };
    }
    case OP.GETATTR: {
      const flags = c.u32();
      c.skip(4);
      return { op: 'getattr', flags, fh: c.u64() };
    }
    case OP.SETATTR: {
      const valid = c.u32();
      c.skip(4);
      const fh = c.u64();
      const size = c.u64();
      c.skip(8); // lock_owner
      const atimeS = c.u64();
      const mtimeS = c.u64();
      c.skip(8); // ctime
      const atimeNs = c.u32();
      const mtimeNs = c.u32();
      c.skip(4); // ctimensec
      const mode = c.u32();
      c.skip(4);
      const uid = c.u32();
      const gid = c.u32();
      c.skip(4);
      return { op: 'setattr', valid, fh, size, atime: { sec: atimeS, nsec: atimeNs }, mtime: { sec: mtimeS, nsec: mtimeNs }, mode, uid, gid };
    }
    case OP.READLINK:
      return { op: 'readlink' };
    case OP.STATFS:
      return { op: 'statfs' };
    case OP.DESTROY:
      return { op: 'destroy' };
    case OP.SYMLINK: {
      const nm = name(c);
      const target = c.cstring();
      return { op: 'symlink', name: nm, target };
    }
    case OP.MKNOD: {
      const mode = c.u32();
      const rdev = c.u32();
      const umask = c.u32();
      c.skip(4);
      return { op: 'mknod', mode, rdev, umask, name: name(c) };
    }
    case OP.MKDIR: {
      const mode = c.u32();
      const umask = c.u32();
      return { op: 'mkdir', mode, umask, name: name(c) };
    }
    case OP.RENAME: {
      const newdir = c.u64();
      const from = name(c);
      return { op: 'rename', newdir, flags: 0, from, to: name(c) };
    }
    case OP.RENAME2: {
      const newdir = c.u64();
      const flags = c.u32();
      c.skip(4);
      const from = name(c);
      return { op: 'rename', newdir, flags, from, to: name(c) };
    }
    case OP.LINK: {
      const oldnodeid = c.u64();
      return { op: 'link', oldnodeid, name: name(c) };
    }
    case OP.OPEN:
    case OP.OPENDIR: {
      const flags = c.u32();
      const openFlags = c.u32();
      return { op: opcode === OP.OPEN ? 'open' : 'opendir', flags, openFlags };
    }
    case OP.CREATE: {
      const flags = c.u32();
      const mode = c.u32();
      const umask = c.u32();
      c.skip(4);
      return { op: 'create', flags, mode, umask, name: name(c) };
    }
    case OP.READ:
    case OP.READDIR: {
      const fh = c.u64();
      const offset = c.u64();
      const size = c.u32();
      c.skip(4 + 8 + 4 + 4); // read_flags, lock_owner, flags, padding
      return { op: opcode === OP.READ ? 'read' : 'readdir', fh, offset, size };
    }
    case OP.WRITE: {
      const fh = c.u64();
      const offset = c.u64();
      const size = c.u32();
      const writeFlags = c.u32();
      c.skip(8 + 4 + 4); // lock_owner, flags, padding
      return { op: 'write', fh, offset, size, writeFlags, data: c.bytes(size) };
    }
    case OP.RELEASE:
    case OP.RELEASEDIR: {
      const fh = c.u64();
      const flags = c.u32();
      c.skip(4 + 8);
      return { op: opcode === OP.RELEASE ? 'release' : 'releasedir', fh, flags };
    }
    case OP.FLUSH: {
      const fh = c.u64();
      c.skip(4 + 4 + 8);
      return { op: 'flush', fh };
    }
    case OP.FSYNC:
    case OP.FSYNCDIR: {
      const fh = c.u64();
      const flags = c.u32();
      c.skip(4);
      return { op: opcode === OP.FSYNC ? 'fsync' : 'fsyncdir', fh, flags };
    }
    case OP.SETXATTR: {
      // The compat layout (8 bytes): we never negotiate FUSE_SETXATTR_EXT.
      const size = c.u32();
      const flags = c.u32();
      const nm = c.cstring();
      return { op: 'setxattr', size, flags, name: nm, value: c.bytes(size) };
    }
    case OP.GETXATTR: {
      const size = c.u32();
      c.skip(4);
      return { op: 'getxattr', size, name: c.cstring() };
    }
    case OP.LISTXATTR: {
      const size = c.u32();
      c.skip(4);
      return { op: 'listxattr', size };
    }
    case OP.ACCESS: {
      const mask = c.u32();
      c.skip(4);
      return { op: 'access', mask };
    }
    case OP.INTERRUPT:
      return { op: 'interrupt', unique: c.u64() };
    default:
      return { op: 'unsupported', opcode };
  }
}

// ---------------------------------------------------------------- encoding

/** What a reply needs to know of an inode's attributes (see session.ts's toAttr). */
export interface Attr {
  ino: number;
  size: number;
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
}

function u64(b: Buffer, at: number, v: number): void {
  // Negative or fractional input (a bad stat from a volume) must not throw from writeUInt32LE.
  const x = Number.isFinite(v) && v > 0 ? Math.min(Math.floor(v), Number.MAX_SAFE_INTEGER) : 0;
  b.writeUInt32LE(x % 0x1_0000_0000, at);
  b.writeUInt32LE(Math.floor(x / 0x1_0000_0000), at + 4);
}

function u32(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(Number.isFinite(v) ? (v >>> 0) : 0, at);
}

/** A signed seconds count (times before 1970) as the kernel's u64 two's complement. */
function s64(b: Buffer, at: number, v: number): void {
  if (v >= 0) return u64(b, at, v);
  b.writeBigInt64LE(BigInt(Math.max(Math.ceil(v), Number.MIN_SAFE_INTEGER)), at);
}

export function writeAttr(b: Buffer, at: number, a: Attr): void {
  u64(b, at, a.ino);
  u64(b, at + 8, a.size);
  u64(b, at + 16, a.blocks);
  s64(b, at + 24, a.atime.sec);
  s64(b, at + 32, a.mtime.sec);
  s64(b, at + 40, a.ctime.sec);
  u32(b, at + 48, a.atime.nsec);
  u32(b, at + 52, a.mtime.nsec);
  u32(b, at + 56, a.ctime.nsec);
  u32(b, at + 60, a.mode);
  u32(b, at + 64, a.nlink);
  u32(b, at + 68, a.uid);
  u32(b, at + 72, a.gid);
  u32(b, at + 76, a.rdev);
  u32(b, at + 80, a.blksize);
  u32(b, at + 84, 0);
}

/** A reply buffer with room for the out header and `payload` bytes; the header is filled by finishReply. */
export function replyBuffer(payload: number): Buffer {
  return Buffer.alloc(OUT_HEADER_SIZE + payload);
}

export function finishReply(b: Buffer, unique: number, len = b.length): Buffer {
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(0, 4);
  u64(b, 8, unique);
  return len === b.length ? b : b.subarray(0, len);
}

/** Unsolicited messages to the kernel (fuse_notify_code): unique 0, the code where a reply has its error. */
export const NOTIFY_INVAL_INODE = 2;

/**
 * FUSE_NOTIFY_INVAL_INODE: the kernel drops its cached attributes of `nodeid` (the next stat
 * or read past the cached size asks again) and, when `offset` >= 0, the page cache from there
 * for `len` bytes (0: to the end). Answers ENOENT when the kernel holds no such inode.
 */
export function invalInodeNotify(nodeid: number, offset = -1, len = 0): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE + 24);
  b.writeUInt32LE(b.length, 0);
  b.writeInt32LE(NOTIFY_INVAL_INODE, 4);
  u64(b, 8, 0);
  u64(b, 16, nodeid);
  b.writeBigInt64LE(BigInt(offset), 24);
  b.writeBigInt64LE(BigInt(len), 32);
  return b;
}

export function errorReply(unique: number, errno: number): Buffer {
  const b = Buffer.alloc(OUT_HEADER_SIZE);
  b.writeUInt32LE(OUT_HEADER_SIZE, 0);
  b.writeInt32LE(-Math.abs(errno), 4);
  u64(b, 8, unique);
  return b;
}

export function emptyReply(unique: number): Buffer {
  return finishReply(replyBuffer(0), unique);
}

function splitSeconds(s: number): [number, number] {
  const sec = Math.floor(s);
  return [sec, Math.min(999_999_999, Math.round((s - sec) * 1e9))];
}

export function entryReply(unique: number, nodeid: number, attr: Attr, entryValidS: number, attrValidS: number): Buffer {
  const b = replyBuffer(ENTRY_OUT_SIZE);
  const o = OUT_HEADER_SIZE;
  const [es, ens] = splitSeconds(entryValidS);
  const [as, ans] = splitSeconds(attrValidS);
  u64(b, o, nodeid);
  u64(b, o + 8, 0); // generation: nodeids are never reused
  u64(b, o + 16, es);
  u64(b, o + 24, as);
  u32(b, o + 32, ens);
  u32(b, o + 36, ans);
  writeAttr(b, o + 40, attr);
  return finishReply(b, unique);
}

export function attrReply(unique: number, attr: Attr, attrValidS: number): Buffer {
  const b = replyBuffer(ATTR_OUT_SIZE);
  const o = OUT_HEADER_SIZE;
  const [as, ans] = splitSeconds(attrValidS);
  u64(b, o, as);
  u32(b, o + 8, ans);
  writeAttr(b, o + 16, attr);
  return finishReply(b, unique);
}

export function openReply(unique: number, fh: number, openFlags: number): Buffer {
  const b = replyBuffer(OPEN_OUT_SIZE);
  u64(b, OUT_HEADER_SIZE, fh);
  u32(b, OUT_HEADER_SIZE + 8, openFlags);
  return finishReply(b, unique);
}

/** CREATE answers an entry and an open handle in one reply. */
export function createReply(unique: number, nodeid: number, attr: Attr, entryValidS: number, attrValidS: number, fh: number, openFlags: number): Buffer {
  const e = entryReply(unique, nodeid, attr, entryValidS, attrValidS);
  const b = Buffer.alloc(e.length + OPEN_OUT_SIZE);
  e.copy(b);
  u64(b, e.length, fh);
  u32(b, e.length + 8, openFlags);
  return finishReply(b, unique);
}

export function writeReply(unique: number, size: number): Buffer {
  const b = replyBuffer(8);
  u32(b, OUT_HEADER_SIZE, size);
  return finishReply(b, unique);
}

/** GETXATTR/LISTXATTR size probe (the caller passed size 0). */
export function xattrSizeReply(unique: number, size: number): Buffer {
  return writeReply(unique, size);
}

export function dataReply(unique: number, data: Buffer): Buffer {
  const b = replyBuffer(data.length);
  data.copy(b, OUT_HEADER_SIZE);
  return finishReply(b, unique);
}

export interface Kstatfs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

export function statfsReply(unique: number, s: Kstatfs): Buffer {
  const b = replyBuffer(STATFS_OUT_SIZE);
  const o = OUT_HEADER_SIZE;
  u64(b, o, s.blocks);
  u64(b, o + 8, s.bfree);
  u64(b, o + 16, s.bavail);
  u64(b, o + 24, s.files);
  u64(b, o + 32, s.ffree);
  u32(b, o + 40, s.bsize);
  u32(b, o + 44, s.namelen);
  u32(b, o + 48, s.frsize);
  return finishReply(b, unique);
}

export interface InitReply {
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGranNs: number;
  maxPages: number;
}

export function initReply(unique: number, r: InitReply): Buffer {
  const b = replyBuffer(INIT_OUT_SIZE);
  const o = OUT_HEADER_SIZE;
  u32(b, o, FUSE_KERNEL_VERSION);
  u32(b, o + 4, r.minor);
  u32(b, o + 8, r.maxReadahead);
  u32(b, o + 12, r.flags);
  b.writeUInt16LE(Math.min(0xffff, r.maxBackground), o + 16);
  b.writeUInt16LE(Math.min(0xffff, r.congestionThreshold), o + 18);
  u32(b, o + 20, r.maxWrite);
  u32(b, o + 24, r.timeGranNs);
  b.writeUInt16LE(Math.min(0xffff, r.maxPages), o + 28);
  return finishReply(b, unique);
}

export interface DirEntry {
  ino: number;
  name: string;
  /** d_type (DT_*): 0 when unknown (the caller stats). */
  type: number;
}

/** fuse_dirent records for entries[from..] that fit in `size` bytes; `off` of each is its index + 1. */
export function direntsReply(unique: number, entries: readonly DirEntry[], from: number, size: number): Buffer {
  const chunks: Buffer[] = [];
  let used = 0;
  for (let i = from; i < entries.length; i++) {
    const e = entries[i] as DirEntry;
    const nameBytes = Buffer.from(e.name);
    const rec = (24 + nameBytes.length + 7) & ~7;
    if (used + rec > size) break;
    const r = Buffer.alloc(rec);
    u64(r, 0, e.ino);
    u64(r, 8, i + 1);
    u32(r, 16, nameBytes.length);
    u32(r, 20, e.type);
    nameBytes.copy(r, 24);
    chunks.push(r);
    used += rec;
  }
  const b = replyBuffer(used);
  let at = OUT_HEADER_SIZE;
  for (const c of chunks) {
    c.copy(b, at);
    at += c.length;
  }
  return finishReply(b, unique);
}

/** Encodes a request (the kernel's side): for tests that drive a session without a kernel. */
export function encodeRequest(h: Omit<InHeader, 'len'>, body: Buffer): Buffer {
  const b = Buffer.alloc(IN_HEADER_SIZE + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt32LE(h.opcode, 4);
  u64(b, 8, h.unique);
  u64(b, 16, h.nodeid);
  b.writeUInt32LE(h.uid, 24);
  b.writeUInt32LE(h.gid, 28);
  b.writeUInt32LE(h.pid, 32);
  body.copy(b, IN_HEADER_SIZE);
  return b;
}

/** The out header of a reply (tests, and the session's own checks). */
export function readOutHeader(b: Buffer): { len: number; error: number; unique: number } | undefined {
  if (b.length < OUT_HEADER_SIZE) return undefined;
  return { len: b.readUInt32LE(0), error: b.readInt32LE(4), unique: b.readUInt32LE(12) * 0x1_0000_0000 + b.readUInt32LE(8) };
}
