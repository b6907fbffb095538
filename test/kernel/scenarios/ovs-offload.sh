# Scenario "ovs-offload": OVS's kernel datapath with other_config:hw-offload=true
# and tc-policy=skip_hw. A private ovsdb-server/ovs-vswitchd (run dir in the
# guest's /tmp, system datapath allowed), bridge br0 (datapath_type=system) with
# two namespaces on veth ports, and a small multi-table OpenFlow pipeline of the
# shape flowdrake's apps write (classify by in_port, then L2 lookup by dl_dst).
# OVS must put the datapath flows of the ping into tc (dpctl/dump-flows type=tc)
# as flower rules on the ports' ingress.
export OVS_RUNDIR=/tmp/ovs OVS_DBDIR=/tmp/ovs OVS_LOGDIR=/tmp/ovs OVS_SYSCONFDIR=/tmp/ovs
export OVS_PKGDATADIR=/usr/share/openvswitch
mkdir -p /tmp/ovs
dump_logs() { echo "--- ovs-vswitchd.log"; tail -n 40 /tmp/ovs/ovs-vswitchd.log || true; }
trap dump_logs ERR
ovsdb-tool create /tmp/ovs/conf.db /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server /tmp/ovs/conf.db --remote=punix:/tmp/ovs/db.sock --pidfile=/tmp/ovs/ovsdb-server.pid \
  --unixctl=/tmp/ovs/ovsdb-server.ctl --log-file=/tmp/ovs/ovsdb-server.log --detach
vsctl() { ovs-vsctl --db=unix:/tmp/ovs/db.sock --timeout=30 "$@"; }
vsctl --no-wait init
vsctl --no-wait set Open_vSwitch . other_config:hw-offload=true other_config:tc-policy=skip_hw
lane_vswitchd /tmp/ovs
appctl() { ovs-appctl -t /tmp/ovs/ovs-vswitchd.ctl "$@"; }
vsctl add-br br0 -- set bridge br0 datapath_type=system fail-mode=secure protocols=OpenFlow13
lane_vswitchd_check /tmp/ovs
ip netns add ovs_a
ip netns add ovs_b
ip link add va type veth peer name eth0 netns ovs_a
ip link add vb type veth peer name eth0 netns ovs_b
for ns in ovs_a ovs_b; do ip -n $ns link set lo up; done
ip -n ovs_a link set eth0 address 02:00:00:00:0a:01
ip -n ovs_b link set eth0 address 02:00:00:00:0b:01
ip -n ovs_a addr add 10.78.0.1/24 dev eth0
ip -n ovs_b addr add 10.78.0.2/24 dev eth0
ip -n ovs_a link set eth0 up
ip -n ovs_b link set eth0 up
ip link set va up
ip link set vb up
vsctl add-port br0 va -- set interface va ofport_request=1
vsctl add-port br0 vb -- set interface vb ofport_request=2
ofctl() { ovs-ofctl -O OpenFlow13 "$@"; }
ofctl add-flows br0 - <<'FLOWS'
table=0,priority=100,in_port=1,actions=set_field:1->reg6,goto_table:10
table=0,priority=100,in_port=2,actions=set_field:2->reg6,goto_table:10
table=0,priority=0,actions=drop
table=10,priority=100,dl_dst=02:00:00:00:0b:01,actions=output:2
table=10,priority=100,dl_dst=02:00:00:00:0a:01,actions=output:1
table=10,priority=50,dl_dst=ff:ff:ff:ff:ff:ff,actions=FLOOD
table=10,priority=0,actions=drop
FLOWS
lane_result offload_config "$(vsctl get Open_vSwitch . other_config | lane_json_lines)"
ping_out=$(ip netns exec ovs_a ping -c 10 -i 0.2 -W 2 10.78.0.2 2>&1) && ping_rc=0 || ping_rc=$?
echo "$ping_out"
lane_result ping "{\"rc\": $ping_rc}"
tc_flows=$(appctl dpctl/dump-flows type=tc)
echo "--- dpctl/dump-flows type=tc"; echo "$tc_flows"
ovs_flows=$(appctl dpctl/dump-flows type=ovs)
echo "--- dpctl/dump-flows type=ovs"; echo "$ovs_flows"
lane_result tc_flows "$(printf '%s\n' "$tc_flows" | lane_json_lines)"
lane_result ovs_flows "$(printf '%s\n' "$ovs_flows" | lane_json_lines)"
lane_result va_filters "$(tc -s -j filter show dev va ingress)"
lane_result vb_filters "$(tc -s -j filter show dev vb ingress)"
tc -s filter show dev va ingress
appctl exit || true
ovs-appctl -t /tmp/ovs/ovsdb-server.ctl exit || true
