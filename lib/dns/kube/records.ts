// Kubernetes Services and Endpoints -> DNS records (pure; no I/O), following the Kubernetes
// DNS specification where it applies:
//   <svc>.<ns>.svc.<zone>                A/AAAA: external IPs (spec.externalIPs, then load
//                                        balancer ingress IPs) if any, else the cluster IP(s)
//   _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV per named port -> <svc>.<ns>.svc.<zone>
//   headless (clusterIP None):           one A/AAAA per ready endpoint address on the service
//                                        name, <host>.<svc>.<ns>.svc.<zone> per endpoint (host =
//                                        its hostname or its IP with dashes), and SRV per named
//                                        port and endpoint -> that per-endpoint name
//   ExternalName:                        CNAME -> spec.externalName
// Every record is owned by `kubewatch`, so the REST API treats it as read-only.
import { isIP } from 'node:net';
import type { DnsRecord } from '../store.js';
import { fnv32aHex, nameProblem, normalizeDomain } from '../api/validate.js';
import type { KubeObject } from './client.js';

export interface MapOptions {
  zone: string;
  ttl?: number;
  /** Records of not-ready endpoints too (the service's publishNotReadyAddresses also does it). */
  publishNotReady?: boolean;
}

interface ServicePort {
  name?: string;
  port?: number;
  protocol?: string;
}

interface EndpointAddress {
  ip?: string;
  hostname?: string;
}

interface EndpointSubset {
  addresses?: EndpointAddress[];
  notReadyAddresses?: EndpointAddress[];
  ports?: ServicePort[];
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const strList = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x !== '') : []);

function addrRecord(name: string, ip: string, ttl: number, probePorts: number[]): DnsRecord | undefined {
  const fam = isIP(ip);
  if (fam === 0) return undefined;
  const value = fam === 6 ? ip.toLowerCase() : ip;
  const r: DnsRecord = { id: fnv32aHex(value), name, type: fam === 6 ? 'AAAA' : 'A', value, ttl, owner: 'kubewatch' };
  if (probePorts.length > 0) r.probePorts = probePorts.slice(0, 16);
  return r;
}

function srvRecord(name: string, target: string, port: number, ttl: number): DnsRecord {
  return { id: fnv32aHex(`${target}:${port}`), name, type: 'SRV', value: target, port, priority: 10, weight: 10, ttl, owner: 'kubewatch' };
}

/** `10.0.0.1` -> `10-0-0-1`, `fd00::1` -> `fd00--1`: an endpoint name when it has no hostname. */
export function ipLabel(ip: string): string {
  return ip.toLowerCase().replace(/[.:]/g, '-');
}

const portLabel = (p: ServicePort): string | undefined => {
  const n = str(p.name);
  return n ? `_${n.toLowerCase()}._${(str(p.protocol) ?? 'TCP').toLowerCase()}` : undefined;
};

/**
 * Records for one Service and its Endpoints (same namespace/name). Invalid names and values
 * are skipped and reported through `skipped` rather than failing the whole sync.
 */
