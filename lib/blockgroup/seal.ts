// The sealing protocol, run by whoever sees a group fail (the primary when a forward fails, a
// client when the primary is gone, a replica that restarted). Phase 1 seals every reachable
// replica and collects its durable lengths; phase 2 fixes the final lengths. Every
// acknowledged append is durable on every replica, so any single replica's lengths already
// cover all acknowledged data: the maximum over those reached is safe, and bytes past a
// replica's own length are copied to it by catch-up. If a replica already holds final lengths
// (an earlier sealer got there), those win, so the group converges on one answer.
import type { RpcPool } from '../rpc/index.js';
import { blockGroupService, type ExtentLength, type SealResponse } from './service.js';

export function toRecord(list: ExtentLength[] | null | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of list ?? []) out[String(e.extentId ?? 0)] = e.length ?? 0;
  return out;
}

export function toList(rec: Record<string, number>): ExtentLength[] {
  return Object.entries(rec)
    .map(([id, length]) => ({ extentId: Number(id), length }))
    .sort((a, b) => (a.extentId as number) - (b.extentId as number));
}

/** Seals a group on every reachable replica; answers the final lengths, or undefined if none answered. */
export async function sealGroup(pool: RpcPool, groupId: number, replicas: string[], deadlineMs: number): Promise<Record<string, number> | undefined> {
  const answers = await Promise.allSettled(replicas.map((a) => pool.get(a).call(blockGroupService.seal, { groupId }, { deadlineMs })));
  const ok: SealResponse[] = [];
  for (const a of answers) if (a.status === 'fulfilled') ok.push(a.value);
  if (ok.length === 0) return undefined;
  let target: Record<string, number> | undefined;
  for (const r of ok) {
    if (r.hasSealedLengths) {
      target = toRecord(r.sealedLengths);
      break;
    }
  }
  if (!target) {
    target = {};
    for (const r of ok) {
      for (const [id, len] of Object.entries(toRecord(r.lengths))) target[id] = Math.max(target[id] ?? 0, len);
    }
  }
  const list = toList(target);
  const set = await Promise.allSettled(replicas.map((a) => pool.get(a).call(blockGroupService.setSealedLengths, { groupId, sealedLengths: list }, { deadlineMs })));
  // The first replica in chain order that answered holds the value that stands.
  for (const s of set) if (s.status === 'fulfilled' && s.value.hasSealedLengths) return toRecord(s.value.sealedLengths);
  return target;
}
