#!/usr/bin/env bash
# The README's first command. Installs what is missing, builds, and starts a small simulated
# cluster on this machine: a netmaster on the embedded store, and two hosts (network namespaces
# joined by an underlay), each with its own Open vSwitch and netplugin agent. Containers (network
# namespaces plumbed by the real `contiv` CNI plugin) on different hosts talk over one VXLAN
# segment, and two tenants with the same subnet are kept apart. netmaster serves https and
# authenticates every caller (both on by default): netctl logs in over https trusting the CA
# netmaster made, agents (in their namespaces, on netmaster's unix socket) join with the join
# token. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "==> building (release)"
cargo build --release --quiet --bin netmaster --bin netplugin --bin netctl --bin contiv
B=$PWD/target/release

tag="demo$$"
work=$(mktemp -d "/tmp/contiv-$tag.XXXX")
underlay="${tag}u"; hosts=(); pods=(); pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for f in "$work"/*/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  # The tenant routers the agents made are named after their bridges (one per simulated host:
  # simulated hosts share /run/netns, real ones do not).
  for n in "${pods[@]}" "${hosts[@]}" "$underlay" $(ip netns list | grep -o "^contiv-rt-${tag}b[0-9]-[^ ]*"); do
    ip netns del "$n" 2>/dev/null
  done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
wait_for() { for _ in $(seq 200); do eval "$1" && return 0; sleep 0.1; done; echo "timed out: $1" >&2; exit 1; }

say "==> netmaster (embedded store in $work/data), over https, authenticating its callers"
"$B/netmaster" --listen-url 127.0.0.1:0 --listen-unix "$work/netmaster.sock" --data-dir "$work/data" \
  --ready-file "$work/ready" 2>"$work/netmaster.log" &
pids+=($!)
wait_for "[ -s $work/ready ]"
# netctl: https, trusting the cluster CA netmaster made at its first start (with the default data
# dir, /var/lib/contiv, netctl would find it by itself).
export NETMASTER="https://$(cat "$work/ready")" NETCTL_CACERT="$work/data/tls/ca.pem"
echo "serving $NETMASTER; its CA is $NETCTL_CACERT ($(grep -o 'sha256=[0-9A-F:]*' "$work/netmaster.log" | head -1), as logged)"
# netctl keeps its login token in $HOME/.netctl: this demo's own.
export HOME=$work
echo "the first admin's password is in $work/data/admin-credential.json, the agents' join token in $work/data/join-token (both root only)"

say "==> the underlay: a switch that joins the hosts (10.250.0.0/24), and 10.250.0.1 on it: the outside"
ip netns add "$underlay"
ip -n "$underlay" link add br0 type bridge
ip -n "$underlay" link set br0 up
ip -n "$underlay" addr add 10.250.0.1/24 dev br0

host() { # host N: namespace, underlay NIC ul0 = 10.250.0.1N, its own OVS and netplugin
  local n=$1 ns="${tag}h$1" d="$work/host$1" vtep="10.250.0.1$1"
  mkdir -p "$d"; hosts+=("$ns")
  ip netns add "$ns"; ip -n "$ns" link set lo up
  ip -n "$underlay" link add "u$n" type veth peer name ul0 netns "$ns"
  ip -n "$underlay" link set "u$n" master br0 up
  ip -n "$ns" addr add "$vtep/24" dev ul0; ip -n "$ns" link set ul0 up
  (
    export OVS_RUNDIR=$d OVS_LOGDIR=$d OVS_DBDIR=$d
    ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
    ip netns exec "$ns" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --pidfile="$d/ovsdb.pid" \
      --unixctl="$d/ovsdb.ctl" --log-file="$d/ovsdb.log" --detach 2>/dev/null
    ovs-vsctl --db="unix:$d/db.sock" --no-wait init
    ip netns exec "$ns" ovs-vswitchd "unix:$d/db.sock" --pidfile="$d/vswitchd.pid" --unixctl="$d/vswitchd.ctl" \
      --log-file="$d/vswitchd.log" --detach 2>/dev/null
  )
  # The port pool's namespace is made here: one the agent made under `ip netns exec` would go
  # with it (docs/operations.md).
  ip netns add "${ns}pool"; hosts+=("${ns}pool")
  # nsenter, not `ip netns exec`: the agent then shares this shell's mount namespace, as on a real
  # host, so the tenant routers' namespaces it makes under /run/netns are everyone's.
  nsenter --net="/run/netns/$ns" -- "$B/netplugin" --netmaster "unix://$work/netmaster.sock" --host "host$n" --vtep-ip "$vtep" --vtep-intf ul0 \
    --ovsdb-sock "$d/db.sock" --ovs-rundir "$d" --bridge "${tag}b$n" --cni-socket "$d/cni.sock" \
    --port-pool 32 --pool-netns "/run/netns/${ns}pool" \
    --docker-socket "" --docker-state "$d/docker-driver.json" --join-token-file "$work/data/join-token" \
    2>"$d/netplugin.log" &
  pids+=($!)
  wait_for "grep -q 'serving CNI' $d/netplugin.log"
  echo "host$n: VTEP $vtep, $(grep -o 'OVS datapath chosen[^"]*' "$d/netplugin.log" | head -1 | sed 's/\x1b\[[0-9;]*m//g')"
}
say "==> two hosts, each a network namespace with its own Open vSwitch (userspace datapath) and netplugin"
host 1
host 2
wait_for "ovs-vsctl --db=unix:$work/host1/db.sock list-ports ${tag}b1 | grep -q '^vx'"
echo "host1's tunnel to host2: $(ovs-vsctl --db="unix:$work/host1/db.sock" list-ports "${tag}b1" | grep '^vx')"

run() { echo; echo "\$ netctl $*"; "$B/netctl" "$@"; }
say "==> log in as admin (netctl reads the user name and password from stdin when it is not a terminal)"
echo "\$ netctl login"
printf 'admin\n%s\n' "$(sed -n 's/.*"password":"\([^"]*\)".*/\1/p' "$work/data/admin-credential.json")" | "$B/netctl" login
say "==> networks, with netctl"
run net create --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net
run tenant create blue
run net create -t blue --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net
run net ls -a

