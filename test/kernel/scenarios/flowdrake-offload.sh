# Scenario "flowdrake-offload": the flowdrake agent offloads its own flow set
# into tc-flower (offload.mode planner), with the real kernel, real tc and
# OVS's kernel datapath.
#
#   host1 (the guest's root namespace)        host2 (namespace "fdh2")
#   OVS /tmp/fdo/h1, br-int (system)           OVS /tmp/fdo/h2, br-int (system)
#   agent host1                                agent host2
#   the embedded NB, held by a process of its own and served on its nb.sock
#   vm1 vm2 vm3: namespaces on veth            vm4: namespace on veth
#     "representors" (offload.ports vm*)
#   vm5 (net2, routed from net1 by router r1)
#   192.168.50.1 ───── underlay bridge ───── 192.168.50.2   (Geneve)
#   (offload-hosts.sh builds the hosts)
#
#   1. planner: DHCP from the local agent (punted: the first packets are
#      local), then pings vm1→vm2 (one host), vm1→vm4 and vm3→vm4 (Geneve)
#      and iperf3 vm1→vm2 and vm3→vm4: every packet is counted by
#      flowdrake's tc filters (cookie fd7c…), none by OVS's datapath flows
#      or OpenFlow flows, and no packet-in is sent.
#   1b. routed: vm1 (net1) pings vm5 (net2) through router r1: the first
#      packet of each direction is one packet-in on host1's agent, which
#      installs a host route; once the routes are offloaded (pedit MAC
#      rewrite, TTL decrement, redirect), every packet is on flowdrake's tc
#      filters and none on OVS's datapath or OpenFlow flows.
#   2. while vm1 pings vm2 and vm4 at 20/s: agent host1 killed with SIGKILL
#      and restarted (its filters read back, none re-sent), then a port
#      deleted and re-created in the NB: no ping lost.
#   3. capacity below the flow set (planner, offload.capacity): vm1 pings
#      vm2 the whole time, vm3 stays idle: the busy path stays offloaded,
#      idle flows are demoted, no ping lost.
#   4. ovs: the same pings with offload.mode ovs (OVS's own tc offload,
#      hw-offload=true, tc-policy=skip_hw), for comparison; flowdrake's
#      filters are removed when the agents start in that mode.
#   5. a tc rule the kernel refuses: the kernel made unable to load
#      act_pedit, the action of the routed flows' MAC rewrite and TTL
#      decrement; host1's OVS restarted without its own offload, and vm1's
#      host routes to vm5 and back put into it (software) by agent host1,
#      still in ovs mode. While vm1 pings vm5 at 20/s, the agent restarts
#      in planner mode, reads the routes back and the kernel refuses their
#      filters: the routes stay in OVS (counted by OpenFlow and OVS's
#      datapath, by none of flowdrake's filters), the agent reports the
#      kernel's errno and message (caps --explain, metrics, log), no ping
#      is lost, and the L2 flows go onto tc.
#      Why this way: it is deterministic. act_pedit is a module in Debian's
#      kernel; `rmmod` takes it out (only possible here at the end, once
#      section 4's ovs mode removed flowdrake's filters and nothing holds a
#      pedit action: hence section 5 shares this boot rather than paying
#      for another boot, hosts and DHCP), and kernel.modprobe set to the
#      empty string turns module autoloading off (the kernel then runs no
#      modprobe at all; a modprobe.d "install act_pedit /bin/false" line is
#      not possible on the read-only host root, and the kernel's modprobe
#      helper would not run in this chroot anyway). A filter with a pedit
#      action is then refused by act_api's tc_action_load_ops with ENOENT,
#      "Failed to load TC action module", on every try; other filters are
#      not affected.
H=/tmp/fdo
NB="embedded:$H/nb"
source "$LANE_REPO/test/kernel/scenarios/offload-hosts.sh"
PLANNER='{"mode": "planner", "profile": "connectx-6-dx", "ports": ["vm*"], "statsIntervalMs": 500}'

both() {
  printf '{"host1": %s, "host2": %s}' "$(counters 1 vm1 vm2 vm3 genev_sys_6081)" "$(counters 2 vm4 genev_sys_6081)"
}

