// Operations spanning two partitions, atomic through intents (two-phase commit; the protocol
// is described above prepareIntent in partition.ts):
//   rename across partitions: participant = destination dentry, coordinator = source dentry
//   link to an inode elsewhere: participant = the new dentry, coordinator = the inode
// The client drives it; if it dies, recoverIntents (run by anyone holding the partition map,
// e.g. each metanode periodically) finishes every stale intent the same way on both sides.
import { containerstack } from '../../proto/gen/meta.js';
import { MetaPosixError, isPosixCode } from './errors.js';
import { checkName, coordinatorTxid, RENAME_NOREPLACE, INTENT_TIMEOUT_MS, isCoordinatorKind, S_IFDIR, S_IFMT, ROOT_INO, DEPTH_MAX, type Inode, type MetaRequest, type MetaResponse, type Timespec } from './partition.js';

const pb = containerstack.meta;

/** The partition's name rules, failing as MetaPosixError on the client side. */
function nameOk(name: Uint8Array): void {
  try {
    checkName(name);
  } catch (err) {
    const code = (err as { domainCode?: string }).domainCode;
    if (code && isPosixCode(code)) throw new MetaPosixError(code, (err as Error).message.replace(/^((table|meta): )+/, ''));
    throw err;
  }
}

export interface Side {
  groupId: number;
  exec(req: MetaRequest): Promise<MetaResponse>;
  read(req: MetaRequest): Promise<MetaResponse>;
}

export interface CrossContext {
  now(): Timespec;
  nowMs(): number;
  txid(): string;
  /** The partition owning an ino (to read attrs and to drop a replaced inode's link). */
  sideOf(ino: number): Promise<Side>;
  sideOfGroup(groupId: number): Side | undefined;
}

async function decide(coord: Side, txid: string, kind: string, commit: boolean, c: CrossContext): Promise<string> {
  const r = await coord.exec({ op: 'finish', txid, commit, intent: { kind }, now: c.now(), leaseMs: c.nowMs() });
  return r.intents?.[0]?.kind ?? 'decided-abort';
}

export async function crossRename(c: CrossContext, src: Side, dst: Side, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
  // Errno precedence as in one partition: names, then both parents, then the source entry.
  nameOk(name);
  nameOk(newName);
  await src.read({ op: 'readdir', parent, limit: 1 });
  await dst.read({ op: 'readdir', parent: newParent, limit: 1 });
  const look = await src.read({ op: 'lookup', parent, name });
  const e = look.entries?.[0];
  if (!e) throw new MetaPosixError('ENOENT', 'source vanished');
  const ino = e.ino ?? 0;
  const type = e.type ?? 0;
  // Source and target the same file (two links to one inode): POSIX says do nothing. Then the
  // target checks, in the order one partition makes them (prepare checks again, authoritatively).
  const target = (await dst.read({ op: 'lookup', parent: newParent, name: newName }).catch(() => undefined))?.entries?.[0];
  if (target) {
    if (target.ino === ino) return;
    if (flags & RENAME_NOREPLACE) throw new MetaPosixError('EEXIST', `${Buffer.from(newName).toString()} exists`);
    if (type === S_IFDIR && target.type !== S_IFDIR) throw new MetaPosixError('ENOTDIR', `${Buffer.from(newName).toString()} is not a directory`);
    if (type !== S_IFDIR && target.type === S_IFDIR) throw new MetaPosixError('EISDIR', `${Buffer.from(newName).toString()} is a directory`);
    if (target.type === S_IFDIR && ((await (await c.sideOf(target.ino ?? 0)).read({ op: 'readdir', parent: target.ino ?? 0, limit: 1 })).entries ?? []).length > 0) {
      throw new MetaPosixError('ENOTEMPTY', `${Buffer.from(newName).toString()} is not empty`);
    }
  }
  if (type === S_IFDIR) {
    // Not into its own subtree: walk up from the destination. MetaClient holds the volume's
    // rename lock for every directory move between parents, so no ancestor moves meanwhile.
    let cur = newParent;
    for (let depth = 0; depth < DEPTH_MAX; depth++) {
      if (cur === ino) throw new MetaPosixError('EINVAL', 'cannot move a directory into itself');
      if (cur === ROOT_INO) break;
      const a: Inode = (await (await c.sideOf(cur)).read({ op: 'getattr', ino: cur })).inode as Inode;
      if (!a.parent || a.parent === cur) break;
      cur = a.parent;
    }
  }
  const txid = c.txid();
  const createdMs = c.nowMs();
  // A replaced inode that does not live with the destination entry: its link is dropped (and a
  // directory's emptiness checked) where it lives, by a second participant (`unlink-inode`,
  // intent `<txid>#2`), so the drop is part of the decision rather than a step after it.
  const third = target ? await c.sideOf(target.ino ?? 0) : undefined;
  const thirdSide = third && third.groupId !== dst.groupId ? third : undefined;
  const peer2 = thirdSide ? { peerGroup2: thirdSide.groupId, replacedIno: target?.ino ?? 0 } : {};
  const prepared: { side: Side; txid: string }[] = [];
  const abort = async (): Promise<void> => {
    for (const p of prepared) await p.side.exec({ op: 'finish', txid: p.txid, commit: false, now: c.now() }).catch(() => undefined); // recovery finishes it otherwise
  };
  if (thirdSide) {
    await thirdSide.exec({ op: 'prepare', txid: `${txid}#2`, now: c.now(), intent: { kind: 'unlink-inode', ino: target?.ino ?? 0, peerGroup: src.groupId, createdMs } });
    prepared.push({ side: thirdSide, txid: `${txid}#2` });
  }
  try {
    await dst.exec({ op: 'prepare', txid, flags, now: c.now(), intent: { kind: 'rename-dst', parent: newParent, name: newName, ino, type, peerGroup: src.groupId, createdMs, ...peer2 } });
    prepared.push({ side: dst, txid });
    await src.exec({ op: 'prepare', txid, now: c.now(), leaseMs: c.nowMs(), intent: { kind: 'rename-src', parent, name, ino, type, peerGroup: dst.groupId, newParent, createdMs, ...peer2 } });
  } catch (err) {
    await abort();
    throw err;
  }
  const outcome = await decide(src, txid, 'rename-src', true, c);
  const fin = await dst.exec({ op: 'finish', txid, commit: outcome === 'decided-commit', now: c.now() });
  if (thirdSide) await thirdSide.exec({ op: 'finish', txid: `${txid}#2`, commit: outcome === 'decided-commit', now: c.now() });
  else await dropReplaced(c, dst, fin);
  await src.exec({ op: 'forget', txid, now: c.now() });
  if (outcome !== 'decided-commit') throw new MetaPosixError('EAGAIN', `rename ${txid} was aborted by recovery; retry`);
}

