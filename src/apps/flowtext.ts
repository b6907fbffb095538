/**
 * Small helpers apps share to write flows in ovs-ofctl syntax: a table by
 * pipeline name, an IPv4 address as the 32-bit register value it becomes,
 * and the IPv4/IPv6 addresses of a port.
 */
import { table, type TableName } from "../controller/pipeline.js";
import type { Port } from "../nb/model/schemas.js";

export function t(name: TableName): number {
  return table(name);
}

export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

export function ipv4ToHex(ip: string): string {
  const n = ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  return hex(n);
}

export function isV4(ip: string): boolean {
  return !ip.includes(":");
}

export function portIps(port: Port): { v4: string[]; v6: string[] } {
  const all = port.fixedIps.map((f) => f.ipAddress);
  return { v4: all.filter(isV4), v6: all.filter((a) => !isV4(a)) };
}
