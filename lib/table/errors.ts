// Errors of lib/table. Codes are stable: clients branch on them.
import { defineError, type ErrorOptions } from '../common/index.js';

export class NotLeaderError extends defineError('table', 'TABLE_NOT_LEADER') {
  constructor(
    readonly leaderId: number,
    readonly leaderAddress: string,
    options?: ErrorOptions,
  ) {
    super(leaderId ? `not the leader; leader is ${leaderId} at ${leaderAddress || '?'}` : 'not the leader; no leader known', options);
  }
}
export class NoQuorumError extends defineError('table', 'TABLE_NO_QUORUM') {}
export class TableDeadlineError extends defineError('table', 'TABLE_DEADLINE_EXCEEDED') {}
export class UnknownDomainCommandError extends defineError('table', 'TABLE_UNKNOWN_COMMAND') {}
export class BadCommandError extends defineError('table', 'TABLE_BAD_COMMAND') {}
export class SessionExpiredError extends defineError('table', 'TABLE_SESSION_EXPIRED') {}
export class WatchCompactedError extends defineError('table', 'TABLE_WATCH_COMPACTED') {
  constructor(
    readonly compactRevision: number,
    options?: ErrorOptions,
  ) {
    super(`requested revision is compacted; oldest available is ${compactRevision}`, options);
  }
}
export class WatchOverflowError extends defineError('table', 'TABLE_WATCH_OVERFLOW') {}
export class TableClosedError extends defineError('table', 'TABLE_CLOSED') {}
/** A voter was proposed that has not joined as a learner and caught up. */
export class LearnerNotReadyError extends defineError('table', 'TABLE_LEARNER_NOT_READY') {}
export class KeyTooLargeError extends defineError('table', 'TABLE_KEY_TOO_LARGE') {}

/**
 * Thrown by a domain command to fail deterministically: every replica records the same
 * failure, and the proposer gets it back as a typed error with this code.
 */
export class DomainError extends defineError('table', 'TABLE_DOMAIN_ERROR') {
  constructor(
    readonly domainCode: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A domain command failed (on every replica alike); `domainCode` is what it threw. */
export class CommandFailedError extends defineError('table', 'TABLE_COMMAND_FAILED') {
  constructor(
    readonly domainCode: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
