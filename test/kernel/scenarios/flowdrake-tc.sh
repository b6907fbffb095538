# Scenario "flowdrake-tc": flowdrake's own netlink bindings (`flowdrake tc` from
# the host's dist/, run by the host's node; see FD below) install, dump and delete
# flower rules with skip_hw on veth "representors" fra/frb that are also ports
# of an OVS bridge (kernel datapath, no OVS offload: OVS is the slow path).
#
#   1. One ping before any rule: OVS forwards it (its ICMP flows count it).
#   2. flowdrake installs ICMP redirect rules fra<->frb (tc batch), dumps them.
#   3. 20 pings: every request hits fra's rule and every reply frb's rule
#      (counters == packets sent); OVS's ICMP flow counters do not move.
#   4. flowdrake deletes the rules; 3 more pings go through OVS again.
export OVS_RUNDIR=/tmp/ovs2 OVS_DBDIR=/tmp/ovs2 OVS_LOGDIR=/tmp/ovs2 OVS_SYSCONFDIR=/tmp/ovs2
export OVS_PKGDATADIR=/usr/share/openvswitch
mkdir -p /tmp/ovs2
# `flowdrake tc` without the rest of the CLI: dist/src/cli/main.js also loads
# every other command's dependencies (etcd3/grpc, zeromq …), which costs tens of
# seconds over 9p under TCG. This runs the same runTcLive with main.js's rules
# for errors and exit codes (1 kernel refusal, 2 usage).
FD() {
  node --input-type=module -e '
const { runTcLive } = await import(process.env.LANE_REPO + "/dist/src/cli/tc.js");
try {
  await runTcLive(process.argv.slice(1), { out: (s) => process.stdout.write(s) });
} catch (e) {
  process.stderr.write(`flowdrake: ${e.message}\n`);
  process.exitCode = e.code === "USAGE" ? 2 : 1;
}' -- "$@"
}
if [ ! -f "$LANE_REPO/dist/src/cli/tc.js" ]; then
  echo "flowdrake is not built ($LANE_REPO/dist missing): run 'bash scripts/setup'"
  exit 3
fi
ovsdb-tool create /tmp/ovs2/conf.db /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server /tmp/ovs2/conf.db --remote=punix:/tmp/ovs2/db.sock --pidfile=/tmp/ovs2/ovsdb-server.pid \
  --unixctl=/tmp/ovs2/ovsdb-server.ctl --log-file=/tmp/ovs2/ovsdb-server.log --detach
vsctl() { ovs-vsctl --db=unix:/tmp/ovs2/db.sock --timeout=30 "$@"; }
vsctl --no-wait init
vsctl --no-wait set Open_vSwitch . other_config:hw-offload=false
lane_vswitchd /tmp/ovs2
stop_ovs() {
  ovs-appctl -t /tmp/ovs2/ovs-vswitchd.ctl exit --cleanup || true
  ovs-appctl -t /tmp/ovs2/ovsdb-server.ctl exit || true
}
trap stop_ovs EXIT
vsctl add-br br1 -- set bridge br1 datapath_type=system fail-mode=secure protocols=OpenFlow13
lane_vswitchd_check /tmp/ovs2
for side in a b; do
  ip netns add fd_$side
  ip link add fr$side type veth peer name eth0 netns fd_$side
  ip netns exec fd_$side sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip -n fd_$side link set lo up
done
sysctl -qw net.ipv6.conf.fra.disable_ipv6=1 net.ipv6.conf.frb.disable_ipv6=1
ip -n fd_a link set eth0 address 02:00:00:00:fa:01
ip -n fd_b link set eth0 address 02:00:00:00:fb:01
ip -n fd_a addr add 10.80.0.1/24 dev eth0
ip -n fd_b addr add 10.80.0.2/24 dev eth0
ip -n fd_a link set eth0 up
ip -n fd_b link set eth0 up
ip link set fra up
ip link set frb up
vsctl add-port br1 fra -- set interface fra ofport_request=1
vsctl add-port br1 frb -- set interface frb ofport_request=2
ovs-ofctl -O OpenFlow13 add-flows br1 - <<'FLOWS'
table=0,priority=200,icmp,in_port=1,actions=output:2
table=0,priority=200,icmp,in_port=2,actions=output:1
table=0,priority=100,in_port=1,actions=output:2
table=0,priority=100,in_port=2,actions=output:1
FLOWS
# n_packets of OVS's two ICMP flows as {"a2b": N, "b2a": N}, every packet so far included
ovs_icmp() {
  lane_flush_stats /tmp/ovs2/ovs-vswitchd.ctl >/dev/null
  ovs-ofctl -O OpenFlow13 dump-flows br1 icmp | awk '
    /in_port=("?fra"?|1)[ ,]/ { match($0, /n_packets=[0-9]+/); a = substr($0, RSTART + 10, RLENGTH - 10) }
    /in_port=("?frb"?|2)[ ,]/ { match($0, /n_packets=[0-9]+/); b = substr($0, RSTART + 10, RLENGTH - 10) }
    END { printf "{\"a2b\": %d, \"b2a\": %d}", a, b }'
}
ping_n() { ip netns exec fd_a ping -c "$1" -i 0.2 -W 2 10.80.0.2; }

# 1. the first packet: no rule yet, OVS forwards it
ping_n 1
lane_result ovs_icmp_first "$(ovs_icmp)"

# 2. flowdrake installs the rules (one batch: qdiscs and filters) and dumps them
cat > /tmp/ovs2/rules.tc <<'RULES'
# flowdrake tc batch: same lines as `tc -b`
qdisc add dev fra clsact
qdisc add dev frb clsact
filter add dev fra ingress prio 10 protocol ip flower skip_hw ip_proto icmp dst_ip 10.80.0.2 action mirred egress redirect dev frb
filter add dev frb ingress prio 10 protocol ip flower skip_hw ip_proto icmp dst_ip 10.80.0.1 action mirred egress redirect dev fra
filter show dev fra ingress
RULES
lane_result rules_installed "$(FD --json batch /tmp/ovs2/rules.tc)"

# 3. the rest of the flow: all of it on the tc path
# (echo.py: exactly 20 requests, and an answer that comes late still counts)
lane_result ping "$(ip netns exec fd_a /usr/bin/python3 "$LANE_REPO/test/kernel/scenarios/echo.py" 20 0.2 10.80.0.2)"
lane_result ovs_icmp_after_tc "$(ovs_icmp)"
printf '%s\n' 'filter show dev fra ingress' 'filter show dev frb ingress' > /tmp/ovs2/show.tc
shown=$(FD --json batch /tmp/ovs2/show.tc)
lane_result fra_rules "$(sed -n 1p <<<"$shown")"
lane_result frb_rules "$(sed -n 2p <<<"$shown")"
# iproute2 reads the same counters
lane_result fra_iproute2 "$(tc -s -j filter show dev fra ingress)"

# 4. flowdrake deletes the rules; OVS gets the flow back
printf '%s\n' 'filter del dev fra ingress prio 10' 'filter del dev frb ingress prio 10' \
  'filter show dev fra ingress' > /tmp/ovs2/del.tc
lane_result after_delete "$(FD --json batch /tmp/ovs2/del.tc)"
ping_n 3 >/dev/null && back_rc=0 || back_rc=$?
lane_result ping_after_delete "{\"rc\": $back_rc}"
lane_result ovs_icmp_after_delete "$(ovs_icmp)"
