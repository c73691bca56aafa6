// Command line for the raft simulator: `npm run sim -- --seed N` replays one seed exactly;
// `--seeds K` sweeps K seeds from --seed (default 1); `--steps N` sets the safety-phase length;
// `--trace` prints the event trace of a single seed.
import { replayCommandFor, SimFailure, Simulation } from './simulator.js';

function parseArgs(argv: string[]): { seed: number; seeds: number; steps: number; trace: boolean } {
  const out = { seed: 1, seeds: 1, steps: 1500, trace: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${a} needs a non-negative integer`);
      return v;
    };
    if (a === '--seed') out.seed = num();
    else if (a === '--seeds') out.seeds = Math.max(1, num());
    else if (a === '--steps') out.steps = num();
    else if (a === '--trace') out.trace = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: npm run sim -- [--seed N] [--seeds K] [--steps N] [--trace]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return out;
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  let failed = 0;
  const t0 = performance.now();
  for (let s = args.seed; s < args.seed + args.seeds; s++) {
    const sim = new Simulation({ seed: s, steps: args.steps, ...(args.trace ? { trace: (l: string) => console.log(l) } : {}) });
    try {
      const st = sim.run();
      if (args.seeds === 1 || args.trace) {
        console.log(`seed ${s} ok: ${JSON.stringify(st)} params ${JSON.stringify(sim.params)}`);
      }
    } catch (e) {
      failed++;
      console.log(e instanceof SimFailure ? e.message : `seed ${s}: ${e instanceof Error ? e.stack : String(e)}`);
      console.log(`  params ${JSON.stringify(sim.params)}`);
      console.log(`  replay: ${replayCommandFor(s, args.steps)}`);
    }
  }
  const ms = Math.round(performance.now() - t0);
  console.log(`${args.seeds - failed}/${args.seeds} seeds passed in ${ms}ms`);
  if (failed > 0) process.exitCode = 1;
}

main();
