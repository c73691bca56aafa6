// `containerfs volume create|list|info|set-capacity|delete`: manage volumes through the master.
import type { Command } from 'commander';
import { parseBytes } from '../../lib/common/index.js';
import type { ClusterView } from '../../lib/master/index.js';
import { formatTable, humanBytes, masterOption, withMaster } from './cluster.js';

const VOLUME_COLUMNS = ['NAME', 'REPLICAS', 'USED / CAPACITY', 'STATE', 'INODES', 'PARTITIONS', 'GROUPS', 'CREATED'];

function volumeRows(v: ClusterView): string[][] {
  return v.volumes.map((vol) => [
    vol.name, String(vol.replicas),
    `${humanBytes(vol.usedBytes)} / ${vol.quotaBytes ? `${humanBytes(vol.quotaBytes)} (${Math.floor((100 * vol.usedBytes) / vol.quotaBytes)}%)` : 'unlimited'}`,
    vol.full ? 'FULL' : 'ok', String(vol.inodes),
    String(vol.partitions.length), String(v.groups.filter((g) => g.volume === vol.name).length), new Date(vol.createdMs).toISOString(),
  ]);
}

export function register(program: Command): void {
  const vol = program.command('volume').description('create, list, inspect and delete volumes (through the master)');
  masterOption(
    vol
      .command('create <name>')
      .description('create a volume: its first metadata partition is placed on metanodes at once')
      .option('--quota <bytes>', 'capacity quota, e.g. 100GiB (default: unlimited); see set-capacity')
      .option('--replicas <n>', 'replicas of its metadata partitions and block groups', '3')
      .option('--ino-range <n>', 'inos per metadata partition (a new partition is added as one fills)'),
  ).action(async (name: string, opts: Record<string, unknown>) => {
    await withMaster(opts, 'volume create', async (m) => {
      const r = await m.createVolume(name, {
        replicas: Number(opts.replicas ?? 3),
        ...(opts.quota ? { quotaBytes: parseBytes(String(opts.quota), 'quota') } : {}),
        ...(opts.inoRange ? { inoRange: Number(opts.inoRange) } : {}),
      });
      if (opts.json) console.log(JSON.stringify(r));
      else console.log(`volume ${r.volume.name} created: ${r.volume.replicas} replicas, partition ${r.partitions[0]?.groupId} [${r.partitions[0]?.start}, ${r.partitions[0]?.end}) on metanodes ${r.partitions[0]?.members.join(', ')}`);
    });
  });
  masterOption(vol.command('list').description('list volumes')).action(async (opts: Record<string, unknown>) => {
    await withMaster(opts, 'volume list', async (m) => {
      const v = await m.view();
      if (opts.json) console.log(JSON.stringify(v.volumes));
      else console.log(formatTable(VOLUME_COLUMNS, volumeRows(v)));
    });
  });
  masterOption(vol.command('info <name>').description('a volume with its partitions and block groups')).action(async (name: string, opts: Record<string, unknown>) => {
    await withMaster(opts, 'volume info', async (m) => {
      const { view } = await m.volumeInfo(name);
      if (opts.json) {
        console.log(JSON.stringify(view));
        return;
      }
      const addr = new Map(view.nodes.map((n) => [n.id, n.address]));
      console.log(formatTable(VOLUME_COLUMNS, volumeRows(view)));
      console.log('\nmetadata partitions');
      console.log(formatTable(['GROUP', 'INO RANGE', 'CURSOR', 'INODES', 'BYTES', 'LEADER', 'MEMBERS', 'NEARLY FULL'], view.partitions.map((p) => [
        String(p.groupId), `[${p.start}, ${p.end})`, String(p.cursor), String(p.inodes), humanBytes(p.bytes), p.leader ? `${p.leader} ${addr.get(p.leader) ?? ''}` : '-', p.members.join(','), p.nearlyFull ? 'yes' : 'no',
      ])));
      console.log('\nblock groups');
      console.log(formatTable(['GROUP', 'STATE', 'LENGTH', 'REPLICAS', 'SEALED BECAUSE'], view.groups.map((g) => [String(g.groupId), g.state, humanBytes(g.lengthBytes), g.replicas.map((id) => addr.get(id) ?? String(id)).join(' -> '), g.sealedReason || '-'])));
    });
  });
  masterOption(
    vol
      .command('set-capacity <name> <bytes>')
      .description('change a volume\'s capacity quota (e.g. 200GiB; 0 or "unlimited": none). A full volume takes writes again once used < capacity, within about two heartbeat intervals'),
  ).action(async (name: string, bytes: string, opts: Record<string, unknown>) => {
    await withMaster(opts, 'volume set-capacity', async (m) => {
      const q = bytes === 'unlimited' ? 0 : parseBytes(bytes, 'capacity');
      const v = await m.setCapacity(name, q);
      console.log(opts.json ? JSON.stringify(v) : `volume ${name}: capacity ${q ? humanBytes(q) : 'unlimited'}`);
    });
  });
  masterOption(vol.command('delete <name>').description('delete a volume: its metadata partitions are closed and destroyed on the metanodes, its block groups removed from the datanodes (at their next heartbeats)')).action(async (name: string, opts: Record<string, unknown>) => {
    await withMaster(opts, 'volume delete', async (m) => {
      await m.deleteVolume(name);
      console.log(opts.json ? JSON.stringify({ deleted: name }) : `volume ${name} deleted`);
    });
  });
}
