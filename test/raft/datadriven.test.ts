// Data-driven raft scenarios (etcd's datadriven style): each file in test/raft/testdata holds
// blocks of commands, a `----` line, and the expected trace of delivered messages and state.
// RAFT_REWRITE=1 rewrites the expected parts from the actual output (then review the diff).
import t from 'tap';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Message } from '../../lib/raft/index.js';
import { Cluster, type NodeOptions } from './harness.js';

const dataDir = fileURLToPath(new URL('../../../test/raft/testdata/', import.meta.url));
const enc = new TextEncoder();
const dec = new TextDecoder();

function fmtMsg(m: Message): string {
  const h = `${m.from}->${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case 'vote':
    case 'preVote':
      return `${h} last ${m.index}@${m.logTerm}${m.context ? ` ${m.context}` : ''}`;
    case 'voteResp':
    case 'preVoteResp':
      return `${h} ${m.reject ? 'reject' : 'granted'}`;
    case 'app':
      return `${h} prev ${m.index}@${m.logTerm} commit ${m.commit} [${m.entries.map((e) => `${e.index}@${e.term}${e.data.byteLength ? `:${dec.decode(e.data)}` : ''}`).join(' ')}]`;
    case 'appResp':
      return m.reject ? `${h} reject ${m.index} hint ${m.rejectHint}@${m.logTerm}` : `${h} index ${m.index}`;
    case 'heartbeat':
      return `${h} commit ${m.commit}${m.context ? ` ctx ${m.context}` : ''}`;
    case 'heartbeatResp':
      return `${h}${m.context ? ` ctx ${m.context}` : ''}`;
    case 'snap':
      return `${h} snapshot ${m.snapshot?.metadata.index}@${m.snapshot?.metadata.term} voters ${m.snapshot?.metadata.confState.voters.join(',')}`;
    case 'readIndex':
    case 'readIndexResp':
      return `${h} index ${m.index} ctx ${m.context}`;
    default:
      return h;
  }
}

function run(c: { cluster: Cluster | undefined }, line: string): string[] {
  const [cmd, ...args] = line.split(/\s+/);
  const num = (i: number) => Number(args[i]);
  if (cmd === 'cluster') {
    const ids: number[] = [];
    const opts: NodeOptions = {};
    for (const a of args) {
      if (/^\d+$/.test(a)) ids.push(Number(a));
      else if (a === 'nopv') opts.preVote = false;
      else if (a === 'nocq') opts.checkQuorum = false;
      else if (a === 'lease') opts.readOnlyOption = 'leaseBased';
      else if (a.startsWith('inflight=')) opts.maxInflightMsgs = Number(a.slice(9));
      else throw new Error(`bad cluster option ${a}`);
    }
    c.cluster = new Cluster(ids, opts);
    return [];
  }
  const cl = c.cluster;
  if (cl === undefined) throw new Error('no cluster');
  cl.trace = [];
  const out: string[] = [];
  switch (cmd) {
    case 'campaign':
      cl.node(num(0)).raw.campaign();
      cl.stabilize();
      break;
    case 'stabilize':
      cl.stabilize();
      break;
    case 'propose':
      cl.propose(num(0), args[1] ?? '');
      break;
    case 'isolate':
      cl.isolate(num(0));
      break;
    case 'cut':
      cl.cutLink(num(0), num(1));
      break;
    case 'recover':
      cl.recover();
      break;
    case 'tick':
      cl.tick(num(0), args[1] === undefined ? 1 : num(1));
      break;
    case 'tickall':
      cl.tickAll(args[0] === undefined ? 1 : num(0));
      break;
    case 'transfer':
      cl.node(num(0)).raw.transferLeader(num(1));
      cl.stabilize();
      break;
    case 'read':
      cl.node(num(0)).raw.readIndex(args[1] ?? '');
      cl.stabilize();
      break;
    case 'compact': {
      const n = cl.node(num(0));
      const applied = n.raw.raft.log.applied;
      n.storage.createSnapshot(applied, n.raw.confState(), enc.encode('img'));
      n.storage.compact(applied);
      out.push(`${num(0)}: snapshot and compact at ${applied}`);
      break;
    }
    case 'status':
      for (const a of args) {
        const r = cl.node(Number(a)).raw.raft;
        out.push(`${a}: ${r.role} term ${r.term} lead ${r.lead} commit ${r.log.committed} applied ${r.log.applied} last ${r.log.lastIndex()}`);
      }
      return out;
    case 'log':
      for (const a of args) out.push(`${a}: ${cl.logTerms(Number(a)).map((x) => x.split('/').reverse().join('@')).join(' ')}`);
      return out;
    case 'reads':
      for (const a of args) out.push(`${a}: ${cl.node(Number(a)).readStates.map((r) => `${r.context}@${r.index}`).join(' ')}`);
      return out;
    case 'applied':
      for (const a of args) out.push(`${a}: ${cl.appliedText(Number(a)).join(' ')}`);
      return out;
    default:
      throw new Error(`unknown command ${cmd}`);
  }
  return [...cl.trace.map(fmtMsg), ...out];
}

for (const file of readdirSync(dataDir).filter((f) => f.endsWith('.txt')).sort()) {
  t.test(`datadriven ${file}`, async (t) => {
    const path = dataDir + file;
    const text = readFileSync(path, 'utf8');
    const blocks = text.split(/\n\n+/);
    const state: { cluster: Cluster | undefined } = { cluster: undefined };
    const rewritten: string[] = [];
    for (const block of blocks) {
      if (block.trim() === '') continue;
      const lines = block.split('\n');
      const sep = lines.indexOf('----');
      const cmds = (sep < 0 ? lines : lines.slice(0, sep)).filter((l) => l.trim() !== '' && !l.startsWith('#'));
      const comments = lines.filter((l) => l.startsWith('#'));
      const expected = sep < 0 ? [] : lines.slice(sep + 1).filter((l) => l !== '');
      const actual: string[] = [];
      for (const cmd of cmds) actual.push(...run(state, cmd));
      if (process.env.RAFT_REWRITE === '1') {
        rewritten.push([...comments, ...cmds, '----', ...(actual.length ? actual : ['ok'])].join('\n'));
      } else {
        t.same(actual.length ? actual : ['ok'], expected, `${file}: ${cmds.join('; ')}`);
      }
    }
    if (process.env.RAFT_REWRITE === '1') writeFileSync(path, rewritten.join('\n\n') + '\n');
  });
}
