# Scenario "flowdrake-nat": NAT on the NIC through br-ex's uplink — the
# flowdrake agent in offload.mode planner with offload.uplinks naming br-ex's
# uplink, on the real kernel (tc-flower, act_ct with NAT, OVS's kernel
# datapath).
#
#   host1 (the guest's root namespace), OVS /tmp/fdn/h1
#     br-int: vm1 (floating IP 172.24.4.50), vm2 (no floating IP: SNAT to the
#             gateway address 172.24.4.10, whose chassis is host1), both on
#             net1 10.1.0.0/24 behind router r1; patch-physnet1 to br-ex
#     br-ex:  its uplink ext0, a veth into namespace "ext" — the outside: the
#             external subnet's gateway 172.24.4.1, and 198.51.100.7 beyond
#             it — and its own port with the host's 172.24.4.2
#   agent host1: bridgeMappings physnet1 → br-ex, offload.uplinks br-ex → ext0,
#     routes and next hops without idle timeout (l3.idleTimeoutS 0,
#     nat.nextHopIdleS 0: OVS would age out a flow whose packets tc carries)
#
#   1. DHCP for the VMs; the first packets of each way (ARP through OVS, the
#      next hop learned by the agent).
#   2. ext (198.51.100.7) pings vm1's floating IP, vm1 and vm2 ping
#      198.51.100.7 (beyond the external subnet: through its gateway): after the first
#      packets every packet is on flowdrake's filters — on ext0 for what
#      comes in (ct NAT, MAC rewrite, TTL decrement, redirect to the VM), on
#      the VM's device for what goes out (ct NAT, rewrite, redirect to ext0)
#      — and none on OVS's datapath flows; no packet-in.
#   3. br-ex's own address is reached from ext as before: what br-int does
#      not claim on ext0 (not for a NAT MAC) is left to OVS and br-ex.
H=/tmp/fdn
NB="embedded:$H/nb"
source "$LANE_REPO/test/kernel/scenarios/offload-hosts.sh"

nat_counters() { printf '{"host1": %s}' "$(counters 1 vm1 vm2 ext0)"; }

# ── the host, br-ex and the outside ─────────────────────────────────────────
add_host 1
start_ovs 1 false
vsctl 1 --may-exist add-br br-ex -- set bridge br-ex datapath_type=system
ip netns add ext
ip link add ext0 type veth peer name eth0 netns ext
ip link set ext0 up
vsctl 1 add-port br-ex ext0
ip -n ext link set lo up
ip -n ext link set eth0 address 02:00:00:24:04:64
ip -n ext addr add 172.24.4.1/24 dev eth0
ip -n ext addr add 198.51.100.7/32 dev lo
ip -n ext link set eth0 up
ip addr add 172.24.4.2/24 dev br-ex
ip link set br-ex up
for n in 1 2; do mkvm vm$n 1 fa:16:3e:00:00:1$n; done
FDO model "$NB" 2
FDO nat "$NB"
start_nb
cat > "$H/agent1.json" <<EOF
{"chassis": "host1", "tunnelIp": "192.168.50.1", "ovsdb": "unix:$H/h1/db.sock", "datapathType": "system",
 "nb": "$NB", "metrics": "$(metrics_url 1 | sed 's#http://##; s#/metrics##')", "logLevel": "info",
 "heartbeatSeconds": 60, "bridgeMappings": {"physnet1": "br-ex"},
 "offload": {"mode": "planner", "profile": "connectx-6-dx", "ports": ["vm*"], "uplinks": {"br-ex": "ext0"},
             "statsIntervalMs": 500},
 "l3": {"idleTimeoutS": 0}, "nat": {"nextHopIdleS": 0}}
EOF
start_agent 1
lane_result ready "$(FDO wait-offload "$(sock 1)" 2)"
lane_result ports "$(FDO ask "$(sock 1)" status 2>>"$H/ask.err" | node -e 'console.log(JSON.stringify(JSON.parse(require("fs").readFileSync(0, "utf8")).ports))')"
# (for a failure's message: why the agent's socket gave no report)
lane_result ports_err "$(tail -n 6 "$H/ask.err" 2>/dev/null | cut -c1-600 | lane_json_lines)"

# ── 1. DHCP, then the first packets of each way ─────────────────────────────
cat > "$H/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
EOF
chmod +x "$H/udhcpc.sh"
leases="{"
for vm in vm1 vm2; do
  for _ in 1 2 3; do
    ip netns exec $vm busybox udhcpc -i eth0 -n -q -t 10 -T 3 -s "$H/udhcpc.sh" >/dev/null 2>&1 && break
  done
  leases="$leases\"$vm\": \"$(ip -n $vm -4 -o addr show dev eth0 | awk '{ print $4 }')\", "
