# Simulated hosts for the offload scenarios in the kernel lane (sourced by
# flowdrake-offload.sh and by bench/offload.ts's guest script). Host 1 is the
# guest's root namespace, host N > 1 the namespace fdhN; each has its own
# ovsdb-server and ovs-vswitchd (kernel datapath) in $H/hN, its br-int, its
# "VMs" (namespaces on veth pairs whose host ends are br-int ports and stand
# in for representors: offload.ports vm*), and its flowdrake agent (config
# $H/agentN.json, log $H/agentN.log, metrics 127.0.0.1:946(3+N), explain
# socket $H/hN/flowdrake.br-int.sock). The hosts meet on an underlay bridge,
# 192.168.50.N/24 (MTU 1600: room for Geneve around a 1500-byte frame). The
# NB is one embedded store, $NB, held by a process of its own (start_nb) and
# reached by every agent through its nb.sock, so that an agent can be killed
# without taking the NB along.
#
# Needs H and NB set; uses the lane prelude's lane_vswitchd,
# lane_vswitchd_check and lane_result.
FDO_JS=$LANE_REPO/test/kernel/scenarios/offload-lane.mjs
FDO() { node "$FDO_JS" "$@"; }
if [ ! -f "$LANE_REPO/dist/src/controller/tc-reconciler.js" ]; then
  echo "flowdrake is not built ($LANE_REPO/dist missing): run 'bash scripts/setup'"
  exit 3
fi
mkdir -p "$H"
PIDS=()
hosts_cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for d in "$H"/h*; do
    ovs-appctl -t "$d/ovs-vswitchd.ctl" exit 2>/dev/null || true
    ovs-appctl -t "$d/ovsdb-server.ctl" exit 2>/dev/null || true
  done
}
hosts_dump() {
  echo "--- agent logs"
  tail -n 30 "$H"/agent*.log 2>/dev/null || true
  echo "--- ovs-vswitchd logs"
  tail -n 15 "$H"/h*/ovs-vswitchd.log 2>/dev/null || true
}
trap hosts_cleanup EXIT
trap hosts_dump ERR

ns_of() { [ "$1" = 1 ] || echo "fdh$1"; }
# ns_exec NS CMD…: run in namespace NS, or here when NS is empty
ns_exec() {
  local ns=$1
  shift
  if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi
}
vsctl() { ovs-vsctl --db="unix:$H/h$1/db.sock" --timeout=30 "${@:2}"; }
sock() { echo "$H/h$1/flowdrake.br-int.sock"; }
metrics_url() { echo "http://127.0.0.1:$((9463 + $1))/metrics"; }

# add_host N: namespace (N > 1) and underlay address 192.168.50.N
add_host() {
  local n=$1 ns
  ns=$(ns_of "$n")
  mkdir -p "$H/h$n"
  if ! ip link show ubr >/dev/null 2>&1; then
    lane_modprobe bridge
    ip link add ubr type bridge
    ip link set ubr mtu 1600 up
  fi
  if [ "$n" = 1 ]; then
    ip addr add 192.168.50.1/24 dev ubr
    return
  fi
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "ub$n" type veth peer name uplink netns "$ns"
  ip link set "ub$n" mtu 1600 master ubr up
  ip -n "$ns" addr add "192.168.50.$n/24" dev uplink
  ip -n "$ns" link set uplink mtu 1600 up
}

# start_ovs N HW_OFFLOAD: ovsdb-server (the first time) and ovs-vswitchd of host N, and br-int
start_ovs() {
  local n=$1 d=$H/h$1 ns
  ns=$(ns_of "$n")
  if [ ! -f "$d/conf.db" ]; then
    ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ns_exec "$ns" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --pidfile="$d/ovsdb-server.pid" \
      --unixctl="$d/ovsdb-server.ctl" --log-file="$d/ovsdb-server.log" --detach
    vsctl "$n" --no-wait init
  fi
  if [ "$2" = true ]; then
    vsctl "$n" --no-wait set Open_vSwitch . other_config:hw-offload=true other_config:tc-policy=skip_hw
  else
    vsctl "$n" --no-wait set Open_vSwitch . other_config:hw-offload=false
  fi
  OVS_RUNDIR=$d ns_exec "$ns" bash -c "lane_vswitchd $d"
  vsctl "$n" --may-exist add-br br-int -- set bridge br-int datapath_type=system fail-mode=secure
  lane_vswitchd_check "$d"
}
stop_vswitchd() { ovs-appctl -t "$H/h$1/ovs-vswitchd.ctl" exit --cleanup; }