export function serviceRecords(svc: KubeObject, eps: KubeObject | undefined, opts: MapOptions, skipped?: (why: string) => void): DnsRecord[] {
  const zone = normalizeDomain(opts.zone);
  const ttl = opts.ttl ?? 30;
  const ns = str(svc.metadata?.namespace) ?? 'default';
  const svcName = str(svc.metadata?.name);
  if (!svcName) return [];
  const base = `${svcName}.${ns}.svc.${zone}`.toLowerCase();
  const bad = nameProblem(base);
  if (bad) {
    skipped?.(`${ns}/${svcName}: name ${base} ${bad}`);
    return [];
  }
  const spec = (svc.spec ?? {}) as Record<string, unknown>;
  const out: DnsRecord[] = [];
  const type = str(spec.type) ?? 'ClusterIP';
  if (type === 'ExternalName') {
    const target = normalizeDomain(str(spec.externalName) ?? '');
    const tp = nameProblem(target);
    if (tp) skipped?.(`${ns}/${svcName}: externalName ${JSON.stringify(target)} ${tp}`);
    else out.push({ id: fnv32aHex(`CNAME|${target}`), name: base, type: 'CNAME', value: target, ttl, owner: 'kubewatch' });
    return out;
  }
  const ports = (Array.isArray(spec.ports) ? spec.ports : []) as ServicePort[];
  const tcpPorts = ports.filter((p) => (str(p.protocol) ?? 'TCP') === 'TCP' && typeof p.port === 'number').map((p) => p.port as number);
  const clusterIP = str(spec.clusterIP);
  const headless = clusterIP === 'None';

  if (!headless) {
    const status = (svc.status ?? {}) as { loadBalancer?: { ingress?: { ip?: unknown }[] } };
    const external = [...strList(spec.externalIPs), ...(status.loadBalancer?.ingress ?? []).map((i) => str(i.ip)).filter((x): x is string => x !== undefined)];
    const ips = external.length > 0 ? external : strList(spec.clusterIPs).length > 0 ? strList(spec.clusterIPs) : clusterIP ? [clusterIP] : [];
    for (const ip of new Set(ips)) {
      const r = addrRecord(base, ip, ttl, tcpPorts);
      if (r) out.push(r);
      else skipped?.(`${ns}/${svcName}: ${JSON.stringify(ip)} is not an IP`);
    }
    for (const p of ports) {
      const label = portLabel(p);
      if (!label || typeof p.port !== 'number') continue;
      const name = `${label}.${base}`;
      if (nameProblem(name)) skipped?.(`${ns}/${svcName}: SRV name ${name} is invalid`);
      else out.push(srvRecord(name, base, p.port, ttl));
    }
    return out;
  }

  // Headless: per-endpoint records.
  const publishNotReady = opts.publishNotReady === true || spec.publishNotReadyAddresses === true;
  const subsets = (Array.isArray(eps?.subsets) ? eps.subsets : []) as EndpointSubset[];
  const seen = new Set<string>();
  for (const ss of subsets) {
    const addrs = [...(ss.addresses ?? []), ...(publishNotReady ? ss.notReadyAddresses ?? [] : [])];
    const epPorts = ss.ports ?? [];
    const epTcp = epPorts.filter((p) => (str(p.protocol) ?? 'TCP') === 'TCP' && typeof p.port === 'number').map((p) => p.port as number);
    for (const a of addrs) {
      const ip = str(a.ip);
      if (!ip) continue;
      const host = (str(a.hostname) ?? ipLabel(ip)).toLowerCase();
      const epName = `${host}.${base}`;
      const rs: (DnsRecord | undefined)[] = [addrRecord(base, ip, ttl, epTcp)];
      if (!nameProblem(epName)) rs.push(addrRecord(epName, ip, ttl, epTcp));
      for (const p of epPorts) {
        const label = portLabel(p);
        if (!label || typeof p.port !== 'number') continue;
        const name = `${label}.${base}`;
        if (!nameProblem(name) && !nameProblem(epName)) rs.push(srvRecord(name, epName, p.port, ttl));
      }
      for (const r of rs) {
        if (!r) {
          skipped?.(`${ns}/${svcName}: endpoint ${JSON.stringify(ip)} is not an IP`);
          continue;
        }
        const k = `${r.name}\0${r.id}`;
        if (seen.has(k)) continue;
        seen.add(k);
        out.push(r);
      }
    }
  }
  return out;
}

/**
 * EndpointSlices (discovery.k8s.io/v1) of one service folded into the Endpoints shape that
 * serviceRecords reads: ready endpoints as addresses, the rest as notReadyAddresses. A slice
 * names its service in the `kubernetes.io/service-name` label.
 */
export function endpointsFromSlices(slices: KubeObject[]): KubeObject {
  const subsets: EndpointSubset[] = [];
  for (const sl of slices) {
    const addresses: EndpointAddress[] = [];
    const notReady: EndpointAddress[] = [];
    for (const ep of (Array.isArray(sl.endpoints) ? sl.endpoints : []) as { addresses?: unknown; hostname?: unknown; conditions?: { ready?: unknown } }[]) {
      // "ready" unset means ready (the field is optional in the API).
      const ready = ep.conditions?.ready !== false;
      for (const ip of strList(ep.addresses)) {
        const a: EndpointAddress = { ip, ...(str(ep.hostname) ? { hostname: str(ep.hostname)! } : {}) };
        (ready ? addresses : notReady).push(a);
      }
    }
    subsets.push({ addresses, notReadyAddresses: notReady, ports: (Array.isArray(sl.ports) ? sl.ports : []) as ServicePort[] });
  }
  return { kind: 'Endpoints', subsets };
}

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** namespace/service a slice belongs to, or undefined for slices not owned by a service. */
export function sliceServiceKey(sl: KubeObject): string | undefined {
  const labels = sl.metadata?.labels as Record<string, unknown> | undefined;
  const svc = str(labels?.[SERVICE_NAME_LABEL]);
  return svc ? `${sl.metadata?.namespace ?? ''}/${svc}` : undefined;
}