# ── the hosts ───────────────────────────────────────────────────────────────
add_host 1
add_host 2
start_ovs 1 false
start_ovs 2 false
for n in 1 2 3; do mkvm vm$n 1 fa:16:3e:00:00:1$n; done
mkvm vm4 2 fa:16:3e:00:00:14
mkvm vm5 1 fa:16:3e:00:00:15
FDO model "$NB"
FDO router "$NB"
start_nb
# host routes without an idle timeout: OVS would age them out while tc carries their packets
ROUTES='{"idleTimeoutS": 0}'
agent_config 1 "$PLANNER" "$ROUTES"
agent_config 2 "$PLANNER" "$ROUTES"
t0=$(date +%s.%N)
start_agent 1
start_agent 2
lane_result ready1 "$(FDO wait-offload "$(sock 1)" 4)"
lane_result ready2 "$(FDO wait-offload "$(sock 2)" 1)"
lane_result agents_ready_s "$(echo "$(date +%s.%N) $t0" | awk '{ print $1 - $2 }')"

# ── 1. planner: DHCP, then pings and iperf3 on the tc path ──────────────────
cat > "$H/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
EOF
chmod +x "$H/udhcpc.sh"
pi0=$(FDO metric "$(metrics_url 1)" flowdrake_packet_ins_total)
leases="{"
for vm in vm1 vm2 vm3 vm4 vm5; do
  # a busy guest can take its time: up to 3 clients of 10 DISCOVERs each
  for _ in 1 2 3; do
    ip netns exec $vm busybox udhcpc -i eth0 -n -q -t 10 -T 3 -s "$H/udhcpc.sh" >/dev/null 2>&1 && break
  done
  leases="$leases\"$vm\": \"$(ip -n $vm -4 -o addr show dev eth0 | awk '{ print $4 }')\", "
done
lane_result leases "${leases%, }}"
lane_result dhcp_packet_ins "{\"host1\": $(( $(FDO metric "$(metrics_url 1)" flowdrake_packet_ins_total) - pi0 ))}"
# the first packets of each flow (ARP resolution goes through OVS: ARP is trapped)
for pair in "vm1 10.1.0.12" "vm1 10.1.0.14" "vm3 10.1.0.14"; do
  set -- $pair
  ip netns exec "$1" ping -c 1 -W 3 "$2" >/dev/null || ip netns exec "$1" ping -c 1 -W 3 "$2" >/dev/null
done
lane_result before_pings "$(both)"
lane_result ping_vm1_vm2 "$(ping_n vm1 10.1.0.12 20 0.1)"
lane_result ping_vm1_vm4 "$(ping_n vm1 10.1.0.14 20 0.1)"
lane_result ping_vm3_vm4 "$(ping_n vm3 10.1.0.14 20 0.1)"
lane_result after_pings "$(both)"
ip netns exec vm2 iperf3 -s -D -1 -p 5201
ip netns exec vm4 iperf3 -s -D -1 -p 5202
until ip netns exec vm2 ss -ltn | grep -q ':5201 ' && ip netns exec vm4 ss -ltn | grep -q ':5202 '; do sleep 0.1; done
lane_result iperf_vm1_vm2 "$(ip netns exec vm1 iperf3 -c 10.1.0.12 -p 5201 -t 2 -J | node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify({ bytes: j.end?.sum_received?.bytes ?? 0, error: j.error ?? null }))')"
lane_result iperf_vm3_vm4 "$(ip netns exec vm3 iperf3 -c 10.1.0.14 -p 5202 -t 2 -J | node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify({ bytes: j.end?.sum_received?.bytes ?? 0, error: j.error ?? null }))')"
lane_result after_iperf "$(both)"
lane_result explain1 "$(FDO ask "$(sock 1)" explain)"

