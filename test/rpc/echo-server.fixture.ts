// A real echo server process for tests that kill a peer (SIGKILL mid-call, restart on the
// same port). Prints `port <n>` on stdout once listening.
import { RpcServer, echoService } from '../../lib/rpc/index.js';
import { sleep } from '../../lib/common/index.js';

const port = Number(process.argv[2] ?? 0);
const token = process.argv[3];
const server = new RpcServer(token ? { token } : {});
server.unary(echoService.echo, async (req) => {
  if (req.delayMs) await sleep(req.delayMs);
  return { payload: req.payload, text: req.text, seq: req.seq };
});
const addr = await server.listen(port, '127.0.0.1');
process.stdout.write(`port ${addr.port}\n`);
process.on('SIGTERM', () => {
  void server.close(500).then(() => process.exit(0));
});
