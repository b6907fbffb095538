# Scenario "flowdrake-secgroup": a security group's established connections
# on the NIC — the flowdrake agent in offload.mode planner on the real kernel
# (tc-flower, act_ct, OVS's kernel datapath).
#
#   host1 (the guest's root namespace), OVS /tmp/fds/h1
#     br-int: vm1, vm2, vm3 on net1 10.1.0.0/24, all three in security group
#             sg1: ingress ICMP from vm1's address only, egress anything
#
#   1. vm1 pings vm2 (a first ping: ARP, the connection committed by OVS).
#   2. vm1 pings vm2 20 times, a new connection: its first request is
#      committed by OVS (the commit sets ct_mark, which no NIC does); every
#      later request, and every reply, goes through both ports' conntrack
#      lookups (vm1's egress zone, vm2's ingress zone, and back) on
#      flowdrake's filters: act_ct in tc, ended by a redirect.
#   3. vm3 pings vm2: the group does not allow it; nothing comes back.
#   4. While vm1 pings vm2, the rule that let ICMP in is removed: the next
#      request, no longer allowed, goes to OVS, which marks the connection
#      blocked in conntrack (ct_mark 1); the requests after it are dropped on
#      the NIC. The rules that mark (software) are traps that clear the NIC's
#      lookup first. (The request that gets marked passes the removed rule's
#      transitional trap, gone when the counters are read.)
H=/tmp/fds
NB="embedded:$H/nb"
source "$LANE_REPO/test/kernel/scenarios/offload-hosts.sh"

sg_counters() { printf '{"host1": %s}' "$(counters 1 vm1 vm2 vm3)"; }

add_host 1
start_ovs 1 false
for n in 1 2 3; do
  mkvm vm$n 1 fa:16:3e:00:00:1$n
  ip -n vm$n addr add 10.1.0.1$n/24 dev eth0
done
# the neighbours are known: the counted pings carry no ARP
for a in 1 2 3; do
  for b in 1 2 3; do
    [ $a = $b ] || ip -n vm$a neigh replace 10.1.0.1$b lladdr fa:16:3e:00:00:1$b nud permanent dev eth0
  done
done
FDO model "$NB" 3
FDO secgroup "$NB" 3
start_nb
agent_config 1 '{"mode": "planner", "profile": "connectx-6-dx", "ports": ["vm*"], "statsIntervalMs": 500}'
start_agent 1
lane_result ready "$(FDO wait-offload "$(sock 1)" 3)"
# the ingress lookups of the group's ports, on the NIC
lane_result offloaded "$(FDO wait-flows "$(sock 1)" offloaded 'actions=ct(table=56,zone=' | lane_json_lines)"

# ── 1. a first ping ─────────────────────────────────────────────────────────
lane_result first_ping "$(ping_n vm1 10.1.0.12 1 1)"

# ── 2. a new connection of 20 pings ─────────────────────────────────────────
lane_result sg_a "$(sg_counters)"
lane_result ping_vm1_vm2 "$(ping_n vm1 10.1.0.12 20 0.1)"
# the kernel's conntrack: vm1's connection in both ports' zones (at once: an ICMP entry lasts 30 s)
lane_result conntrack "$(grep -E '10\.1\.0\.11|rror' /proc/net/nf_conntrack 2>&1 | lane_json_lines)"
lane_result sg_b "$(sg_counters)"
# flowdrake's filters on vm1: their actions (act_ct lookups, and the traps after them that clear the state)
lane_result tc_vm1 "$(tc -j filter show dev vm1 ingress | node -e '
const fs = JSON.parse(require("fs").readFileSync(0, "utf8") || "[]");
const ours = fs.filter((f) => (f.options?.actions ?? []).some((a) => String(a.cookie ?? "").startsWith("fd7c01")));
console.log(JSON.stringify(ours.map((f) => ({ chain: f.chain ?? 0, pref: f.pref, actions: f.options.actions.map((a) => a.kind === "ct" ? `ct ${JSON.stringify(Object.fromEntries(Object.entries(a).filter(([k]) => /action|zone/.test(k))))}` : [a.kind, a.control_action?.type ?? a.mirred_action ?? ""].join(" ").trim()) }))))')"

# ── 3. a ping the group does not allow ──────────────────────────────────────
lane_result ping_vm3_vm2 "$(ping_n vm3 10.1.0.12 5 0.2)"
lane_result sg_c "$(sg_counters)"
lane_result explain "$(FDO ask "$(sock 1)" explain | node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify(r.flows.filter((f) => /ct\(|ct_state/.test(f.flow)).map((f) => ({ flow: f.flow, status: f.status, reason: f.reason }))))')"

# ── 4. the rule removed under a ping ────────────────────────────────────────
# The ping goes on until 5 s after the agent's flows are gone (its own deadline, 300 s, is only a
# backstop): how long the removal takes depends on the guest's speed, and a ping of a fixed 40 s
# once ended before it, on a guest slowed by a second lane beside it. Each reply is stamped (-D).
ip netns exec vm1 ping -D -i 0.25 -W 1 -w 300 10.1.0.12 > "$H/revoke-ping.txt" 2>&1 &
RP=$!
sleep 3
REVOKED=$(date +%s.%N)
FDO secgroup-revoke "$NB"
lane_result revoked "$(FDO wait-flows "$(sock 1)" gone 'icmp,reg7=' | lane_json_lines)"
GONE=$(date +%s.%N)
sleep 5
kill -INT "$RP" || true
wait "$RP" || true
# all sent and received, the replies more than 1 s after the flows were gone, how long the removal
# took, and when the last reply came (negative: before the flows were gone)
lane_result ping_revoked "$(awk -v revoked="$REVOKED" -v gone="$GONE" '
  /^\[[0-9.]+\] [0-9]+ bytes from/ { t = substr($1, 2, length($1) - 2) + 0; last = t; if (t > gone + 1) late++ }
  / packets transmitted, / { sent = $1; received = $4 }
  END { printf "{\"sent\": %d, \"received\": %d, \"answeredLate\": %d, \"removalSeconds\": %.1f, \"lastReplyAfterGoneSeconds\": %.2f}", sent, received, late, gone - revoked, last - gone }
' "$H/revoke-ping.txt")"
lane_result conntrack_revoked "$(grep -E '10\.1\.0\.11' /proc/net/nf_conntrack 2>&1 | lane_json_lines)"
# flowdrake's clearing traps on vm1 (act_ct clear, then pass)
lane_result clear_actions "$(tc -j filter show dev vm1 ingress | node -e '
const fs = JSON.parse(require("fs").readFileSync(0, "utf8") || "[]");
console.log(JSON.stringify(fs.filter((f) => (f.options?.actions ?? []).some((a) => a.kind === "ct" && a.action === "clear"))));')"
lane_result ping_after "$(ping_n vm1 10.1.0.12 5 0.2)"
nb_holder_result
