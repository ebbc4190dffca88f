#!/usr/bin/env bash
# Builds the directory `docker plugin create` takes: config.json and a rootfs holding netplugin,
# ovs-ofctl (the agent programs flows with it) and the shared libraries both need, copied from
# this machine. Usage: build-plugin.sh OUTDIR [NETPLUGIN_BINARY]
#   then: docker plugin create contiv/netplugin OUTDIR && docker plugin enable contiv/netplugin
set -euo pipefail
out=${1:?usage: build-plugin.sh OUTDIR [NETPLUGIN_BINARY]}
bin=${2:-$(command -v netplugin || echo target/release/netplugin)}
here=$(cd "$(dirname "$0")" && pwd)
ofctl=$(command -v ovs-ofctl) || { echo "build-plugin: ovs-ofctl not found (install openvswitch-switch)" >&2; exit 1; }
[ -x "$bin" ] || { echo "build-plugin: netplugin binary '$bin' not found (cargo build --release -p netplugin)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/rootfs/usr/bin" "$out/rootfs/tmp" "$out/rootfs/run/docker/plugins" \
  "$out/rootfs/var/run/openvswitch" "$out/rootfs/run/contiv" "$out/rootfs/var/lib/contiv" "$out/rootfs/etc/contiv"
cp "$here/config.json" "$out/config.json"
cp "$bin" "$out/rootfs/usr/bin/netplugin"
cp "$ofctl" "$out/rootfs/usr/bin/ovs-ofctl"
# The dynamic loader and every library either binary links, at their own paths.
for f in "$bin" "$ofctl"; do
  ldd "$f" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$out/rootfs$(dirname "$lib")"
    cp -L "$lib" "$out/rootfs$lib"
  done
done
echo "plugin directory ready: $out"
