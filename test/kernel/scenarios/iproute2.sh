# Scenario "iproute2": proves the lane itself with iproute2's own tc.
# Two namespaces (the "VMs") on veth pairs whose root-namespace ends ra/rb are
# the "representors"; flower rules with skip_hw (the NIC's stand-in) redirect
# between them with mirred. Pings from a to b must hit the ICMP rule.
ip netns add lane_a
ip netns add lane_b
ip link add ra type veth peer name eth0 netns lane_a
ip link add rb type veth peer name eth0 netns lane_b
ip -n lane_a link set lo up
ip -n lane_b link set lo up
ip -n lane_a addr add 10.77.0.1/24 dev eth0
ip -n lane_b addr add 10.77.0.2/24 dev eth0
ip -n lane_a link set eth0 up
ip -n lane_b link set eth0 up
ip link set ra up
ip link set rb up
tc qdisc add dev ra ingress
tc qdisc add dev rb ingress
tc filter add dev ra ingress pref 10 protocol ip flower skip_hw ip_proto icmp dst_ip 10.77.0.2 \
  action mirred egress redirect dev rb
tc filter add dev ra ingress pref 20 protocol all flower skip_hw action mirred egress redirect dev rb
tc filter add dev rb ingress pref 20 protocol all flower skip_hw action mirred egress redirect dev ra
ping_out=$(ip netns exec lane_a ping -c 5 -i 0.2 -W 2 10.77.0.2 2>&1) && ping_rc=0 || ping_rc=$?
echo "$ping_out"
lane_result ping "{\"rc\": $ping_rc}"
lane_result ra_filters "$(tc -s -j filter show dev ra ingress)"
lane_result rb_filters "$(tc -s -j filter show dev rb ingress)"
tc -s filter show dev ra ingress
