// Flow control for streams. Each direction of a stream has a byte window: the sender may have
// at most `window` bytes unconsumed at the receiver; the receiver returns credit (WINDOW
// frames) as its consumer takes messages. A slow consumer therefore stops the sender instead
// of making either side buffer without bound.
import { INITIAL_STREAM_WINDOW_BYTES } from './frame.js';
import { RpcProtocolError } from './errors.js';

/** Sender side: waits for credit before each message. */
export class SendWindow {
  // invariant: credit may go negative by at most one message (a message larger than the
  // whole window is allowed through when credit is positive, so it cannot deadlock).
  private credit = INITIAL_STREAM_WINDOW_BYTES;
  private waiter: { resolve: () => void; reject: (e: unknown) => void } | null = null;
  private failed: unknown = null;

  /** Resolves when a message may be sent. */
  ready(): Promise<void> | undefined {
    if (this.failed) return Promise.reject(this.failed);
    if (this.credit > 0) return undefined;
    if (this.waiter) throw new RpcProtocolError('concurrent writes on one stream: await each write');
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }
  consume(bytes: number): void {
    this.credit -= bytes;
  }
  grant(bytes: number): void {
    this.credit += bytes;
    if (this.credit > 0 && this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve();
    }
  }
  fail(err: unknown): void {
    if (this.failed) return;
    this.failed = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
  }
}

/**
 * Receiver side: an async iterable of decoded messages. Bytes held are bounded by the window
 * the sender was given (plus one frame); a sender that ignores its window is a protocol error.
 */
export class RecvQueue<T> implements AsyncIterable<T> {
  private readonly items: { msg: T; bytes: number }[] = [];
  private head = 0;
  private heldBytes = 0;
  private unacked = 0;
  private ended = false;
  private error: unknown = null;
  private waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;

  /**
   * `windowBytes` (>= the protocol's initial window): what this receiver lets the sender have
   * outstanding; the part above the initial window is granted at once (the sender starts at
   * the initial window, as the protocol says).
   */
  constructor(
    private readonly sendCredit: (bytes: number) => void,
    private readonly maxFrameBytes: number,
    private readonly onReturn?: () => void,
    private readonly windowBytes = INITIAL_STREAM_WINDOW_BYTES,
  ) {
    if (windowBytes > INITIAL_STREAM_WINDOW_BYTES) sendCredit(windowBytes - INITIAL_STREAM_WINDOW_BYTES);
  }

  push(msg: T, bytes: number): void {
    if (this.ended || this.error) return;
    if (this.heldBytes + bytes > this.windowBytes + this.maxFrameBytes) {
      throw new RpcProtocolError('stream peer sent past its flow-control window');
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      this.credit(bytes);
      w.resolve({ value: msg, done: false });
      return;
    }
    this.items.push({ msg, bytes });
    this.heldBytes += bytes;
  }
  end(): void {
    this.ended = true;
    if (this.waiter && this.head >= this.items.length) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: undefined, done: true });
    }
  }
  fail(err: unknown): void {
    if (this.ended || this.error) return;
    this.error = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
  }

  private credit(bytes: number): void {
    // Return credit in batches (a quarter window) so small messages don't cost a frame each.
    this.unacked += bytes;
    if (this.unacked >= this.windowBytes / 4) {
      const n = this.unacked;
      this.unacked = 0;
      this.sendCredit(n);
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.head < this.items.length) {
      const it = this.items[this.head] as { msg: T; bytes: number };
      this.items[this.head] = undefined as unknown as { msg: T; bytes: number };
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items.splice(0, this.head);
        this.head = 0;
      }
      this.heldBytes -= it.bytes;
      this.credit(it.bytes);
      return Promise.resolve({ value: it.msg, done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new RpcProtocolError('concurrent next() on one stream'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: () => {
        // The consumer stopped early (break): tell the owner so it can cancel the stream.
        if (!this.ended && !this.error) this.onReturn?.();
        this.ended = true;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
