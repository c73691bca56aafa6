// The frame decoder on its own: frames split at every possible point, a large frame in many
// chunks, several frames in one chunk, bad lengths.
import t from 'tap';
import { FrameDecoder, FrameType, encodeFrame, encodeRequest, type Frame } from '../../lib/rpc/frame.js';
import { RpcFrameTooLargeError, RpcProtocolError } from '../../lib/rpc/errors.js';
import { isAligned } from '../../lib/common/index.js';

const collect = (max = 64 * 1024 * 1024): { d: FrameDecoder; got: Frame[] } => {
  const got: Frame[] = [];
  const d = new FrameDecoder(max, (f) => got.push({ ...f, body: Buffer.from(f.body) }));
  return { d, got };
};

t.test('a stream of frames split at every byte boundary decodes identically', async (t) => {
  const frames = [
    encodeRequest(1, 0, 500, Buffer.from('svc.Method'), Buffer.from('hello')),
    encodeFrame(FrameType.Response, 0, 1, Buffer.from('world')),
    encodeFrame(FrameType.Data, 0, 7, Buffer.alloc(300, 9)),
    encodeFrame(FrameType.End, 0, 7),
  ];
  const all = Buffer.concat(frames);
  for (let cut = 1; cut < all.length; cut++) {
    const { d, got } = collect();
    d.push(all.subarray(0, cut));
    d.push(all.subarray(cut));
    if (got.length !== 4 || got[0]!.method !== 'svc.Method' || got[0]!.deadlineMs !== 500 || got[2]!.body.length !== 300) {
      t.fail(`split at ${cut}: ${got.length} frames`);
      return;
    }
  }
  const { d, got } = collect();
  for (const byte of all) d.push(Buffer.from([byte]));
  t.equal(got.length, 4, 'one byte at a time');
  t.equal(Buffer.from(got[1]!.body).toString(), 'world');
  t.equal(d.bufferedBytes, 0);
});

t.test('a 16 MiB frame in 64 KiB chunks', async (t) => {
  const body = Buffer.alloc(16 * 1024 * 1024);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i, i);
  const f = encodeFrame(FrameType.Data, 0, 3, body);
  const { d, got } = collect();
  for (let off = 0; off < f.length; off += 65536) d.push(f.subarray(off, Math.min(f.length, off + 65536)));
  t.equal(got.length, 1);
  t.ok(got[0]!.body.equals(body), 'body intact');
});

t.test('bad lengths are errors as soon as the length is known', async (t) => {
  const { d } = collect(1024);
  const big = Buffer.alloc(4);
  big.writeUInt32BE(4096);
  t.throws(() => d.push(big), RpcFrameTooLargeError, 'oversized length refused before its body arrives');
  const { d: d2 } = collect(1024);
  t.throws(() => d2.push(Buffer.from([0, 0, 0, 1, 0])), RpcProtocolError, 'length shorter than a header');
  const { d: d3 } = collect(1024);
  d3.push(Buffer.from([0, 0]));
  t.throws(() => d3.push(Buffer.from([0x10, 0])), RpcFrameTooLargeError, 'length split across chunks is still checked');
});

// Borrowed input (a socket reading into one reused buffer): every frame must come out intact
// even though the chunk is overwritten right after each push, and paused decoding must keep
// frames (and their order) across later chunks.
t.test('borrowed chunks: every split point, the buffer scribbled on after each push', async (t) => {
  const frames = [
    encodeRequest(1, 0, 500, Buffer.from('svc.Method'), Buffer.from('hello')),
    encodeFrame(FrameType.Data, 0, 7, Buffer.alloc(300, 9)),
    encodeFrame(FrameType.Response, 0, 1, Buffer.from('world')),
    encodeFrame(FrameType.Data, 0, 8, Buffer.alloc(5000, 3)),
    encodeFrame(FrameType.End, 0, 7),
  ];
  const all = Buffer.concat(frames);
  const scratch = Buffer.alloc(all.length);
  const feed = (d: FrameDecoder, from: number, to: number): void => {
    all.copy(scratch, 0, from, to);
    d.pushBorrowed(scratch.subarray(0, to - from));
    scratch.fill(0xee); // the socket's next read lands here
  };
  let bad = 0;
  for (let cut = 1; cut < all.length; cut++) {
    for (const cut2 of [cut, Math.min(all.length, cut + 7), Math.min(all.length, cut + 400)]) {
      const got: Frame[] = [];
      const d = new FrameDecoder(1 << 20, (f) => got.push(f)); // bodies kept as handed out, not copied
      feed(d, 0, cut);
      feed(d, cut, cut2);
      feed(d, cut2, all.length);
      const ok =
        got.length === 5 && got[0]!.method === 'svc.Method' && got[0]!.body.toString() === 'hello' && got[1]!.body.equals(Buffer.alloc(300, 9)) &&
        got[2]!.body.toString() === 'world' && got[3]!.body.equals(Buffer.alloc(5000, 3)) && got[4]!.type === FrameType.End && d.bufferedBytes === 0;
      if (!ok) bad++;
    }
  }
  t.equal(bad, 0, 'all frames intact at every pair of split points');
});

