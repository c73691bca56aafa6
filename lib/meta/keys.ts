// Key layout of a metadata partition inside its table (one table group per partition):
//   m/part                      PartitionInfo (range, cursor, counters)
//   i<ino u64>                  Inode
//   d<parent u64><name>         Dentry: so one directory is one contiguous range (readdir)
//   x<ino u64><name>            xattr value
//   h<ino u64><client>          OpenRecord: a client's open handles on an inode
//   c<client>\0<ino u64>        the same handle indexed by client (reclaim on lease expiry)
//   o<ino u64>                  orphan: nlink reached 0 while open; deleted on last close
//   l<client>                   ClientLease
//   t<txid>                     Intent of a cross-partition operation (or its coordinator's decision)
//   k<parent u64><name>         a name reserved by a pending intent (txid)
//   m/rename-lock               the volume's directory-rename lock (root partition only)
export const PART_KEY = Buffer.from('m/part');
export const RENAME_LOCK_KEY = Buffer.from('m/rename-lock');

function withU64(tag: number, n: number, rest?: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(9 + (rest?.length ?? 0));
  b[0] = tag;
  b.writeBigUInt64BE(BigInt(n), 1);
  if (rest) b.set(rest, 9);
  return b;
}

export const inodeKey = (ino: number): Buffer => withU64(0x69, ino);
export const dentryKey = (parent: number, name: Uint8Array): Buffer => withU64(0x64, parent, name);
export const dentryPrefix = (parent: number): Buffer => withU64(0x64, parent);
export const xattrKey = (ino: number, name: Uint8Array): Buffer => withU64(0x78, ino, name);
export const xattrPrefix = (ino: number): Buffer => withU64(0x78, ino);
export const openKey = (ino: number, client: string): Buffer => withU64(0x68, ino, Buffer.from(client));
export const openPrefix = (ino: number): Buffer => withU64(0x68, ino);
export const orphanKey = (ino: number): Buffer => withU64(0x6f, ino);
export const ORPHAN_PREFIX = Buffer.from([0x6f]);
export const clientHandleKey = (client: string, ino: number): Buffer => {
  const c = Buffer.from(client);
  const b = Buffer.allocUnsafe(c.length + 9);
  c.copy(b, 0);
  b[c.length] = 0;
  b.writeBigUInt64BE(BigInt(ino), c.length + 1);
  return Buffer.concat([Buffer.from([0x63]), b]);
};
export const clientHandlePrefix = (client: string): Buffer => Buffer.concat([Buffer.from([0x63]), Buffer.from(client), Buffer.from([0])]);
export const leaseKey = (client: string): Buffer => Buffer.concat([Buffer.from([0x6c]), Buffer.from(client)]);
export const LEASE_PREFIX = Buffer.from([0x6c]);
/** Kept in memory by the partition's table (few keys, read by most commands): leases and m/ records. */
export const META_MEMORY_PREFIXES: Uint8Array[] = [LEASE_PREFIX, Buffer.from('m/')];
export const intentKey = (txid: string): Buffer => Buffer.concat([Buffer.from([0x74]), Buffer.from(txid)]);
export const INTENT_PREFIX = Buffer.from([0x74]);

/** The u64 that follows a one-byte tag (ino of i/x/h/o keys, parent of d keys). */
export function u64At(key: Uint8Array, at = 1): number {
  return Number(Buffer.from(key.buffer, key.byteOffset, key.byteLength).readBigUInt64BE(at));
}
export const lockKey = (parent: number, name: Uint8Array): Buffer => withU64(0x6b, parent, name);
