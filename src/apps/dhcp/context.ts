/**
 * Which subnet a port's DHCP is served from, for the agent deciding whether to
 * punt the port's DHCP at all. A port with no IPv4 address on a subnet with
 * enable_dhcp on gets no punt flow: its DHCP then stays on the data path, so
 * a tenant's own DHCP server on that network receives it (issue 4). Punting
 * and then ignoring would swallow those packets.
 */
import type { Port, Subnet } from "../../nb/model/index.js";
import { isIpv4 } from "../../packet/index.js";

/** The first of the port's fixed IPv4 addresses whose subnet serves DHCP, with that subnet. */
export function dhcpSubnetFor(
  port: Port,
  subnetById: (id: string) => Subnet | undefined,
): { subnet: Subnet; ipAddress: string } | undefined {
  for (const f of port.fixedIps) {
    if (!isIpv4(f.ipAddress)) continue;
    const subnet = subnetById(f.subnetId);
    if (subnet && subnet.ipVersion === 4 && subnet.enableDhcp) return { subnet, ipAddress: f.ipAddress };
  }
  return undefined;
}
