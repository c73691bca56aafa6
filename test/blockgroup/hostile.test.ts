// Malformed and hostile requests against a real datanode: undecodable payloads, out-of-range
// numbers, unknown groups and extents, forwards that break the sequence, bogus chains, raw
// garbage on the socket. Each gets a typed error; the node keeps serving.
import t from 'tap';
import { connect } from 'node:net';
import { RpcClient, RpcDecodeError, RpcRemoteError, clientStreamMethod, rawCodec, unaryMethod, type MethodDef } from '../../lib/rpc/index.js';
import { BlockGroupClient, blockGroupService as svc } from '../../lib/blockgroup/index.js';
import { appendHeaderCodec } from '../../lib/blockgroup/service.js';
import { makeNode, start, killAll, groupId, type Node } from './helpers.js';

let nodes: Node[] = [];
t.before(async () => {
  nodes = await Promise.all([makeNode(), makeNode()]);
  await Promise.all(nodes.map(start));
});
t.teardown(killAll);

function code(err: unknown): string {
  return err instanceof RpcRemoteError ? err.remoteCode : ((err as { code?: string }).code ?? 'none');
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return code(err);
  }
}

t.test('typed errors for bad requests; the node survives', async (t) => {
  const [a, b] = nodes as [Node, Node];
  const rpc = new RpcClient({ host: '127.0.0.1', port: a.port });
  t.teardown(() => rpc.close());
  const bg = new BlockGroupClient();
  t.teardown(() => bg.close());
  const gid = groupId();
  await bg.createGroup({ groupId: gid, replicas: [a.address, b.address] }, { blockSizeBytes: 4096 });
  const key = await (async () => {
    bg.addGroup({ groupId: gid, replicas: [a.address, b.address] });
    return bg.append(Buffer.alloc(10_000, 7));
  })();

  // Garbage where a protobuf request should be.
  for (const m of Object.values(svc) as MethodDef<unknown, unknown>[]) {
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99]);
    if (m.kind === 'clientStream') {
      const raw = clientStreamMethod(m.name, rawCodec, rawCodec);
      const call = rpc.clientStream(raw);
      const c = await codeOf(call.write(garbage).then(() => call.end()));
      t.ok(c === 'RPC_DECODE' || c === 'RPC_CANCELLED' || c.startsWith('BLOCKGROUP_'), `${m.name}: garbage chunk -> ${c}`);
      continue;
    }
    const raw = unaryMethod(m.name, rawCodec, rawCodec);
    const c = await codeOf(rpc.call(raw, garbage));
    t.ok(c === 'RPC_DECODE' || c.startsWith('BLOCKGROUP_'), `${m.name}: garbage payload -> ${c}`);
  }
  const streamed = async (chunks: { groupId?: number; totalLength?: number; data: Buffer }[]): Promise<string> => {
    const call = rpc.clientStream(svc.appendStream);
    return codeOf((async () => {
      for (const ch of chunks) {
        await call.write(appendHeaderCodec.encode({ groupId: ch.groupId ?? 0, totalLength: ch.totalLength ?? 0 }));
        await call.write(ch.data);
      }
      return call.end();
    })());
  };
  t.equal(await streamed([{ groupId: gid, totalLength: 10, data: Buffer.alloc(20) }]), 'BLOCKGROUP_BAD_REQUEST', 'stream longer than declared');
  t.equal(await streamed([{ groupId: gid, totalLength: 100, data: Buffer.alloc(10) }]), 'BLOCKGROUP_BAD_REQUEST', 'stream shorter than declared');
  t.equal(await streamed([{ groupId: gid, totalLength: 2 ** 40, data: Buffer.alloc(10) }]), 'BLOCKGROUP_BAD_REQUEST', 'absurd declared total');
  t.equal(await streamed([]), 'BLOCKGROUP_BAD_REQUEST', 'empty stream');
  t.equal(await codeOf(rpc.call(svc.append, { groupId: 999_999_999, data: Buffer.alloc(10) })), 'BLOCKGROUP_NOT_FOUND');
  t.equal(await codeOf(rpc.call(svc.append, { groupId: gid, data: Buffer.alloc(0) })), 'BLOCKGROUP_BAD_REQUEST', 'empty append');
  t.equal(await codeOf(rpc.call(svc.append, { groupId: gid, data: Buffer.alloc(8 * 1024 * 1024 + 1) })), 'BLOCKGROUP_BAD_REQUEST', 'append over --max-append');
  // Past the RPC frame limit the server drops the connection (lib/rpc); the client reconnects.
  t.equal(await codeOf(rpc.call(svc.append, { groupId: gid, data: Buffer.alloc(9 * 1024 * 1024) })), 'RPC_UNAVAILABLE', 'append over the frame limit');
  t.equal(await codeOf(rpc.call(svc.read, { groupId: gid, extentId: 0, offset: 0, length: 0 })), 'BLOCKGROUP_BAD_REQUEST', 'zero-length read');
  t.equal(await codeOf(rpc.call(svc.read, { groupId: gid, extentId: 0, offset: 2 ** 50, length: 10 })), 'BLOCKGROUP_OUT_OF_RANGE', 'read past the end');
  t.equal(await codeOf(rpc.call(svc.read, { groupId: gid, extentId: 77, offset: 0, length: 10 })), 'BLOCKGROUP_OUT_OF_RANGE', 'unknown extent');
  t.equal(await codeOf(rpc.call(svc.read, { groupId: gid, extentId: 0, offset: 0, length: 1 << 30 })), 'BLOCKGROUP_BAD_REQUEST', 'huge read');
  t.equal(await codeOf(rpc.call(svc.readBlocks, { groupId: gid, extentId: 0, firstBlock: 0, blockCount: 100_000 })), 'BLOCKGROUP_BAD_REQUEST');
  t.equal(await codeOf(rpc.call(svc.readBlocks, { groupId: gid, extentId: 0, firstBlock: 4_000_000, blockCount: 1 })), 'BLOCKGROUP_OUT_OF_RANGE');
  t.equal(await codeOf(rpc.call(svc.forward, { groupId: gid, seq: 0, extentId: 0, offset: 0, data: Buffer.alloc(5) })), 'BLOCKGROUP_BAD_REQUEST', 'forward to the primary');
  t.equal(await codeOf(rpc.call(svc.markDead, { groupId: gid, extentId: 0, offset: 5, length: 2 ** 40 })), 'BLOCKGROUP_BAD_REQUEST', 'free past the end');
  t.equal(await codeOf(rpc.call(svc.reportBad, { groupId: gid, extentId: 0, offset: 0, length: 2 ** 40 })), 'BLOCKGROUP_BAD_REQUEST');
  t.equal(await codeOf(rpc.call(svc.createGroup, { groupId: groupId(), replicas: [] })), 'BLOCKGROUP_BAD_REQUEST', 'empty chain');
  t.equal(await codeOf(rpc.call(svc.createGroup, { groupId: groupId(), replicas: ['not an address'] })), 'BLOCKGROUP_BAD_REQUEST', 'bad address');
  t.equal(await codeOf(rpc.call(svc.createGroup, { groupId: groupId(), replicas: [a.address, a.address] })), 'BLOCKGROUP_BAD_REQUEST', 'duplicate replica');
  t.equal(await codeOf(rpc.call(svc.createGroup, { groupId: groupId(), replicas: ['127.0.0.1:1'] })), 'BLOCKGROUP_BAD_REQUEST', 'chain without this node');
  t.equal(await codeOf(rpc.call(svc.createGroup, { groupId: groupId(), replicas: [a.address], blockSizeBytes: 1000 })), 'BLOCKGROUP_BAD_REQUEST', 'block size not a power of two');
  t.equal(await codeOf(rpc.call(svc.createGroup, { groupId: gid, replicas: [a.address] })), 'BLOCKGROUP_EXISTS', 'same id, other chain');
  t.equal(await codeOf(rpc.call(svc.setSealedLengths, { groupId: 424242, sealedLengths: [] })), 'BLOCKGROUP_NOT_FOUND');

  // A forward out of sequence at the backup: refused, and the group is sealed, never diverged.
  const rb = new RpcClient({ host: '127.0.0.1', port: b.port });
  t.teardown(() => rb.close());
  t.equal(await codeOf(rb.call(svc.forward, { groupId: gid, seq: 0, extentId: 0, offset: 12345, data: Buffer.alloc(5) })), 'BLOCKGROUP_OUT_OF_ORDER');

  // Raw garbage on the socket: the connection is dropped, nothing else.
  await new Promise<void>((resolve) => {
    const s = connect(a.port, '127.0.0.1', () => s.end(Buffer.from('GET / HTTP/1.1\r\n\r\n' + 'x'.repeat(1000))));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
    s.resume();
  });
  await new Promise<void>((resolve) => {
    const s = connect(a.port, '127.0.0.1', () => s.write(Buffer.from([0x7f, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 1])));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
    s.resume();
    setTimeout(() => s.destroy(), 2000);
  });

  // Still alive, and the acknowledged extent is intact.
  t.ok((await bg.readFrom(a.address, key)).equals(Buffer.alloc(10_000, 7)), 'node still serves acknowledged data');
  t.equal(a.child?.exitCode, null, 'node a still running');
  t.equal(b.child?.exitCode, null, 'node b still running');
  const h = await fetch(`http://127.0.0.1:${a.adminPort}/health`);
  t.ok(h.status === 200, 'health answers');
  t.ok(RpcDecodeError, 'decode error class exported');
});
