// Errors of lib/rpc. Each failure has its own class and stable code; a handler's own typed
// error crosses the wire as RpcRemoteError carrying the handler's code in `remoteCode`.
import { defineError, type ErrorOptions } from '../common/index.js';

export class RpcDeadlineError extends defineError('rpc', 'RPC_DEADLINE_EXCEEDED') {}
export class RpcCancelledError extends defineError('rpc', 'RPC_CANCELLED') {}
/** The peer could not be reached, or the connection was lost before the call completed. */
export class RpcUnavailableError extends defineError('rpc', 'RPC_UNAVAILABLE') {}
export class RpcAuthError extends defineError('rpc', 'RPC_UNAUTHENTICATED') {}
/** The peer sent bytes that are not a valid frame; the connection is closed. */
export class RpcProtocolError extends defineError('rpc', 'RPC_PROTOCOL') {}
export class RpcFrameTooLargeError extends defineError('rpc', 'RPC_FRAME_TOO_LARGE') {}
export class RpcUnimplementedError extends defineError('rpc', 'RPC_UNIMPLEMENTED') {}
export class RpcResourceExhaustedError extends defineError('rpc', 'RPC_RESOURCE_EXHAUSTED') {}
export class RpcClosedError extends defineError('rpc', 'RPC_CLOSED') {}
/** A request or response payload could not be decoded with the method's codec. */
export class RpcDecodeError extends defineError('rpc', 'RPC_DECODE') {}

/** The remote handler failed; `remoteCode` is the code of the error it threw. */
export class RpcRemoteError extends defineError('rpc', 'RPC_REMOTE') {
  constructor(
    readonly remoteCode: string,
    readonly remoteMessage: string,
    readonly details: Uint8Array | undefined,
    options?: ErrorOptions,
  ) {
    super(`remote error ${remoteCode}: ${remoteMessage}`, options);
  }
}

const LOCAL_BY_CODE: Record<string, new (message: string) => Error> = {
  RPC_DEADLINE_EXCEEDED: RpcDeadlineError,
  RPC_CANCELLED: RpcCancelledError,
  RPC_UNAVAILABLE: RpcUnavailableError,
  RPC_UNAUTHENTICATED: RpcAuthError,
  RPC_UNIMPLEMENTED: RpcUnimplementedError,
  RPC_RESOURCE_EXHAUSTED: RpcResourceExhaustedError,
  RPC_DECODE: RpcDecodeError,
};

/** Turns a status received on the wire into the error the caller sees. */
export function errorFromStatus(code: string, message: string, details?: Uint8Array): Error {
  const Local = LOCAL_BY_CODE[code];
  if (Local) return new Local(`remote: ${message.replace(/^rpc: /, '')}`);
  return new RpcRemoteError(code, message, details && details.length > 0 ? details : undefined);
}