# ── 1b. routed: vm1 (net1) → vm5 (net2) through r1 ──────────────────────────
both_routed() { printf '{"host1": %s}' "$(counters 1 vm1 vm5)"; }
lane_result routed_first "$(both_routed)"
# One echo request, waited for long enough: its round trip waits for two planner passes (tc, then
# OpenFlow) under TCG, which on a loaded host took over 3 s; a retry is a second packet of the same
# direction, which may be punted again before the first one's host route lands.
lane_result routed_first_ping "$(ip netns exec vm1 ping -c 1 -W 20 10.2.0.15 >/dev/null && echo 1 || echo 0)"
lane_result routed_first_after "$(both_routed)"
lane_result routed_offloaded "$(FDO wait-flows "$(sock 1)" offloaded nw_dst=10.2.0.15)"
FDO wait-flows "$(sock 1)" offloaded nw_dst=10.1.0.11 >/dev/null
lane_result routed_before "$(both_routed)"
lane_result ping_vm1_vm5 "$(ping_n vm1 10.2.0.15 20 0.1)"
lane_result routed_after "$(both_routed)"
lane_result routed_ttl "$(ip netns exec vm1 ping -c 1 -W 2 10.2.0.15 | sed -n 's/.*ttl=\([0-9]*\).*/\1/p')"
lane_result routed_explain "$(FDO ask "$(sock 1)" explain | node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify(r.flows.filter((f) => /nw_dst=10\.(2\.0\.15|1\.0\.11) /.test(f.flow))))')"
lane_result routed_tc_vm1 "$(tc -j filter show dev vm1 ingress | node -e 'const fs = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(JSON.stringify(fs.filter((f) => (f.options?.actions ?? []).some((a) => a.kind === "pedit")).map((f) => (f.options.actions ?? []).map((a) => a.kind))))')"

# ── 2. churn: NB changes and an agent killed under traffic ──────────────────
# bg_ping NAME FROM TO COUNT: ping in the background at 20/s, result in $H/NAME.ping
# (-D -O: a timestamp on every line, and a line for every request still unanswered when the next goes)
bg_ping() { ip netns exec "$2" ping -D -O -c "$4" -i 0.05 -W 2 "$3" > "$H/$1.ping" 2>&1 & }
ping_result() {
  printf '{"sent": %d, "received": %d, "late": %s}' "$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$H/$1.ping")" \
    "$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$H/$1.ping")" \
    "$(grep 'no answer yet' "$H/$1.ping" | sed 's/^\[\([0-9.]*\)\].*icmp_seq=\([0-9]*\).*/\1 seq \2/' | lane_json_lines)"
}
# seq_result FILE: a ping stopped by SIGINT, as {"sent","received","missing"}: every request but the
# one in flight when ping was stopped should have its reply
seq_result() {
  node -e '
const t = require("fs").readFileSync(process.argv[1], "utf8");
const sent = Number(/^(\d+) packets transmitted/m.exec(t)?.[1] ?? 0);
const got = new Set([...t.matchAll(/bytes from .*icmp_seq=(\d+)/g)].map((m) => Number(m[1])));
const missing = [];
for (let s = 1; s < sent; s++) if (!got.has(s)) missing.push(s);
console.log(JSON.stringify({ sent, received: got.size, missing }))' "$1"
}
bg_ping churn_vm2 vm1 10.1.0.12 1200
P1=$!
bg_ping churn_vm4 vm1 10.1.0.14 1200
P2=$!
# agent host1 killed with SIGKILL under traffic, then restarted: it reads its filters back
lane_result handles_before_kill "$(FDO handles vm1 vm2 vm3 genev_sys_6081 | lane_json_lines)"
kill -9 "$AGENT1"
wait "$AGENT1" || true
echo "--- agent host1 restarted after SIGKILL" >> "$H/agent1.log"
start_agent 1
lane_result restarted "$(FDO wait-offload "$(sock 1)" 3)"
lane_result restart_tc_ops "$(FDO metric "$(metrics_url 1)" flowdrake_tc_ops_total)"
lane_result handles_after_restart "$(FDO handles vm1 vm2 vm3 genev_sys_6081 | lane_json_lines)"
lane_result restart_log "$(sed -n '/restarted after SIGKILL/,$p' "$H/agent1.log" | grep -E 'read installed|"msg":"reconciled"' | lane_json_lines)"
# a port deleted and re-created in the NB
FDO port-del "$NB" vm3
lane_result churn_deleted "$(FDO wait-flows "$(sock 1)" gone fa:16:3e:00:00:13)"
FDO port-add "$NB" vm3
lane_result churn_added "$(FDO wait-flows "$(sock 1)" offloaded fa:16:3e:00:00:13)"
wait $P1 $P2 || true
lane_result churn_ping_vm2 "$(ping_result churn_vm2)"
lane_result churn_ping_vm4 "$(ping_result churn_vm4)"

