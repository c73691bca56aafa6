// Public API of containerstack/rpc: protobuf-framed RPC over TCP with multiplexed calls,
// streams with flow control, deadlines, cancellation, reconnecting clients, pooling and auth.
export { RpcServer } from './server.js';
export type { RpcServerOptions, CallContext, StreamWriter, UnaryHandler, ServerStreamHandler, ClientStreamHandler } from './server.js';
export { RpcClient } from './client.js';
export type { RpcClientOptions, CallOptions, NotifyOptions, ClientStreamCall, ServerStreamCall } from './client.js';
export { RpcPool } from './pool.js';
export type { PoolOptions } from './pool.js';
export { protoCodec, rawCodec, rawPartsCodec, jsonCodec, unaryMethod, serverStreamMethod, clientStreamMethod, MAX_STREAM_WINDOW_BYTES } from './codec.js';
export type { Codec, ProtoType, MethodDef, MethodKind } from './codec.js';
export {
  RpcDeadlineError, RpcCancelledError, RpcUnavailableError, RpcAuthError, RpcProtocolError, RpcFrameTooLargeError,
  RpcUnimplementedError, RpcResourceExhaustedError, RpcClosedError, RpcDecodeError, RpcRemoteError,
} from './errors.js';
export { DEFAULT_MAX_FRAME_BYTES, INITIAL_STREAM_WINDOW_BYTES, PROTOCOL_VERSION } from './frame.js';
export { echoService } from './echo.js';
