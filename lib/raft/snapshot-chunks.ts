// Streaming InstallSnapshot: the core emits one 'snap' message carrying the whole snapshot;
// the driver splits its data into bounded chunks for the wire and the receiver reassembles
// them before stepping the message into its core. A transfer is identified by (groupId, from,
// term, snapshot index, snapshot term); the receiver reports how many bytes it holds, so a
// sender whose stream broke resumes from that offset instead of starting over.
import { assert } from '../common/index.js';
import { InvalidMessageError } from './errors.js';
import type { Message, SnapshotMetadata } from './types.js';

export interface SnapshotChunk {
  groupId: number;
  from: number;
  to: number;
  term: number;
  metadata: SnapshotMetadata;
  totalSizeBytes: number;
  offsetBytes: number;
  data: Uint8Array;
  /** True on the chunk that ends at totalSizeBytes. */
  last: boolean;
}

/** Splits a 'snap' message into chunks of at most chunkSizeBytes, starting at fromOffsetBytes (resume). */
export function splitSnapshot(m: Message, chunkSizeBytes: number, fromOffsetBytes = 0): SnapshotChunk[] {
  if (m.type !== 'snap' || m.snapshot === undefined) throw new InvalidMessageError('not a snapshot message');
  assert(Number.isSafeInteger(chunkSizeBytes) && chunkSizeBytes > 0, 'chunk size must be positive');
  const data = m.snapshot.data;
  assert(fromOffsetBytes >= 0 && fromOffsetBytes <= data.byteLength, `resume offset ${fromOffsetBytes} out of range`);
  const out: SnapshotChunk[] = [];
  let off = fromOffsetBytes;
  do {
    const end = Math.min(off + chunkSizeBytes, data.byteLength);
    out.push({
      groupId: m.groupId, from: m.from, to: m.to, term: m.term, metadata: m.snapshot.metadata,
      totalSizeBytes: data.byteLength, offsetBytes: off, data: data.subarray(off, end), last: end === data.byteLength,
    });
    off = end;
  } while (off < data.byteLength);
  return out;
}

function transferKey(c: SnapshotChunk): string {
  return `${c.groupId}/${c.from}/${c.term}/${c.metadata.index}/${c.metadata.term}`;
}

export type ChunkResult =
  | { kind: 'complete'; message: Message }
  | { kind: 'progress'; receivedBytes: number }
  /** The chunk does not continue the current transfer: the sender should resume at receivedBytes. */
  | { kind: 'outOfOrder'; receivedBytes: number };

/**
 * Reassembles one inbound snapshot per group. A new transfer (different key) replaces an
 * unfinished older one. Bounded: a snapshot larger than maxSnapshotSizeBytes is refused.
 */
export class SnapshotAssembler {
  // invariant: for each group, buf holds exactly bytes [0, received) of the transfer `key`
  private readonly inbound = new Map<number, { key: string; buf: Uint8Array; received: number }>();

  constructor(
    readonly maxSnapshotSizeBytes: number,
    /** Groups with a transfer in progress at once. */
    readonly maxConcurrentTransfers = 64,
  ) {}

  /** Bytes held for the transfer this chunk belongs to (0 if none): the resume offset. */
  receivedBytes(c: Pick<SnapshotChunk, 'groupId' | 'from' | 'term' | 'metadata'>): number {
    const cur = this.inbound.get(c.groupId);
    return cur !== undefined && cur.key === transferKey(c as SnapshotChunk) ? cur.received : 0;
  }

  add(c: SnapshotChunk): ChunkResult {
    if (c.totalSizeBytes > this.maxSnapshotSizeBytes) {
      throw new InvalidMessageError(`snapshot of ${c.totalSizeBytes} bytes exceeds the limit of ${this.maxSnapshotSizeBytes}`);
    }
    if (c.offsetBytes < 0 || c.offsetBytes + c.data.byteLength > c.totalSizeBytes) throw new InvalidMessageError('chunk outside the snapshot');
    const key = transferKey(c);
    let cur = this.inbound.get(c.groupId);
    if (cur === undefined || cur.key !== key) {
      if (c.offsetBytes !== 0) return { kind: 'outOfOrder', receivedBytes: 0 };
      if (cur === undefined && this.inbound.size >= this.maxConcurrentTransfers) {
        throw new InvalidMessageError(`more than ${this.maxConcurrentTransfers} snapshot transfers in progress`);
      }
      cur = { key, buf: new Uint8Array(c.totalSizeBytes), received: 0 };
      this.inbound.set(c.groupId, cur);
    }
    if (c.offsetBytes !== cur.received) return { kind: 'outOfOrder', receivedBytes: cur.received };
    cur.buf.set(c.data, c.offsetBytes);
    cur.received += c.data.byteLength;
    if (cur.received < c.totalSizeBytes) return { kind: 'progress', receivedBytes: cur.received };
    this.inbound.delete(c.groupId);
    const m: Message = {
      type: 'snap', groupId: c.groupId, from: c.from, to: c.to, term: c.term, logTerm: 0, index: 0, entries: [], commit: 0,
      reject: false, rejectHint: 0, snapshot: { metadata: c.metadata, data: cur.buf },
    };
    return { kind: 'complete', message: m };
  }

  /** Drops a group's partial transfer (e.g. the group was removed). */
  abort(groupId: number): void {
    this.inbound.delete(groupId);
  }
}