# ── 3. a capacity below the flow set ────────────────────────────────────────
desired=$(FDO ask "$(sock 1)" status | node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).filters.desired)')
capacity=$((desired - 30))
stop_agent 1
agent_config 1 \
  "{\"mode\": \"planner\", \"profile\": \"connectx-6-dx\", \"ports\": [\"vm*\"], \"statsIntervalMs\": 500, \"dwellMs\": 2000, \"capacity\": $capacity}" \
  "$ROUTES"
# vm1 pings vm2 at 20/s until 40 replies after the budget settled: the path stays busy however long
# the restart takes (a fixed 60 s of pings could end first on a slow guest, leaving every flow idle)
ip netns exec vm1 ping -D -O -i 0.05 -W 2 10.1.0.12 > "$H/budget_vm2.ping" 2>&1 &
P1=$!
echo "--- agent host1 restarted with a capacity" >> "$H/agent1.log"
start_agent 1
lane_result budget_capacity "{\"desired\": $desired, \"capacity\": $capacity}"
# (a wait that times out prints nothing on stdout; its reason is budget_diag)
lane_result budget "$(FDO wait-budget "$(sock 1)" "$capacity" fa:16:3e:00:00:11 fa:16:3e:00:00:12 2>"$H/wait-budget.err")"
lane_result budget_diag "$(cut -c1-2000 "$H/wait-budget.err" | lane_json_lines)"
lane_result budget_demotions "$(FDO metric "$(metrics_url 1)" flowdrake_offload_demotions_total)"
replies() { grep -c 'bytes from' "$H/budget_vm2.ping" || true; }
n=$(( $(replies) + 40 ))
until [ "$(replies)" -ge $n ] || ! kill -0 $P1 2>/dev/null; do sleep 0.1; done
kill -INT $P1
wait $P1 || true
lane_result budget_ping "$(seq_result "$H/budget_vm2.ping")"
lane_result budget_log "$(sed -n '/restarted with a capacity/,$p' "$H/agent1.log" | grep -E 'offload budget|"msg":"reconciled"|read installed' | lane_json_lines)"

# ── 4. offload.mode ovs, for comparison ─────────────────────────────────────
stop_agent 1
stop_agent 2
stop_vswitchd 1
stop_vswitchd 2
start_ovs 1 true
start_ovs 2 true
OVSMODE='{"mode": "ovs", "ports": ["vm*"]}'
# (host routes without an idle timeout on host1: section 5 keeps the agent's routes across a restart into planner mode)
agent_config 1 "$OVSMODE" "$ROUTES"
agent_config 2 "$OVSMODE"
for n in 1 2; do echo "--- agent host$n restarted in ovs mode" >> "$H/agent$n.log"; done
start_agent 1
start_agent 2
# (a wait that times out prints nothing on stdout; its reason goes to the diagnostics below)
lane_result ovs_mode1 "$(FDO wait-mode "$(sock 1)" ovs 2>>"$H/wait-mode.err")"
lane_result ovs_mode2 "$(FDO wait-mode "$(sock 2)" ovs 2>>"$H/wait-mode.err")"
# OVS gets its flows back from the agents: wait until vm1 reaches vm2 and vm4 again
for dst in 10.1.0.12 10.1.0.14; do
  for _ in $(seq 60); do ip netns exec vm1 ping -c 1 -W 1 $dst >/dev/null 2>&1 && break; done