export async function crossLink(c: CrossContext, inodeSide: Side, dentrySide: Side, ino: number, parent: number, name: Uint8Array): Promise<Inode> {
  nameOk(name);
  await dentrySide.read({ op: 'readdir', parent, limit: 1 });
  const attr = (await inodeSide.read({ op: 'getattr', ino })).inode as Inode;
  if ((attr.mode & S_IFMT) === S_IFDIR) throw new MetaPosixError('EPERM', 'hard link to a directory');
  const txid = c.txid();
  const createdMs = c.nowMs();
  await dentrySide.exec({ op: 'prepare', txid, now: c.now(), intent: { kind: 'link-dentry', parent, name, ino, type: attr.mode & S_IFMT, peerGroup: inodeSide.groupId, createdMs } });
  try {
    await inodeSide.exec({ op: 'prepare', txid, now: c.now(), leaseMs: c.nowMs(), intent: { kind: 'link-inode', ino, peerGroup: dentrySide.groupId, createdMs } });
  } catch (err) {
    await dentrySide.exec({ op: 'finish', txid, commit: false, now: c.now() }).catch(() => undefined);
    throw err;
  }
  const outcome = await decide(inodeSide, txid, 'link-inode', true, c);
  await dentrySide.exec({ op: 'finish', txid, commit: outcome === 'decided-commit', now: c.now() });
  await inodeSide.exec({ op: 'forget', txid, now: c.now() });
  if (outcome !== 'decided-commit') throw new MetaPosixError('EAGAIN', `link ${txid} was aborted by recovery; retry`);
  return (await inodeSide.read({ op: 'getattr', ino })).inode as Inode;
}

/**
 * A create whose parent's partition has no inos left: the inode goes to `inodeSide`, the dentry
 * stays with the parent. Participant = the dentry (prepared with the ino chosen beforehand),
 * coordinator = the new inode.
 */