t.test('borrowed chunks: a large frame across reads, and a pause in the middle of a chunk', async (t) => {
  const body = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i, i);
  const big = encodeFrame(FrameType.Data, 0, 3, body);
  const small = encodeFrame(FrameType.Data, 0, 4, Buffer.from('after'));
  const all = Buffer.concat([small, big, small, small]);
  const got: Frame[] = [];
  const d = new FrameDecoder(8 << 20, (f) => {
    got.push(f);
    if (got.length === 1) d.paused = true; // the consumer pushes back after the first frame
  });
  const scratch = Buffer.alloc(65536);
  for (let off = 0; off < all.length; off += 65536) {
    const n = Math.min(65536, all.length - off);
    all.copy(scratch, 0, off, off + n);
    d.pushBorrowed(scratch.subarray(0, n));
    scratch.fill(0xee);
  }
  t.equal(got.length, 1, 'paused: nothing dispatched after the first frame');
  d.paused = false;
  d.push(Buffer.alloc(0));
  t.equal(got.length, 4, 'resumed: the buffered frames, in order');
  t.ok(got[1]!.body.equals(body), 'large body intact');
  t.equal(got[2]!.body.toString(), 'after');
  t.equal(got[3]!.body.toString(), 'after');
  t.equal(d.bufferedBytes, 0);
});

// A large frame assembled from borrowed reads (the socket path) gets a page-aligned body, so a
// datanode can write a streamed chunk with O_DIRECT as it is; small ones stay ordinary buffers.
t.test('borrowed chunks: a large frame is assembled with its body page-aligned', async (t) => {
  const body = Buffer.alloc(512 * 1024);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i * 3, i);
  const all = Buffer.concat([encodeFrame(FrameType.Data, 0, 5, Buffer.from('x')), encodeFrame(FrameType.Data, 0, 5, body)]);
  for (const direct of [false, true]) {
    const got: Frame[] = [];
    const d = new FrameDecoder(1 << 20, (f) => got.push(f));
    const scratch = Buffer.alloc(65536);
    let off = 0;
    while (off < all.length) {
      const target = direct ? d.directTarget(1) : undefined;
      if (target) {
        // Read straight into the frame's buffer, as a socket's onread does.
        const n = Math.min(target.length, 100_000, all.length - off);
        all.copy(target, 0, off, off + n);
        d.filledDirect(n);
        off += n;
        continue;
      }
      const n = Math.min(scratch.length, all.length - off);
      all.copy(scratch, 0, off, off + n);
      d.pushBorrowed(scratch.subarray(0, n));
      scratch.fill(0xee);
      off += n;
    }
    t.equal(got.length, 2, `${direct ? 'direct reads' : 'copied reads'}: both frames`);
    t.ok(got[1]!.body.equals(body), 'large body intact');
    t.ok(isAligned(got[1]!.body), 'and it starts page-aligned in memory');
  }
});

// Owned input (fresh buffers per socket read): a large frame spanning reads comes out as views
// of those reads (parts, no join), with `body` still joining them on demand, followed by
// whatever frames share its last read; paused decoding still buffers and keeps order.
t.test('large frames across reads are handed out as parts', async (t) => {
  const body = Buffer.alloc(300_000);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i * 7, i);
  const big = encodeFrame(FrameType.Data, 0, 9, body);
  const small = encodeFrame(FrameType.End, 0, 9);
  const req = encodeRequest(3, 0, 0, Buffer.from('svc.Big'), body);
  const all = Buffer.concat([small, big, small, req, small, big]);
  for (const readSize of [1000, 65536, 100_001]) {
    for (const pauseAfter of [-1, 1, 2]) {
      const got: Frame[] = [];
      const d = new FrameDecoder(1 << 20, (f) => {
        got.push(f);
        if (got.length === pauseAfter) d.paused = true;
      });
      for (let off = 0; off < all.length; off += readSize) d.push(Buffer.from(all.subarray(off, Math.min(all.length, off + readSize))));
      if (pauseAfter > 0) {
        t.equal(got.length, pauseAfter, `paused after ${pauseAfter}`);
        d.paused = false;
        d.push(Buffer.alloc(0));
      }
      t.equal(got.length, 6, `six frames (reads of ${readSize}, pause ${pauseAfter})`);
      const bigs = [got[1], got[3], got[5]] as Frame[];
      t.ok(bigs.every((f) => f.bodyLength === body.length), 'body lengths');
      t.ok(bigs.every((f) => Buffer.concat(f.parts ?? [f.body]).equals(body)), 'parts (or body) hold the body in order');
      t.ok(bigs.every((f) => f.body.equals(body)), 'body joins the parts');
      t.equal((got[3] as Frame).method, 'svc.Big', 'a request header parsed from the first part');
      if (readSize === 65536 && pauseAfter === -1) t.ok(bigs.every((f) => (f.parts?.length ?? 0) > 1), 'spanning frames came as several parts');
      t.equal(d.bufferedBytes, 0);
    }
  }
});