done
ip netns exec vm3 ping -c 1 -W 2 10.1.0.14 >/dev/null || true
lane_result ovs_before_pings "$(both)"
lane_result ovs_ping_vm1_vm2 "$(ping_n vm1 10.1.0.12 20 0.1)"
lane_result ovs_ping_vm1_vm4 "$(ping_n vm1 10.1.0.14 20 0.1)"
lane_result ovs_ping_vm3_vm4 "$(ping_n vm3 10.1.0.14 20 0.1)"
lane_result ovs_after_pings "$(both)"
lane_result ovs_caps "$(FDO ask "$(sock 1)" status)"
# for a failure's message: what each agent did with the filters planner mode left, and OVS's tc log
lane_result ovs_diag "$(
  {
  sed 's/^/wait-mode: /' "$H/wait-mode.err" 2>/dev/null | tail -n 4 | cut -c1-600
  tail -n 5 "$H/nb-holder.log" | cut -c1-600 | sed 's/^/nb-holder log: /'
  for n in 1 2; do
    grep -hE 'offload mode|flowdrake tc filters|DUPLICATE|another agent' "$H/agent$n.log" | tail -n 6 | sed "s/^/agent$n: /"
    # everything the agent said since its start in ovs mode (warnings and errors included)
    sed -n '/restarted in ovs mode/,$p' "$H/agent$n.log" | grep -vE '"level":(10|20),' | tail -n 12 | cut -c1-600 | sed "s/^/agent$n since ovs mode: /"
    grep -hiE 'tc|offload|qdisc' "$H/h$n/ovs-vswitchd.log" | tail -n 8 | sed "s/^/ovs$n: /"
  done
  # host1: the ICMP and TCP datapath flows OVS kept in its kernel datapath rather than in tc,
  # its warnings and its offload counters
  ovs-appctl -t "$H/h1/ovs-vswitchd.ctl" dpctl/dump-flows -m type=ovs | grep -E 'proto=(1|6),' | head -n 6 | sed 's/^/ovs1 dp: /'
  # and the ICMP ones in tc, with their packet counts; the kernel datapath's lookups (hit, missed, lost)
  ovs-appctl -t "$H/h1/ovs-vswitchd.ctl" dpctl/dump-flows -m type=tc | grep -E 'proto=1,' | head -n 12 | cut -c1-600 | sed 's/^/ovs1 tc dp: /'
  ovs-appctl -t "$H/h1/ovs-vswitchd.ctl" dpctl/show | grep -E 'lookups|flows' | sed 's/^/ovs1 dpctl: /'
  grep -hE 'WARN|ERR' "$H/h1/ovs-vswitchd.log" | tail -n 8 | sed 's/^/ovs1 log: /'
  ovs-appctl -t "$H/h1/ovs-vswitchd.ctl" coverage/show | grep -iE 'offload|netdev_tc|tc_' | sed 's/^/ovs1 coverage: /'
  } | lane_json_lines
)"

# ── 5. a tc rule the kernel refuses ─────────────────────────────────────────
# OVS without its own offload on host1 (agent host1, still in ovs mode, puts its flows back), act_pedit out
stop_vswitchd 1
# nothing holds act_pedit once flowdrake's filters are gone (the kernel frees actions after an RCU grace period)
lane_result refusal_pedit_before "{\"loaded\": $([ -d /sys/module/act_pedit ] && echo true || echo false), \"refcnt\": $(cat /sys/module/act_pedit/refcnt 2>/dev/null || echo null)}"
for _ in $(seq 100); do rmmod act_pedit 2>/dev/null && break; sleep 0.1; done
modprobe_was=$(cat /proc/sys/kernel/modprobe)
printf '\n' > /proc/sys/kernel/modprobe
if [ -d /sys/module/act_pedit ] || [ -n "$(cat /proc/sys/kernel/modprobe)" ]; then
  echo "act_pedit is still loaded (refcnt $(cat /sys/module/act_pedit/refcnt)) or autoloading is on"
  exit 1
