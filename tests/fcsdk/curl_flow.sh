#!/usr/bin/env bash
# Runs the README's curl flow (between <!-- curl-flow --> and
# <!-- /curl-flow -->) against kvmc-firecracker, with the test guest as the
# kernel (it waits for Ctrl-Alt-Del, then resets), a scratch disk, and a
# directory of its own instead of /tmp. Checks what the block prints.
# usage: curl_flow.sh KVMC_FIRECRACKER TEST_GUEST_ELF
set -euo pipefail
fc_bin=$(realpath "$1") guest=$(realpath "$2")
readme="$(dirname "$0")/../../README.md"
tmp=$(mktemp -d /tmp/kvmc-curl-XXXXXX)
# A block that fails half-way leaves its kvmc-firecracker running: end it.
trap 'pkill -f -- "--api-sock $tmp/" || true; rm -rf "$tmp"' EXIT
truncate -s 1M "$tmp/rootfs.ext4"
block=$(awk '/<!-- curl-flow -->/ {on=1; next} /<!-- \/curl-flow -->/ {on=0} on' "$readme" |
        grep -v '^```')
[ -n "$block" ] || { echo "curl_flow: no curl-flow block in $readme" >&2; exit 1; }
grep -q '^KERNEL=' <<<"$block" || { echo "curl_flow: the block sets no KERNEL" >&2; exit 1; }
script=$(sed -e "s#/tmp/#$tmp/#g" -e "s#^kvmc-firecracker #$fc_bin #" \
             -e "s#^KERNEL=.*#KERNEL=$guest ARGS=kvmc.test=kbd DISK=$tmp/rootfs.ext4#" <<<"$block")
(cd "$tmp" && timeout 60 bash -euo pipefail -c "$script" >"$tmp/out" 2>&1) ||
    { echo "curl_flow: the README's block failed:"; cat "$tmp/out"; exit 1; } >&2
out=$(cat "$tmp/out")
for want in '"state":"Running"' 'kbd: waiting for ctrl-alt-del' \
            'kbd: ctrl-alt-del pressed, resetting' 'kvmc-firecracker: exit status 0'; do
    grep -qF "$want" <<<"$out" || { echo "curl_flow: no '$want' in:"; echo "$out"; exit 1; } >&2
done
[ -f "$tmp/kvmc-fc-snap/state" ] && [ "$tmp/kvmc-fc-snap.mem" -ef "$tmp/kvmc-fc-snap/memory" ] ||
    { echo "curl_flow: no snapshot at $tmp/kvmc-fc-snap" >&2; exit 1; }
echo "the README's curl flow: booted, paused, saved, resumed, Ctrl-Alt-Del, exit status 0"
