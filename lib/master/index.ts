// Public API of containerstack/master: the ContainerFS cluster map (volumes, metadata
// partitions, block-group placement, node registration and failure detection) as a table
// domain command, the master's RPC service and its client.
export { masterDomains, readView, MASTER_DOMAIN, FIRST_PARTITION_GROUP, DEFAULT_INO_RANGE } from './state.js';
export type { NodeInfo, Volume, Partition, BlockGroup, MasterRequest, MasterResponse, ClusterView, MapReader } from './state.js';
export { MasterServer, masterService, tableReader } from './service.js';
export type { MasterServerOptions } from './service.js';
export { MasterClient } from './client.js';
export type { MasterClientOptions, PartitionRouteInfo, GroupRef } from './client.js';
export { MasterNotFoundError, MasterExistsError, MasterNoCapacityError, MasterBadRequestError, MasterUnavailableError, MasterPlacementError } from './errors.js';