# mkvm NAME HOST MAC: a "VM" namespace on a veth whose host end (named NAME) is a port of host's br-int
mkvm() {
  local vm=$1 n=$2 mac=$3 ns
  ns=$(ns_of "$n")
  ip netns add "$vm"
  ns_exec "$ns" ip link add "$vm" type veth peer name eth0 netns "$vm"
  ns_exec "$ns" sysctl -qw "net.ipv6.conf.$vm.disable_ipv6=1"
  ns_exec "$ns" ip link set "$vm" up
  ip netns exec "$vm" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip -n "$vm" link set lo up
  ip -n "$vm" link set eth0 address "$mac"
  ip -n "$vm" link set eth0 up
  vsctl "$n" add-port br-int "$vm" -- set interface "$vm" "external_ids:iface-id=$vm"
}

# agent_config N OFFLOAD_JSON [L3_JSON]: $H/agentN.json. Under TCG an agent takes a minute to start, and
# its peers drop a chassis whose liveness lease (3 heartbeats) lapsed: 60 s heartbeats keep a
# restarting agent's chassis alive, as the default 5 s do for an agent that restarts in seconds.
agent_config() {
  local l3=""
  [ -n "${3:-}" ] && l3=", \"l3\": $3"
  cat > "$H/agent$1.json" <<EOF
{"chassis": "host$1", "tunnelIp": "192.168.50.$1", "ovsdb": "unix:$H/h$1/db.sock", "datapathType": "system",
 "nb": "$NB", "metrics": "127.0.0.1:$((9463 + $1))", "logLevel": "info", "heartbeatSeconds": 60, "offload": $2$l3}
EOF
}

# start_nb: the NB's holder, serving $NB on its nb.sock
start_nb() {
  node "$FDO_JS" nb-hold "$NB" >> "$H/nb-holder.log" 2>&1 &
  NB_HOLDER=$!
  PIDS+=($!)
  until grep -q '^holding the NB$' "$H/nb-holder.log" 2>/dev/null; do
    if ! kill -0 "$NB_HOLDER" 2>/dev/null; then
      echo "the NB holder exited before it served $NB:"
      cat "$H/nb-holder.log"
      exit 3
    fi
    sleep 0.2
  done
}

# nb_holder_result: whether start_nb's holder still runs, and how many times an agent held the NB
# itself (an agent serves the NB only when it found no holder: then agents started at once race for it)
nb_holder_result() {
  local alive=false serving
  kill -0 "$NB_HOLDER" 2>/dev/null && alive=true
  serving=$(cat "$H"/agent*.log | grep -c '"msg":"serving the NB store"' || true)
  lane_result nb_holder "{\"alive\": $alive, \"agentsServing\": $serving}"
}

# start_agent N: agent hostN in its namespace; AGENTn is node's pid (a simple command in the
# background, and ip netns exec execs it), so that kill -9 kills the agent itself
start_agent() {
  local ns
  ns=$(ns_of "$1")
  if [ -n "$ns" ]; then
    ip netns exec "$ns" node "$FDO_JS" agent "$H/agent$1.json" >> "$H/agent$1.log" 2>&1 &
  else
    node "$FDO_JS" agent "$H/agent$1.json" >> "$H/agent$1.log" 2>&1 &
  fi
  eval "AGENT$1=$!"
  PIDS+=($!)
}
stop_agent() {
  local pid
  eval "pid=\$AGENT$1"
  kill -TERM "$pid"
  wait "$pid" || true
}

# ping_n NS TO N INTERVAL: N echo requests from namespace NS, as {"sent","received","missing"}
# (echo.py: exactly N requests, and an answer that comes late still counts); TO is split into
# words, so it may carry a source address before the destination ('-I 198.51.100.7 172.24.4.50')
ping_n() {
  ip netns exec "$1" /usr/bin/python3 "$LANE_REPO/test/kernel/scenarios/echo.py" "$3" "$4" $2 ||
    printf '{"sent": %d, "received": 0, "error": "echo.py failed"}' "$3"
}

# counters N DEV…: host N's tc terminal counters on DEV…, OVS's datapath and OpenFlow IPv4 counters, packet-ins
counters() {
  local n=$1 ns
  shift
  ns=$(ns_of "$n")
  ns_exec "$ns" node "$FDO_JS" counters "$H/h$n" "$(metrics_url "$n")" "$@"
}
