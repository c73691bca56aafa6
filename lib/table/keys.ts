// Key layout of tables inside one shared level database (many groups, one db, so one synced
// batch can cover every group on a node). Every key starts with 't', the group id (u32 BE),
// the generation (u32 BE) and a kind byte. A snapshot is restored into the next generation and
// made current by one write of the pointer key 'g'<group id> -> generation, so a transfer
// that dies half way leaves the current state untouched.
//   d<user key>            KeyValue of a user key
//   e<rev u64><n u32>      watch history event n of revision rev
//   s<client id>           idempotency session of a client
//   m<name>                table metadata: applied index, revision, compacted revision
export const KIND_DATA = 0x64; // 'd'
export const KIND_EVENT = 0x65; // 'e'
export const KIND_SESSION = 0x73; // 's'
export const KIND_META = 0x6d; // 'm'

export class GroupKeys {
  readonly prefix: Buffer;
  /** Where a user key starts inside a data key. */
  readonly dataOffset: number;
  readonly appliedKey: Buffer;
  readonly revisionKey: Buffer;
  readonly compactedKey: Buffer;

  constructor(
    readonly groupId: number,
    readonly generation = 0,
  ) {
    this.prefix = Buffer.alloc(9);
    this.prefix[0] = 0x74; // 't'
    this.prefix.writeUInt32BE(groupId, 1);
    this.prefix.writeUInt32BE(generation, 5);
    this.dataOffset = this.prefix.length + 1;
    this.appliedKey = this.meta('applied');
    this.revisionKey = this.meta('revision');
    this.compactedKey = this.meta('compacted');
  }

  kindPrefix(kind: number): Buffer {
    const b = Buffer.allocUnsafe(this.dataOffset);
    this.prefix.copy(b, 0);
    b[this.dataOffset - 1] = kind;
    return b;
  }

  data(key: Uint8Array): Buffer {
    const o = this.dataOffset;
    const b = Buffer.allocUnsafe(o + key.length);
    this.prefix.copy(b, 0);
    b[o - 1] = KIND_DATA;
    b.set(key, o);
    return b;
  }

  event(revision: number, n: number): Buffer {
    const o = this.dataOffset;
    const b = Buffer.allocUnsafe(o + 12);
    this.prefix.copy(b, 0);
    b[o - 1] = KIND_EVENT;
    b.writeBigUInt64BE(BigInt(revision), o);
    b.writeUInt32BE(n, o + 8);
    return b;
  }

  /** The pointer to a group's current generation (outside every generation's keys). */
  static generationKey(groupId: number): Buffer {
    const b = Buffer.allocUnsafe(5);
    b[0] = 0x67; // 'g'
    b.writeUInt32BE(groupId, 1);
    return b;
  }

  session(clientId: string): Buffer {
    return Buffer.concat([this.kindPrefix(KIND_SESSION), Buffer.from(clientId, 'utf8')]);
  }

  meta(name: string): Buffer {
    return Buffer.concat([this.kindPrefix(KIND_META), Buffer.from(name, 'utf8')]);
  }

  /** The first key after every key that starts with `p` (for exclusive range ends). */
  static prefixEnd(p: Uint8Array): Buffer {
    const b = Buffer.from(p);
    for (let i = b.length - 1; i >= 0; i--) {
      if ((b[i] as number) < 0xff) {
        b[i] = (b[i] as number) + 1;
        return b.subarray(0, i + 1);
      }
    }
    // All 0xff: no finite end inside this kind; the caller bounds by the kind's end instead.
    return Buffer.alloc(0);
  }
}

export function u64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

export function readU64(b: Uint8Array | undefined): number {
  if (!b || b.length !== 8) return 0;
  return Number(Buffer.from(b.buffer, b.byteOffset, 8).readBigUInt64BE());
}
