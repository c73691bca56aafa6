// Without the SO_RCVLOWAT addon (no compiler, or turned off) connections read as they come:
// large and small frames still cross intact on the reused-buffer reads.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { disableNativeAddons } from '../../lib/common/index.js';
import { RpcClient, RpcServer, rawCodec, unaryMethod } from '../../lib/rpc/index.js';
import { rcvLowatSupport } from '../../lib/rpc/socket.js';

disableNativeAddons('turned off by the test');
const echoM = unaryMethod('rd.Echo', rawCodec, rawCodec);

t.test('no addon: the reason is kept and frames of every size cross', async (t) => {
  t.equal(rcvLowatSupport().ok, false);
  t.match(rcvLowatSupport().reason, /turned off by the test/);
  const s = new RpcServer({ maxFrameBytes: 16 * 1024 * 1024 });
  s.unary(echoM, (req) => Buffer.from(req));
  const { port } = await s.listen(0);
  const client = new RpcClient({ host: '127.0.0.1', port });
  t.teardown(async () => {
    await client.close();
    await s.close();
  });
  const bodies = [5, 200_000, 2 * 1024 * 1024 + 3, 64].map((n) => randomBytes(n));
  const got = await Promise.all(bodies.map((b) => client.call(echoM, b)));
  const h = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
  t.same(got.map(h), bodies.map(h));
});
