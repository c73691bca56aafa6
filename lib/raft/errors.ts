// Errors of lib/raft: one class per failure, each with a stable code (see lib/common/errors.ts).
import { defineError } from '../common/index.js';

/** A proposal or read was sent to a node that is not the leader and cannot forward it. */
export class NotLeaderError extends defineError('raft', 'RAFT_NOT_LEADER') {
  constructor(
    readonly leaderId: number,
    message = leaderId === 0 ? 'not leader, no known leader' : `not leader, leader is ${leaderId}`,
  ) {
    super(message);
  }
}
/** The proposal was refused (leadership transfer in progress, uncommitted-size limit, ...). */
export class ProposalDroppedError extends defineError('raft', 'RAFT_PROPOSAL_DROPPED') {}
/** A membership change was proposed while another one is still unapplied. */
export class ConfChangePendingError extends defineError('raft', 'RAFT_CONF_CHANGE_PENDING') {}
/** The pending ReadIndex queue is full. */
export class ReadIndexDroppedError extends defineError('raft', 'RAFT_READ_INDEX_DROPPED') {}
/** Storage was asked for entries that were compacted into a snapshot. */
export class CompactedError extends defineError('raft', 'RAFT_COMPACTED') {}
/** Storage was asked for entries it does not have yet. */
export class UnavailableError extends defineError('raft', 'RAFT_UNAVAILABLE') {}
/** A snapshot older than the storage's own was offered. */
export class SnapshotOutOfDateError extends defineError('raft', 'RAFT_SNAPSHOT_OUT_OF_DATE') {}
/** A configuration value is invalid. */
export class RaftConfigError extends defineError('raft', 'RAFT_CONFIG_INVALID') {}
/** A message that must not come from the network (local type, wrong group) was stepped. */
export class InvalidMessageError extends defineError('raft', 'RAFT_INVALID_MESSAGE') {}
/** Durable storage found a corrupt record it could not interpret (and did not truncate). */
export class StorageCorruptError extends defineError('raft', 'RAFT_STORAGE_CORRUPT') {}
/** The driver was stopped. */
export class StoppedError extends defineError('raft', 'RAFT_STOPPED') {}
