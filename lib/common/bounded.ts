// Bounded containers. Every queue and map in this project has a limit; these make the limit
// part of the type so going past it is an explicit decision (evict or refuse), never growth.
import { LimitExceededError } from './errors.js';

/** Least-recently-used map with a hard entry limit; the oldest entry is evicted on overflow. */
export class LruMap<K, V> {
  private readonly map = new Map<K, V>();
  constructor(
    readonly maxEntries: number,
    private readonly onEvict?: (key: K, value: V) => void,
  ) {
    if (!(maxEntries > 0)) throw new RangeError(`LruMap: maxEntries must be > 0, got ${maxEntries}`);
  }
  get size(): number {
    return this.map.size;
  }
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  /** Reads without refreshing recency. */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }
  has(key: K): boolean {
    return this.map.has(key);
  }
  set(key: K, value: V): this {
    if (this.map.has(key)) this.map.delete(key);
    this.map.set(key, value);
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      const v = this.map.get(oldest.value) as V;
      this.map.delete(oldest.value);
      this.onEvict?.(oldest.value, v);
    }
    return this;
  }
  delete(key: K): boolean {
    return this.map.delete(key);
  }
  clear(): void {
    this.map.clear();
  }
  keys(): IterableIterator<K> {
    return this.map.keys();
  }
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}

/** FIFO ring buffer with a fixed capacity (rounded up to a power of two). Push past it throws. */
export class BoundedQueue<T> {
  private buf: (T | undefined)[];
  private head = 0;
  private len = 0;
  private readonly mask: number;
  constructor(
    readonly capacity: number,
    private readonly name = 'queue',
  ) {
    if (!(capacity > 0) || !Number.isSafeInteger(capacity)) throw new RangeError(`BoundedQueue: bad capacity ${capacity}`);
    let size = 1;
    while (size < capacity) size *= 2;
    this.buf = new Array<T | undefined>(size);
    this.mask = size - 1;
  }
  get length(): number {
    return this.len;
  }
  get full(): boolean {
    return this.len >= this.capacity;
  }
  /** Adds to the tail; throws LimitExceededError when full. */
  push(item: T): void {
    if (this.len >= this.capacity) throw new LimitExceededError(this.name, this.capacity);
    this.buf[(this.head + this.len) & this.mask] = item;
    this.len++;
  }
  /** Adds to the tail; returns false when full instead of throwing. */
  offer(item: T): boolean {
    if (this.len >= this.capacity) return false;
    this.push(item);
    return true;
  }
  shift(): T | undefined {
    if (this.len === 0) return undefined;
    const item = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.len--;
    return item;
  }
  peek(): T | undefined {
    return this.len === 0 ? undefined : this.buf[this.head];
  }
  clear(): void {
    this.buf.fill(undefined);
    this.head = 0;
    this.len = 0;
  }
  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.len; i++) yield this.buf[(this.head + i) & this.mask] as T;
  }
}
