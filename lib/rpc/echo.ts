// The echo service: method definitions used by tests, bench/rpc and `containerstack` health
// probes of a peer. Real services define their methods the same way.
import { containerstack } from '../../proto/gen/rpc.js';
import { protoCodec, unaryMethod, serverStreamMethod, clientStreamMethod } from './codec.js';

const { EchoRequest, EchoResponse } = containerstack.rpc;
export type EchoRequestMsg = containerstack.rpc.EchoRequest.$Properties;
export type EchoResponseMsg = containerstack.rpc.EchoResponse.$Properties;

const req = protoCodec<EchoRequestMsg>(EchoRequest);
const res = protoCodec<EchoResponseMsg>(EchoResponse);

export const echoService = {
  echo: unaryMethod('rpc.Echo', req, res),
  /** Answers `seq` messages, each carrying the request payload. */
  echoStream: serverStreamMethod('rpc.EchoStream', req, res),
  /** Sums the payload bytes of every message sent; answers with the total in `seq`. */
  collect: clientStreamMethod('rpc.Collect', req, res),
} as const;
