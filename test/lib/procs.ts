// Shared by tests that start real processes: a free loopback port.
export { freePort } from '../../bench/lib/procs.js';
