#!/usr/bin/env node
// containerfs: ContainerFS daemons and tools. Each subcommand lives in cmd/fs/<name>.ts and
// exports `register(program)`; to add one (master, meta, mount, volume, cluster), import it
// and add it to SUBCOMMANDS below.
import { Command } from 'commander';
import { register as registerData } from './fs/data.js';
import { register as registerMaster } from './fs/master.js';
import { register as registerMeta } from './fs/meta.js';
import { register as registerVolume } from './fs/volume.js';
import { register as registerCluster } from './fs/cluster.js';
import { register as registerMount } from './fs/mount.js';

const SUBCOMMANDS: ((program: Command) => void)[] = [registerMaster, registerMeta, registerData, registerVolume, registerCluster, registerMount];

const program = new Command('containerfs')
  .description('ContainerFS: a Raft-replicated cluster filesystem (master | meta | data | mount | volume | cluster)')
  .showHelpAfterError();
for (const register of SUBCOMMANDS) register(program);
await program.parseAsync(process.argv);
