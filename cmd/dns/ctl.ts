// containerdns ctl (being built; see the ContainerDNS issue).
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('ctl').description('(not built yet)').action(() => {
    console.error('containerdns ctl: not built yet');
    process.exitCode = 2;
  });
}
