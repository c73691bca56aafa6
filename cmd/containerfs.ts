#!/usr/bin/env node
// containerfs: ContainerFS daemons and tools. Subcommands (master, meta, data, mount, volume,
// cluster) are added as the ContainerFS issues land; until then this lists what is coming.
import { Command } from 'commander';

const program = new Command('containerfs')
  .description('ContainerFS: a Raft-replicated cluster filesystem (master | meta | data | mount | volume | cluster)')
  .showHelpAfterError()
  .addHelpText('after', '\nNo subcommand is available yet in this version: the metadata, data and mount issues add them.\n');

program.action(() => {
  program.help({ error: true });
});

await program.parseAsync(process.argv);
