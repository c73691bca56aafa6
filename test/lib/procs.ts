// Shared by tests that start real processes: a free loopback port; killing children and waiting
// until they are gone (before their data directories are removed).
export { freePort, killAndWait } from '../../bench/lib/procs.js';