done
lane_result leases "${leases%, }}"
# ARP goes through OVS (the floating IP's is answered in flows, the VMs' router's by the arp app);
# a reply to a next hop not learned yet makes the agent ask for it and is dropped: the next one passes
# first NS 'PING ARGS'
first() { for _ in 1 2 3 4 5; do ip netns exec "$1" ping -c 1 -W 3 $2 >/dev/null && return 0; done; return 1; }
lane_result first_packets "{\"ext_fip\": $(first ext '-I 198.51.100.7 172.24.4.50' && echo true || echo false), \"vm1_ext\": $(first vm1 198.51.100.7 && echo true || echo false), \"vm2_ext\": $(first vm2 198.51.100.7 && echo true || echo false)}"
lane_result offloaded "$(
  for t in 'nat(dst=10.1.0.11)' 'reg1,ct(commit,table=36,zone' '02:00:00:24:04:64->eth_dst'; do
    FDO wait-flows "$(sock 1)" offloaded "$t"
  done | lane_json_lines
)"

# ── 2. the pings, on flowdrake's filters ────────────────────────────────────
# ext's ARP refreshes for the NAT addresses are copied to the agent (it learns next hops from
# them): for the counted pings its neighbour entries are made permanent, so that none is sent
ip -n ext neigh replace 172.24.4.50 lladdr fa:16:3e:fe:00:50 nud permanent dev eth0
ip -n ext neigh replace 172.24.4.10 lladdr fa:16:3e:fe:00:10 nud permanent dev eth0
lane_result nat_a "$(nat_counters)"
lane_result ping_ext_fip "$(ping_n ext '-I 198.51.100.7 172.24.4.50' 20 0.1)"
lane_result nat_b "$(nat_counters)"
lane_result ping_vm1_ext "$(ping_n vm1 198.51.100.7 20 0.1)"
lane_result nat_c "$(nat_counters)"
lane_result ping_vm2_ext "$(ping_n vm2 198.51.100.7 20 0.1)"
lane_result nat_d "$(nat_counters)"
# what ext sees: the floating IP answering with TTL 63 (decremented on the NIC)
lane_result ttl_ext_fip "$(ip netns exec ext ping -c 1 -W 2 -I 198.51.100.7 172.24.4.50 | sed -n 's/.*ttl=\([0-9]*\).*/\1/p')"
# the conntrack entries tc made: the floating IP's and the gateway's translations. An ICMP entry
# lives 30 s after its last packet, and on a loaded host the TCG guest can take longer than that
# from vm2's pings to here (seen: only the floating IP's entry, just refreshed above, was left):
# one more ping through the gateway address refreshes its entry on the same filters.
ip netns exec vm2 ping -c 1 -W 2 198.51.100.7 >/dev/null
lane_result conntrack "$({ ovs-appctl -t "$H/h1/ovs-vswitchd.ctl" dpctl/dump-conntrack 2>&1; cat /proc/net/nf_conntrack 2>&1; } | grep -E '172\.24\.4\.(50|10)|rror|No such' | lane_json_lines)"
# flowdrake's filters on ext0: the actions of each (ct with nat among them)
lane_result tc_ext0 "$(tc -j filter show dev ext0 ingress | node -e '
const fs = JSON.parse(require("fs").readFileSync(0, "utf8") || "[]");
const ours = fs.filter((f) => (f.options?.actions ?? []).some((a) => String(a.cookie ?? "").startsWith("fd7c01")));
console.log(JSON.stringify(ours.map((f) => ({ chain: f.chain ?? 0, pref: f.pref, dst_mac: f.options.keys?.dst_mac ?? null, actions: f.options.actions.map((a) => [a.kind, a.ct_action ?? a.control_action?.type ?? a.mirred_action ?? ""].join(" ").trim()) }))))')"

# ── 3. br-ex's own address, from ext ───────────────────────────────────────
lane_result nat_d2 "$(nat_counters)"
lane_result ping_ext_local "$(ping_n ext 172.24.4.2 10 0.1)"
lane_result nat_e "$(nat_counters)"
lane_result explain "$(FDO ask "$(sock 1)" explain | node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify(r.flows.filter((f) => /nat|in_port=/.test(f.flow)).map((f) => ({ flow: f.flow, status: f.status, reason: f.reason }))))')"
nb_holder_result
