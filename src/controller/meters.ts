/**
 * OpenFlow meters the apps' punt flows use (one per local port for DHCP),
 * reconciled like flows: read what the switch holds when a session starts
 * (meter_config multipart), then add / modify / delete the difference before
 * the flows that reference them are sent. Meters count packets per second
 * (OFPMF_PKTPS) with a burst of the same size, and drop above the rate.
 */
import { installFlows } from "./flow-installer.js";
import type { OfConnection, OfRequest } from "../openflow/connection.js";

const OFPMF_PKTPS = 0x2;
const OFPMF_BURST = 0x4;
const OFPMF_STATS = 0x8;
const FLAGS = OFPMF_PKTPS | OFPMF_BURST | OFPMF_STATS;

export class MeterSet {
  private installed = new Map<number, number>();

  async readInstalled(conn: OfConnection): Promise<void> {
    const parts = await conn.multipart({ mpType: "meter_config", meterId: 0xffffffff });
    this.installed = new Map();
    for (const p of parts) {
      if (p.mpType !== "meter_config") continue;
      for (const m of p.meters) {
        const band = m.bands[0];
        if (band) this.installed.set(m.meterId, band.rate);
      }
    }
  }

  async apply(conn: OfConnection, want: Map<number, number>): Promise<number> {
    const msgs: OfRequest[] = [];
    const mod = (command: "add" | "modify" | "delete", meterId: number, rate: number): OfRequest => ({
      type: "meter_mod",
      command,
      flags: FLAGS,
      meterId,
      bands: command === "delete" ? [] : [{ type: "drop", rate, burstSize: rate }],
    });
    for (const [id, rate] of want) {
      const have = this.installed.get(id);
      if (have === undefined) msgs.push(mod("add", id, rate));
      else if (have !== rate) msgs.push(mod("modify", id, rate));
    }
    // Deleting a meter deletes the flows using it; the reconciler removes those flows anyway.
    for (const id of this.installed.keys()) if (!want.has(id)) msgs.push(mod("delete", id, 0));
    if (msgs.length === 0) return 0;
    await installFlows(conn, msgs, { bundle: false });
    this.installed = new Map(want);
    return msgs.length;
  }
}
