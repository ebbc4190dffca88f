#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, starts a netmaster on the embedded
# store and walks through Contiv's basics with netctl. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "==> building (release)"
cargo build --release --quiet --bin netmaster --bin netctl

work=$(mktemp -d /tmp/contiv-demo.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [ -n "${master_pid:-}" ] && kill "$master_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

./target/release/netmaster --listen-url "127.0.0.1:$port" --data-dir "$work" 2>"$work/netmaster.log" &
master_pid=$!
export NETMASTER="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$NETMASTER/version" >/dev/null && break; sleep 0.1; done

run() { echo; echo "\$ netctl $*"; ./target/release/netctl "$@"; }
run global info
run tenant create blue
run net create --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net
run net create -t blue --subnet=10.1.2.0/24 --gateway=10.1.2.1 contiv-net
run net ls -a
echo; echo "\$ curl -X POST $NETMASTER/api/v1/endpoints/ (what the agent does for a pod)"
for t in default blue; do
  curl -s -X POST "$NETMASTER/api/v1/endpoints/" \
    -d "{\"endpointID\":\"demo-$t\",\"tenantName\":\"$t\",\"networkName\":\"contiv-net\",\"host\":\"demo\"}"
  echo
done
echo; echo "\$ curl $NETMASTER/api/v1/inspect/networks/blue:contiv-net/"
curl -s "$NETMASTER/api/v1/inspect/networks/blue:contiv-net/"; echo
echo; echo "Both tenants use 10.1.2.0/24 and got 10.1.2.2: their networks are isolated."
