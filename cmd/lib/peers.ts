// `--peers 1=host:port,2=host:port,...` as daemons with Raft members take it.
import { parseHostPort } from '../../lib/common/index.js';

/** Every member as id -> address; with an empty list, this node alone. Throws on a bad entry. */
export function parsePeers(list: string[], self: number, listen: string): Map<number, string> {
  const peers = new Map<number, string>();
  for (const p of list) {
    const m = /^(\d+)=(.+)$/.exec(p.trim());
    if (!m) throw new Error(`peers: expected id=host:port, got ${JSON.stringify(p)}`);
    parseHostPort(m[2] as string, 'peers');
    peers.set(Number(m[1]), m[2] as string);
  }
  if (peers.size === 0) peers.set(self, listen);
  if (!peers.has(self)) throw new Error(`peers: this member (${self}) is not in the list`);
  return peers;
}