export async function crossCreate(c: CrossContext, inodeSide: Side, dentrySide: Side, parent: number, name: Uint8Array, ino: number, req: MetaRequest): Promise<Inode> {
  const txid = c.txid();
  const createdMs = c.nowMs();
  const type = (req.mode ?? 0) & S_IFMT || 0o100000;
  await dentrySide.exec({ op: 'prepare', txid, now: c.now(), intent: { kind: 'link-dentry', parent, name, ino, type, peerGroup: inodeSide.groupId, createdMs } });
  try {
    await inodeSide.exec({ ...req, op: 'prepare', txid, ino, now: c.now(), leaseMs: c.nowMs(), intent: { kind: 'create-inode', parent, ino, peerGroup: dentrySide.groupId, createdMs } });
  } catch (err) {
    await dentrySide.exec({ op: 'finish', txid, commit: false, now: c.now() }).catch(() => undefined);
    throw err;
  }
  const outcome = await decide(inodeSide, txid, 'create-inode', true, c);
  await dentrySide.exec({ op: 'finish', txid, commit: outcome === 'decided-commit', now: c.now() });
  await inodeSide.exec({ op: 'forget', txid, now: c.now() });
  if (outcome !== 'decided-commit') throw new MetaPosixError('EAGAIN', `create ${txid} was aborted by recovery; retry`);
  return (await inodeSide.read({ op: 'getattr', ino })).inode as Inode;
}

/**
 * unlink/rmdir of an entry whose inode lives in another partition. Participant = the inode
 * (a directory must be empty, and is closed to new entries until the decision), coordinator =
 * the dentry.
 */
export async function crossUnlink(c: CrossContext, dentrySide: Side, inodeSide: Side, parent: number, name: Uint8Array, ino: number): Promise<void> {
  const txid = c.txid();
  const createdMs = c.nowMs();
  await inodeSide.exec({ op: 'prepare', txid, now: c.now(), intent: { kind: 'unlink-inode', ino, peerGroup: dentrySide.groupId, createdMs } });
  try {
    await dentrySide.exec({ op: 'prepare', txid, now: c.now(), leaseMs: c.nowMs(), intent: { kind: 'unlink-dentry', parent, name, ino, peerGroup: inodeSide.groupId, createdMs } });
  } catch (err) {
    await inodeSide.exec({ op: 'finish', txid, commit: false, now: c.now() }).catch(() => undefined);
    throw err;
  }
  const outcome = await decide(dentrySide, txid, 'unlink-dentry', true, c);
  await inodeSide.exec({ op: 'finish', txid, commit: outcome === 'decided-commit', now: c.now() });
  await dentrySide.exec({ op: 'forget', txid, now: c.now() });
  if (outcome !== 'decided-commit') throw new MetaPosixError('EAGAIN', `unlink ${txid} was aborted by recovery; retry`);
}

/**
 * A rename with both parents in one partition where one inode lives in another: a moved
 * directory (participant 'reparent': its parent pointer) or a replaced entry (participant
 * 'unlink-inode': it loses the link; a directory must be empty). Coordinator = the rename.
 */
export async function crossLocalRename(c: CrossContext, dentrySide: Side, inodeSide: Side, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number, moved: number, replaced: number, movedSide?: Side): Promise<void> {
  const txid = c.txid();
  const createdMs = c.nowMs();
  // One participant (the replaced inode's unlink, or the moved directory's parent pointer), or
  // both: then `inodeSide` holds the replaced inode and `movedSide` the moved directory, whose
  // intent is `<txid>#2` (the two may share a partition).
  const two = movedSide !== undefined && replaced !== 0;
  const participant = replaced
    ? { kind: 'unlink-inode', ino: replaced, peerGroup: dentrySide.groupId, createdMs }
    : { kind: 'reparent', ino: moved, newParent, peerGroup: dentrySide.groupId, createdMs };
  const prepared: { side: Side; txid: string }[] = [];
  const abort = async (): Promise<void> => {
    for (const p of prepared) await p.side.exec({ op: 'finish', txid: p.txid, commit: false, now: c.now() }).catch(() => undefined); // recovery finishes it otherwise
  };
  await inodeSide.exec({ op: 'prepare', txid, now: c.now(), intent: participant });
  prepared.push({ side: inodeSide, txid });
  try {
    if (two) {
      await movedSide.exec({ op: 'prepare', txid: `${txid}#2`, now: c.now(), intent: { kind: 'reparent', ino: moved, newParent, peerGroup: dentrySide.groupId, createdMs } });
      prepared.push({ side: movedSide, txid: `${txid}#2` });
    }
    await dentrySide.exec({
      op: 'prepare', txid, now: c.now(), leaseMs: c.nowMs(),
      intent: { kind: 'rename-local', parent, name, newParent, newName, flags, ino: moved, replacedIno: replaced, peerGroup: inodeSide.groupId, ...(two ? { peerGroup2: movedSide.groupId } : {}), createdMs },
    });
  } catch (err) {
    await abort();
    throw err;
  }
  const r = await dentrySide.exec({ op: 'finish', txid, commit: true, intent: { kind: 'rename-local' }, now: c.now(), leaseMs: c.nowMs() });
  const outcome = r.intents?.[0]?.kind ?? 'decided-abort';
  for (const p of prepared) await p.side.exec({ op: 'finish', txid: p.txid, commit: outcome === 'decided-commit', now: c.now() });
  await dentrySide.exec({ op: 'forget', txid, now: c.now() });
  if (outcome !== 'decided-commit') throw new MetaPosixError('EAGAIN', `rename ${txid} was aborted (an entry changed, or by recovery); retry`);
}