t.test('random frames in random reads: owned and borrowed paths give the same frames', async (t) => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  const bodies: Buffer[] = [];
  const frames: Buffer[] = [];
  for (let i = 0; i < 120; i++) {
    const kind = rnd(10);
    const len = kind < 3 ? rnd(40) : kind < 7 ? rnd(70_000) : 64 * 1024 + rnd(250_000);
    const body = Buffer.alloc(len);
    for (let k = 0; k < len; k += 997) body[k] = (i * 31 + k) & 0xff;
    bodies.push(body);
    frames.push(i % 5 === 0 ? encodeRequest(i + 1, 0, 0, Buffer.from(`svc.M${i}`), body) : encodeFrame(FrameType.Data, 0, i + 1, body));
  }
  const all = Buffer.concat(frames);
  for (const mode of ['owned', 'borrowed'] as const) {
    for (let round = 0; round < 3; round++) {
      const got: Frame[] = [];
      const d = new FrameDecoder(1 << 20, (f) => got.push(f));
      const scratch = Buffer.alloc(200_000);
      for (let off = 0; off < all.length; ) {
        const n = Math.min(all.length - off, 1 + rnd(round === 0 ? 70 : 150_000));
        if (mode === 'owned') d.push(Buffer.from(all.subarray(off, off + n)));
        else {
          all.copy(scratch, 0, off, off + n);
          d.pushBorrowed(scratch.subarray(0, n));
          scratch.fill(0xee, 0, n);
        }
        off += n;
      }
      const bad = got.filter((f, i) => f.callId !== i + 1 || f.bodyLength !== (bodies[i] as Buffer).length || !f.body.equals(bodies[i] as Buffer)).length;
      t.equal(got.length, bodies.length, `${mode} round ${round}: every frame`);
      t.equal(bad, 0, `${mode} round ${round}: every body intact`);
      t.equal(d.bufferedBytes, 0);
    }
  }
});

t.test('reads straight into a frame under way (directTarget / filledDirect)', async (t) => {
  const { d, got } = collect();
  t.equal(d.directTarget(1), undefined, 'nothing being assembled');
  const body = Buffer.alloc(500_000);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
  const big = encodeFrame(FrameType.Data, 0, 5, body);
  const small = encodeFrame(FrameType.End, 0, 5);
  // The first borrowed read: the header and a little of the body.
  d.pushBorrowed(Buffer.from(big.subarray(0, 1000)));
  t.equal(d.directTarget(600_000), undefined, 'rest below the minimum: no direct target');
  let at = 1000;
  for (const n of [100_000, 250_000]) {
    const target = d.directTarget(64 * 1024);
    t.ok(target, 'rest of the frame offered');
    t.equal(target!.length, big.length - at, 'exactly the rest: a read cannot run past the frame');
    big.copy(target!, 0, at, at + n);
    d.filledDirect(n);
    at += n;
  }
  t.equal(d.awaitingBytes, big.length - at);
  t.throws(() => d.filledDirect(big.length), RpcProtocolError, 'more than the rest is refused');
  const target = d.directTarget(1)!;
  big.copy(target, 0, at);
  d.filledDirect(big.length - at);
  t.equal(got.length, 1, 'whole: dispatched');
  t.ok(got[0]!.body.equals(body), 'byte for byte');
  t.equal(d.directTarget(1), undefined, 'nothing under way again');
  d.pushBorrowed(Buffer.from(small));
  t.equal(got.length, 2, 'the next frame decodes as usual');
  t.throws(() => d.filledDirect(10), RpcProtocolError, 'filled with no frame under way');
});
