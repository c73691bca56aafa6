// Bench server process: serves the same echo method with lib/rpc (`ours`) or @grpc/grpc-js
// (`grpc`), using the same protobufjs static codec, so only the RPC layer differs.
// Prints `port <n>` when listening.
import * as grpc from '@grpc/grpc-js';
import { RpcServer, echoService } from '../../lib/rpc/index.js';
import { containerstack } from '../../proto/gen/rpc.js';

const { EchoRequest, EchoResponse } = containerstack.rpc;
const kind = process.argv[2];

if (kind === 'ours') {
  const server = new RpcServer({ maxConcurrentCallsPerConnection: 4096 });
  server.unary(echoService.echo, (req) => ({ payload: req.payload, text: req.text, seq: req.seq }));
  const addr = await server.listen(0, '127.0.0.1');
  console.log(`port ${addr.port}`);
} else if (kind === 'grpc') {
  // channelz off: its per-call bookkeeping costs grpc-js ~30% here and production tuning turns it off.
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
  server.addService(
    {
      echo: {
        path: '/rpc.Echo/Echo',
        requestStream: false,
        responseStream: false,
        requestSerialize: (m: containerstack.rpc.EchoRequest.$Properties) => Buffer.from(EchoRequest.encode(m).finish()),
        requestDeserialize: (b: Buffer) => EchoRequest.decode(b),
        responseSerialize: (m: containerstack.rpc.EchoResponse.$Properties) => Buffer.from(EchoResponse.encode(m).finish()),
        responseDeserialize: (b: Buffer) => EchoResponse.decode(b),
      },
    },
    {
      echo: (call: grpc.ServerUnaryCall<containerstack.rpc.EchoRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        const req = call.request;
        cb(null, { payload: req.payload, text: req.text, seq: req.seq });
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  console.log(`port ${port}`);
} else {
  console.error('usage: server.js ours|grpc');
  process.exit(2);
}