pod() { # pod NAME TENANT HOST: a namespace plumbed by the contiv CNI plugin on that host
  local ns="$tag$1"; ip netns add "$ns"; pods+=("$ns")
  printf '{"cniVersion":"1.1.0","name":"contiv","type":"contiv","tenant":"%s","network":"contiv-net","agentSocket":"%s"}' \
    "$2" "$work/host$3/cni.sock" | CNI_COMMAND=ADD CNI_CONTAINERID="$ns" CNI_NETNS="/var/run/netns/$ns" CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni "$B/contiv" > "$work/$1.json"
  printf '%-22s %s\n' "$1 ($2, host$3):" "$(grep -o '"address": "[^"]*"' "$work/$1.json" | cut -d'"' -f4)"
}
say "==> containers: CNI ADD through the contiv plugin, on both hosts"
pod web default 1
pod db default 2
pod x blue 1
pod y blue 2

say "==> web (host1) pings db (host2): one L2 segment over VXLAN, one hop"
ip netns exec "${tag}web" ping -c 3 -i 0.2 10.1.2.3
ip netns exec "${tag}web" busybox traceroute -n -m 3 -w 1 10.1.2.3
say "==> TCP across hosts: db serves, web fetches"
ip netns exec "${tag}db" sh -c 'echo "hello from db on host2, over Contiv" | busybox nc -l -p 8080' &
wait_for "ip netns exec ${tag}db busybox netstat -ltn | grep -q ':8080'"
ip netns exec "${tag}web" busybox nc -w 2 10.1.2.3 8080 </dev/null || true
say "==> tenant blue has the very same addresses (x = 10.1.2.2 on host1, y = 10.1.2.3 on host2):"
ip netns exec "${tag}x" ping -c 2 -i 0.2 10.1.2.3 | tail -2
before=$(ip netns exec "${tag}db" cat /sys/class/net/eth0/statistics/rx_packets)
ip netns exec "${tag}x" ping -c 3 -i 0.2 -q 10.1.2.3 >/dev/null
after=$(ip netns exec "${tag}db" cat /sys/class/net/eth0/statistics/rx_packets)
echo "packets tenant default's db received while blue's x pinged 10.1.2.3: $((after - before))"
say "==> out of the network: the gateway (answered on every host), the host, the outside"
for p in web x; do
  for dst in 10.1.2.1 10.250.0.11 10.250.0.1; do
    printf '%-4s -> %-12s %s\n' "$p" "$dst" "$(ip netns exec "$tag$p" ping -c 1 -W 2 "$dst" | grep -o '[0-9]* received')"
  done
done
echo "(web and x have the same address, 10.1.2.2, in two tenants: each tenant has its own router"
echo " namespace on the host, and the outside sees the host's address: $(ip netns exec "${tag}h1" iptables -t nat -S CONTIV-POSTROUTING | grep -c MASQUERADE) masquerade rule(s) in CONTIV-POSTROUTING)"
say "==> host1 reaches the pod it runs (what kubelet's probes need): web by its pod address"
ip netns exec "${tag}h1" ping -c 2 -i 0.2 10.1.2.2 | tail -2
run endpoint inspect "${tag}web"
say "==> Done. Everything started here is being removed."