/** A rename replaced an entry whose inode lives in another partition: drop that link there. */
async function dropReplaced(c: CrossContext, dst: Side, fin: MetaResponse): Promise<void> {
  const gone = fin.replacedIno ?? 0;
  if (gone === 0) return;
  const owner = await c.sideOf(gone);
  if (owner.groupId === dst.groupId) return; // already unlinked in the same entry
  await owner.exec({ op: 'droplink', ino: gone, now: c.now() });
}

// The coordinator's kind only tells finish it is the deciding side (any coordinator kind will do).
const COORD_OF: Record<string, string> = { 'rename-dst': 'rename-src', 'link-dentry': 'link-inode', 'unlink-inode': 'unlink-dentry', reparent: 'rename-local' };

/**
 * Finishes every intent on `side` older than `olderThanMs` (default INTENT_TIMEOUT_MS): the
 * coordinator's decision (or, when it has none, an abort it records) decides both sides.
 * Returns how many intents were resolved.
 */
export async function recoverIntents(c: CrossContext, side: Side, olderThanMs = INTENT_TIMEOUT_MS): Promise<number> {
  const nowMs = c.nowMs();
  const list = (await side.read({ op: 'intents', limit: 1000 })).intents ?? [];
  let n = 0;
  for (const raw of list) {
    const it = pb.Intent.create(raw);
    if (it.createdMs + olderThanMs > nowMs) continue;
    if (COORD_OF[it.kind]) {
      const coord = c.sideOfGroup(it.peerGroup);
      if (!coord) continue;
      const ctxid = coordinatorTxid(it.txid);
      const r = await coord.exec({ op: 'finish', txid: ctxid, commit: false, intent: { kind: COORD_OF[it.kind] as string }, now: c.now(), leaseMs: nowMs });
      const decision = r.intents?.[0];
      const fin = await side.exec({ op: 'finish', txid: it.txid, commit: decision?.kind === 'decided-commit', now: c.now() });
      if (it.kind === 'rename-dst' && !it.peerGroup2) await dropReplaced(c, side, fin); // else the second participant unlinks it
      // A real decision is forgotten now, unless another participant may still need it (the
      // coordinator's own recovery forgets it once neither has an intent left); a fence (no
      // peer: the coordinator never prepared) stays for 10x the timeout, so a coordinator that
      // wakes up late cannot prepare any more.
      if (decision?.peerGroup && !decision.peerGroup2) await coord.exec({ op: 'forget', txid: ctxid, now: c.now() });
      n++;
    } else if (isCoordinatorKind(it.kind)) {
      await decide(side, it.txid, it.kind, false, c);
      n++;
    } else if (it.kind.startsWith('decided-')) {
      // A decision is forgotten once its participants have none left (or, for a fence, much later).
      const peer = it.peerGroup ? c.sideOfGroup(it.peerGroup) : undefined;
      const peer2 = it.peerGroup2 ? c.sideOfGroup(it.peerGroup2) : undefined;
      const has = async (s: Side | undefined, id: string): Promise<boolean> => (s ? ((await s.read({ op: 'intent', txid: id })).intents ?? []).length > 0 : false);
      const stillThere = peer ? (await has(peer, it.txid)) || (await has(peer2, `${it.txid}#2`)) : it.createdMs + 10 * olderThanMs > nowMs;
      if (!stillThere) {
        await side.exec({ op: 'forget', txid: it.txid, now: c.now() });
        n++;
      }
    }
  }
  return n;
}
