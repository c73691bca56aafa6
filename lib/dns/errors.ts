// ContainerDNS error classes: one per failure, each with a stable code.
import { defineError } from '../common/index.js';

/** The store was used after close(). */
export class StoreClosedError extends defineError('dns', 'DNS_STORE_CLOSED') {}
/** A record failed validation (bad name, IP, type or limit). */
export class StoreInvalidRecordError extends defineError('dns', 'DNS_INVALID_RECORD') {}
/** A records file could not be read or parsed; the message names the file and line. */
export class RecordsFileError extends defineError('dns', 'DNS_RECORDS_FILE') {}
/** A zone in the configuration is not a valid name or overlaps badly. */
export class ZoneConfigError extends defineError('dns', 'DNS_ZONE_CONFIG') {}
/** Every upstream failed or timed out for a forwarded query. */
export class UpstreamError extends defineError('dns', 'DNS_UPSTREAM') {}
/** Too many forwarded queries in flight. */
export class ForwardOverloadError extends defineError('dns', 'DNS_FORWARD_OVERLOAD') {}
/** A listener could not be bound. */
export class ListenError extends defineError('dns', 'DNS_LISTEN') {}
/** The worker-to-primary store channel failed or timed out. */
export class IpcStoreError extends defineError('dns', 'DNS_IPC_STORE') {}
