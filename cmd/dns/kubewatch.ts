// containerdns kubewatch (being built; see the ContainerDNS issue).
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('kubewatch').description('(not built yet)').action(() => {
    console.error('containerdns kubewatch: not built yet');
    process.exitCode = 2;
  });
}
