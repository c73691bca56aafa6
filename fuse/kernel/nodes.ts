// The node table: the kernel names inodes by nodeid, our FuseVolume by path. Like libfuse's
// high-level layer, each (parent nodeid, name) the kernel has looked up gets one nodeid, and a
// path is the chain of names up to the root (nodeid 1). A hard link therefore has one nodeid per
// name (attr.ino still says the real inode). The kernel counts lookups (nlookup); FORGET gives
// them back and a node at 0 goes. Unlink and rename update the names; a node whose name went
// (unlinked, renamed over) keeps the path it last had, detached, until the kernel forgets it:
// operations on a still-open unlinked file then reach the volume by that path (lib/fs's
// VolumeFuse answers it from the open handle).
//
// Bounded: past `maxNodes` a new name is refused (the session answers ENFILE and logs): the
// kernel forgets inodes under memory pressure, so a table this large means a leak or abuse.

export const ROOT_ID = 1;

interface Node {
  parent: number;
  name: string;
  nlookup: number;
  /** False once the name was unlinked or renamed over: not in `byName`. */
  attached: boolean;
  /** The full path it had when it was detached (its parent may be forgotten before it). */
  lastPath?: string;
  /** What the kernel was last told of its attributes (regular files; see KernelSession.revalidate). */
  told?: ToldAttr;
}

/** The attributes a reply gave the kernel that an open must not let outlive a change. */
export interface ToldAttr {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  /** performance.now() when the reply was made; the kernel uses it until attr_valid after. */
  atMs: number;
}

/** Past the table's bound; its code is the errno the kernel gets (ENFILE), as with any volume error. */
export class NodeTableFullError extends Error {
  readonly code = 'ENFILE';
}

export class NodeTable {
  private readonly nodes = new Map<number, Node>(); // invariant: size <= maxNodes + 1 (the root)
  private readonly byName = new Map<string, number>(); // `${parent}/${name}` -> nodeid, attached nodes only
  private next = ROOT_ID + 1;

  constructor(readonly maxNodes = 1_000_000) {
    // The root is never forgotten (the kernel holds it for the life of the mount).
    this.nodes.set(ROOT_ID, { parent: 0, name: '', nlookup: 1, attached: true });
  }

  get size(): number {
    return this.nodes.size;
  }

  has(nodeid: number): boolean {
    return this.nodes.has(nodeid);
  }

  /** The path of a node, or undefined for a nodeid we do not know (stale or bogus). */
  path(nodeid: number): string | undefined {
    if (nodeid === ROOT_ID) return '/';
    const parts: string[] = [];
    let id = nodeid;
    // The chain is finite (each parent existed before its child), but bound the walk anyway.
    for (let depth = 0; depth < 4096 && id !== ROOT_ID; depth++) {
      const n = this.nodes.get(id);
      if (!n) return undefined;
      if (!n.attached && n.lastPath !== undefined) {
        let p = n.lastPath;
        for (let i = parts.length - 1; i >= 0; i--) p += '/' + (parts[i] as string);
        return p;
      }
      parts.push(n.name);
      id = n.parent;
    }
    if (id !== ROOT_ID) return undefined;
    let p = '';
    for (let i = parts.length - 1; i >= 0; i--) p += '/' + (parts[i] as string);
    return p;
  }

  /** What the kernel was last told of a node's attributes (kept until the node is forgotten). */
  told(nodeid: number): ToldAttr | undefined {
    return this.nodes.get(nodeid)?.told;
  }

  tell(nodeid: number, size: number, mtimeMs: number, ctimeMs: number, atMs: number): void {
    const n = this.nodes.get(nodeid);
    if (!n) return;
    const t = n.told;
    if (t === undefined) n.told = { size, mtimeMs, ctimeMs, atMs };
    else {
      t.size = size;
      t.mtimeMs = mtimeMs;
      t.ctimeMs = ctimeMs;
      t.atMs = atMs;
    }
  }

  /** The path of `name` in directory `parent`. */
  childPath(parent: number, name: string): string | undefined {
    const p = this.path(parent);
    if (p === undefined) return undefined;
    return p === '/' ? `/${name}` : `${p}/${name}`;
  }

  /** One more kernel reference to (parent, name): its existing nodeid, or a new one. */
  lookup(parent: number, name: string): number {
    const key = `${parent}/${name}`;
    const id = this.byName.get(key);
    if (id !== undefined) {
      (this.nodes.get(id) as Node).nlookup++;
      return id;
    }
    if (this.nodes.size > this.maxNodes) throw new NodeTableFullError(`fuse: node table full (${this.maxNodes} nodes)`);
    const nid = this.next++;
    this.nodes.set(nid, { parent, name, nlookup: 1, attached: true });
    this.byName.set(key, nid);
    return nid;
  }

  forget(nodeid: number, nlookup: number): void {
    if (nodeid === ROOT_ID) return;
    const n = this.nodes.get(nodeid);
    if (!n) return;
    n.nlookup -= nlookup;
    if (n.nlookup > 0) return;
    this.nodes.delete(nodeid);
    if (n.attached) this.byName.delete(`${n.parent}/${n.name}`);
    // Children of a forgotten directory cannot exist: the kernel forgets children before parents
    // (a child dentry pins its parent).
  }

  /** The name went (unlink, rmdir): its node, if any, stays (detached) until forgotten. */
  remove(parent: number, name: string): void {
    const key = `${parent}/${name}`;
    const id = this.byName.get(key);
    if (id === undefined) return;
    const n = this.nodes.get(id);
    if (n) {
      n.lastPath = this.path(id);
      n.attached = false;
    }
    this.byName.delete(key);
  }

  rename(parent: number, name: string, newParent: number, newName: string): void {
    if (parent === newParent && name === newName) return;
    this.remove(newParent, newName);
    const key = `${parent}/${name}`;
    const id = this.byName.get(key);
    if (id === undefined) return;
    this.byName.delete(key);
    const n = this.nodes.get(id) as Node;
    n.parent = newParent;
    n.name = newName;
    this.byName.set(`${newParent}/${newName}`, id);
  }
}
