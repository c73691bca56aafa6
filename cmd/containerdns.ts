#!/usr/bin/env node
// containerdns: the ContainerDNS daemon and its tools. Each subcommand lives in cmd/dns/.
import { Command } from 'commander';
import { register as registerServe } from './dns/serve.js';
import { register as registerCtl } from './dns/ctl.js';
import { register as registerKubewatch } from './dns/kubewatch.js';

const program = new Command('containerdns')
  .description('ContainerDNS: cluster DNS with health-aware picking and session persistence')
  .showHelpAfterError();
registerServe(program);
registerCtl(program);
registerKubewatch(program);
await program.parseAsync(process.argv);
