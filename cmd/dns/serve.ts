// containerdns serve (being built; see the ContainerDNS issue).
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('serve').description('(not built yet)').action(() => {
    console.error('containerdns serve: not built yet');
    process.exitCode = 2;
  });
}
