// Public API of containerstack/table: the Raft-replicated sorted key/value table with domain
// commands, its multi-raft host, its RPC service and its client.
export { TableStateMachine } from './statemachine.js';
export type { KeyValue, TableEvent, CommandResult, Command, DomainContext, DomainCommand, StateMachineOptions } from './statemachine.js';
export { RaftHost, TableGroup, raftService } from './host.js';
export type { HostOptions, GroupOptions } from './host.js';
export { MemoryDurableLog } from './log.js';
export { LevelDurableLog } from './levellog.js';
export type { OpenReport } from './levellog.js';
export type { DurableLog, GroupLog, GroupWrite } from './log.js';
export { registerTableService, tableService, NotLeaderWire, toWireError } from './service.js';
export { TableClient } from './client.js';
export { startEmbeddedTable } from './embedded.js';
export { openRaftNode } from './node.js';
export type { RaftNode, RaftNodeOptions } from './node.js';
export type { EmbeddedTable, EmbeddedTableOptions } from './embedded.js';
export type { TableClientOptions, TxnCompare, TxnOp, CommandOutcome, ConsistencyLevel } from './client.js';
export {
  NotLeaderError, NoQuorumError, TableDeadlineError, UnknownDomainCommandError, BadCommandError, SessionExpiredError,
  WatchCompactedError, WatchOverflowError, TableClosedError, LearnerNotReadyError, KeyTooLargeError, DomainError, CommandFailedError,
} from './errors.js';
