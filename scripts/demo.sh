#!/usr/bin/env bash
# The README's first command. Installs what is missing, builds, starts a netmaster on the embedded
# store and a netplugin agent driving its own Open vSwitch, then puts containers (network
# namespaces, plumbed by the real `contiv` CNI plugin) on Contiv networks and shows them talking,
# and two tenants with the same subnet kept apart. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "==> building (release)"
cargo build --release --quiet --bin netmaster --bin netplugin --bin netctl --bin contiv
B=$PWD/target/release

tag="demo$$"
work=$(mktemp -d "/tmp/contiv-$tag.XXXX")
host="${tag}h"; pods=()
cleanup() {
  set +e
  [ -n "${agent_pid:-}" ] && kill "$agent_pid" 2>/dev/null
  [ -n "${master_pid:-}" ] && kill "$master_pid" 2>/dev/null
  for f in vswitchd ovsdb; do [ -f "$work/$f.pid" ] && kill "$(cat "$work/$f.pid")" 2>/dev/null; done
  for p in "${pods[@]}" "$host"; do ip netns del "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
wait_for() { for _ in $(seq 150); do eval "$1" && return 0; sleep 0.1; done; echo "timed out: $1" >&2; exit 1; }

say "==> netmaster (embedded store in $work/data)"
"$B/netmaster" --listen-url 127.0.0.1:0 --listen-unix "$work/netmaster.sock" --data-dir "$work/data" 2>"$work/netmaster.log" &
master_pid=$!
wait_for "[ -S $work/netmaster.sock ]"
export NETMASTER="unix://$work/netmaster.sock"

say "==> a host: network namespace $host with its own Open vSwitch (userspace datapath) and netplugin"
ip netns add "$host"
ip netns exec "$host" ip link set lo up
export OVS_RUNDIR=$work OVS_LOGDIR=$work OVS_DBDIR=$work
ovsdb-tool create "$work/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ip netns exec "$host" ovsdb-server "$work/conf.db" --remote="punix:$work/db.sock" --pidfile="$work/ovsdb.pid" \
  --unixctl="$work/ovsdb.ctl" --log-file="$work/ovsdb.log" --detach 2>/dev/null
ovs-vsctl --db="unix:$work/db.sock" --no-wait init
ip netns exec "$host" ovs-vswitchd "unix:$work/db.sock" --pidfile="$work/vswitchd.pid" --unixctl="$work/vswitchd.ctl" \
  --log-file="$work/vswitchd.log" --detach 2>/dev/null
ip netns exec "$host" "$B/netplugin" --netmaster "$NETMASTER" --host host1 --ovsdb-sock "$work/db.sock" \
  --ovs-rundir "$work" --bridge contivbr --cni-socket "$work/cni.sock" \
  --docker-socket "" --docker-state "$work/docker-driver.json" 2>"$work/netplugin.log" &
agent_pid=$!
wait_for "grep -q 'serving CNI' $work/netplugin.log"
grep -o 'OVS datapath chosen.*' "$work/netplugin.log" | head -1

run() { echo; echo "\$ netctl $*"; "$B/netctl" "$@"; }
say "==> networks, with netctl"
run net create --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net
run tenant create blue
run net create -t blue --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net
run net ls -a

pod() { # pod NAME TENANT: a namespace plumbed by the contiv CNI plugin; prints its address
  local ns="$tag$1"; ip netns add "$ns"; pods+=("$ns")
  printf '{"cniVersion":"1.1.0","name":"contiv","type":"contiv","tenant":"%s","network":"contiv-net","agentSocket":"%s"}' \
    "$2" "$work/cni.sock" | CNI_COMMAND=ADD CNI_CONTAINERID="$ns" CNI_NETNS="/var/run/netns/$ns" CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni "$B/contiv" > "$work/$1.json"
  printf '%-15s %s\n' "$1 ($2):" "$(grep -o '"address": "[^"]*"' "$work/$1.json" | cut -d'"' -f4)"
}
say "==> containers: CNI ADD through the contiv plugin"
pod web default
pod db default
pod x blue

say "==> web pings db over the Contiv network"
ip netns exec "${tag}web" ping -c 3 -i 0.2 10.1.2.3
say "==> TCP: db serves, web fetches"
ip netns exec "${tag}db" sh -c 'echo "hello from db over Contiv" | busybox nc -l -p 8080' &
sleep 0.3
ip netns exec "${tag}web" busybox nc -w 2 10.1.2.3 8080 </dev/null || true
say "==> tenant blue's pod has web's very address (10.1.2.2), yet cannot reach tenant default's db:"
if ip netns exec "${tag}x" ping -c 2 -W 1 10.1.2.3 >/dev/null; then echo "UNEXPECTED: blue reached default"; exit 1; else echo "blue -> 10.1.2.3: no answer (isolated)"; fi
run endpoint inspect "${tag}web"
say "==> Done. Everything started here is being removed."