fi
# the kernel's answer to a pedit filter by hand, on a veth of a throwaway namespace
ip netns add fdprobe
ip -n fdprobe link add p0 type veth peer name p1
tc -n fdprobe qdisc add dev p0 ingress
probe=$(tc -n fdprobe filter add dev p0 ingress protocol ip flower skip_hw action pedit ex munge eth src set 02:00:00:00:00:01 2>&1) && probe_rc=0 || probe_rc=$?
ip netns del fdprobe
lane_result refusal_by_hand "{\"exitCode\": $probe_rc, \"stderr\": $(printf '%s\n' "$probe" | lane_json_lines)}"
start_ovs 1 false
# vm1 reaches vm5 through r1 in software: the agent's host routes (reactive, no idle timeout) are in OVS
for _ in $(seq 60); do ip netns exec vm1 ping -c 1 -W 1 10.2.0.15 >/dev/null 2>&1 && break; done
ip netns exec vm1 ping -c 1 -W 3 10.1.0.12 >/dev/null || ip netns exec vm1 ping -c 1 -W 3 10.1.0.12 >/dev/null
# vm1 pings vm5 at 20/s while agent host1 restarts in planner mode: it reads the routes back from OVS,
# and the kernel refuses their filters
ip netns exec vm1 ping -D -O -i 0.05 -W 2 10.2.0.15 > "$H/refusal_vm5.ping" 2>&1 &
P1=$!
stop_agent 1
agent_config 1 "$PLANNER" "$ROUTES"
echo "--- agent host1 restarted in planner mode, act_pedit unavailable" >> "$H/agent1.log"
start_agent 1
lane_result refusal_route_refused "$(FDO wait-flows "$(sock 1)" refused nw_dst=10.2.0.15)"
FDO wait-flows "$(sock 1)" refused nw_dst=10.1.0.11 >/dev/null
# … and goes on for 40 more replies after the refusal
replies() { grep -c 'bytes from' "$H/refusal_vm5.ping" || true; }
n=$(( $(replies) + 40 ))
until [ "$(replies)" -ge $n ] || ! kill -0 $P1 2>/dev/null; do sleep 0.1; done
kill -INT $P1
wait $P1 || true
# every request but the one in flight when ping was stopped has its reply
lane_result refusal_ping "$(seq_result "$H/refusal_vm5.ping")"
lane_result refusal_packet_ins "$(FDO metric "$(metrics_url 1)" flowdrake_packet_ins_total)"
three() { printf '{"host1": %s}' "$(counters 1 vm1 vm2 vm5)"; }
lane_result refusal_a "$(three)"
lane_result refusal_ping_vm5 "$(ping_n vm1 10.2.0.15 20 0.1)"
lane_result refusal_b "$(three)"
lane_result refusal_ping_vm2 "$(ping_n vm1 10.1.0.12 20 0.1)"
lane_result refusal_c "$(three)"
lane_result refusal_explain "$(FDO ask "$(sock 1)" explain)"
lane_result refusal_metrics "$(FDO samples "$(metrics_url 1)" flowdrake_offload_refusals_total flowdrake_offload_refused_flows)"
# flowdrake's filters on vm1 and vm5 that match either routed address: their actions (kind, and gact's verdict)
lane_result refusal_tc_routed "$(node -e '
const { execFileSync } = require("child_process");
const ours = ["vm1", "vm5"].flatMap((dev) => JSON.parse(execFileSync("tc", ["-j", "filter", "show", "dev", dev, "ingress"], { encoding: "utf8" }) || "[]"))
  .filter((f) => (f.options?.actions ?? []).some((a) => String(a.cookie ?? "").startsWith("fd7c01")));
const routed = ours.filter((f) => ["10.2.0.15", "10.1.0.11"].includes(f.options?.keys?.dst_ip));
console.log(JSON.stringify({ ours: ours.length, routed: routed.map((f) => f.options.actions.map((a) => [a.kind, a.control_action?.type ?? a.mirred_action ?? ""].join(" ").trim())) }))')"
# the same report as the operator reads it: flowdrake caps --explain on the live agent
lane_result refusal_cli "$(node "$LANE_REPO/dist/src/cli/main.js" caps --explain "agent:$(sock 1)" \
  | grep -E -B1 '^    refused: |^  flows: ' | grep -v '^--$' | lane_json_lines)"
lane_result refusal_log "$(sed -n '/act_pedit unavailable/,$p' "$H/agent1.log" | grep 'tc refused a filter' | lane_json_lines)"
printf '%s\n' "$modprobe_was" > /proc/sys/kernel/modprobe
nb_holder_result
