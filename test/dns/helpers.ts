// Shared helpers for the ContainerDNS server tests: free ports, dig/kdig runners (async, so an
// in-process server keeps answering), raw UDP/TCP exchanges and an in-process node factory.
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { DnsNode, type DnsNodeConfig } from '../../lib/dns/node.js';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { parseConfig } from '../../lib/common/index.js';
import { serveConfigSpec } from '../../lib/dns/config.js';
import type { DnsRecord } from '../../lib/dns/store.js';
import { freePort } from '../lib/procs.js';

const execFileP = promisify(execFile);

export { freePort };

/** Runs dig with +tries=1 +time=2; returns stdout. */
export async function dig(port: number, args: string[], server = '127.0.0.1'): Promise<string> {
  const { stdout } = await execFileP('dig', [`@${server}`, '-p', String(port), '+tries=1', '+time=2', ...args], { timeout: 10_000 });
  return stdout;
}

/** `dig +short` lines. */
export async function digShort(port: number, args: string[], server = '127.0.0.1'): Promise<string[]> {
  return (await dig(port, ['+short', ...args], server)).split('\n').map((l) => l.trim()).filter((l) => l !== '');
}

export async function kdig(port: number, args: string[], server = '127.0.0.1'): Promise<string> {
  const { stdout } = await execFileP('kdig', [`@${server}`, '-p', String(port), '+retry=0', '+timeout=2', ...args], { timeout: 10_000 });
  return stdout;
}

/** Status word from dig's header line (NOERROR, NXDOMAIN, ...). */
export function status(out: string): string {
  return /status: (\w+)/.exec(out)?.[1] ?? '?';
}

/** Lines of one dig section (ANSWER, AUTHORITY, ADDITIONAL) without comments. */
export function section(out: string, name: string): string[] {
  const m = new RegExp(`;; ${name} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(out);
  return m ? m[1]!.split('\n').filter((l) => l.trim() !== '') : [];
}

/** A query in wire form. */
export function query(name: string, type = 1, opts: { id?: number; rd?: boolean; opcode?: number; edns?: { udp?: number; version?: number; do?: boolean } | false; qclass?: number } = {}): Buffer {
  const labels = name === '' ? [] : name.split('.');
  const parts: Buffer[] = [];
  const h = Buffer.alloc(12);
  h.writeUInt16BE(opts.id ?? 0x1234, 0);
  h[2] = ((opts.opcode ?? 0) << 3) | (opts.rd === false ? 0 : 1);
  h.writeUInt16BE(1, 4);
  if (opts.edns) h.writeUInt16BE(1, 10);
  parts.push(h);
  for (const l of labels) parts.push(Buffer.from([Buffer.byteLength(l)]), Buffer.from(l));
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(type, 1);
  tail.writeUInt16BE(opts.qclass ?? 1, 3);
  parts.push(tail);
  if (opts.edns) {
    const o = Buffer.alloc(11);
    o.writeUInt16BE(41, 1);
    o.writeUInt16BE(opts.edns.udp ?? 1232, 3);
    o[6] = opts.edns.version ?? 0;
    o.writeUInt16BE(opts.edns.do ? 0x8000 : 0, 7);
    parts.push(o);
  }
  return Buffer.concat(parts);
}

/** Sends one UDP packet and waits for one answer (null on timeout). */
export function udpExchange(port: number, pkt: Buffer, opts: { host?: string; timeoutMs?: number; bind?: string } = {}): Promise<Buffer | null> {
  const host = opts.host ?? '127.0.0.1';
  return new Promise((resolve) => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(null);
    }, opts.timeoutMs ?? 1500);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(m);
    });
    s.on('error', () => undefined);
    const send = (): void => {
      s.send(pkt, port, host);
    };
    if (opts.bind) s.bind(0, opts.bind, send);
    else send();
  });
}

/** Writes `frames` (each length-prefixed) in one TCP write and collects `expect` answers. */
export function tcpExchange(port: number, frames: Buffer[], expect: number, timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => {
      s.destroy();
      resolve(out);
    }, timeoutMs);
    s.on('error', () => undefined);
    s.on('connect', () => s.write(Buffer.concat(frames.map((f) => Buffer.concat([Buffer.from([f.length >> 8, f.length & 255]), f])))));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= expect) {
        clearTimeout(t);
        s.destroy();
        resolve(out);
      }
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

export function rcodeOf(b: Buffer | null | undefined): number {
  return b ? b[3]! & 0x0f : -1;
}

/** Node config for tests: loopback, no forwarding, no rate limit, unless overridden. */
export function testConfig(port: number, over: Partial<DnsNodeConfig> = {}): DnsNodeConfig {
  const base = parseConfig(serveConfigSpec, {});
  return { ...base, listen: [`127.0.0.1:${port}`], rateLimit: 0, upstreams: [], ...over };
}

export const baseRecords: DnsRecord[] = [
  { id: 'a1', name: 'web.default.svc.cluster.local', type: 'A', value: '10.0.0.1' },
  { id: 'a2', name: 'web.default.svc.cluster.local', type: 'A', value: '10.0.0.2' },
  { id: 'a3', name: 'web.default.svc.cluster.local', type: 'A', value: '10.0.0.3' },
  { id: 'a1', name: 'one.cluster.local', type: 'A', value: '10.0.1.1', ttl: 60 },
  { id: 'aaaa1', name: 'one.cluster.local', type: 'AAAA', value: 'fd00::1' },
  { id: 'c1', name: 'alias.cluster.local', type: 'CNAME', value: 'web.default.svc.cluster.local' },
  { id: 'c1', name: 'alias2.cluster.local', type: 'CNAME', value: 'alias.cluster.local' },
  { id: 'c1', name: 'outside.cluster.local', type: 'CNAME', value: 'example.org' },
  { id: 'c1', name: 'dangling.cluster.local', type: 'CNAME', value: 'missing.cluster.local' },
  { id: 's1', name: '_http._tcp.web.default.svc.cluster.local', type: 'SRV', value: 'web.default.svc.cluster.local', port: 80, priority: 10, weight: 5 },
  { id: 't1', name: 'txt.cluster.local', type: 'TXT', value: 'hello world' },
  { id: 'm1', name: 'mail.cluster.local', type: 'MX', value: 'one.cluster.local', priority: 10 },
  { id: 'w1', name: '*.wild.cluster.local', type: 'A', value: '10.0.2.1' },
  { id: 'p1', name: 'host.wild.cluster.local', type: 'TXT', value: 'explicit' },
];

export async function startNode(over: Partial<DnsNodeConfig> = {}, records: DnsRecord[] = baseRecords): Promise<{ node: DnsNode; store: MemoryDnsStore; port: number; close: () => Promise<void> }> {
  const port = await freePort();
  const store = new MemoryDnsStore();
  for (const r of records) await store.put(r);
  const node = new DnsNode({ config: testConfig(port, over), store });
  await node.start();
  return { node, store, port, close: async () => { await node.close(); await store.close(); } };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
