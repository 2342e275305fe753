#!/usr/bin/env bash
# Installs kvmc from BUILD_DIR into a scratch prefix and builds a consumer
# with pkg-config and with find_package(kvmc); both must run.
set -euo pipefail
build=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d /tmp/kvmc-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libkvmc.so.0' | head -1)")
test -L "$libdir/libkvmc.so" && test -e "$libdir/libkvmc.a" && test -e "$prefix/bin/kvmc"
readelf -d "$libdir/libkvmc.so.0" | grep -q 'SONAME.*libkvmc.so.0'
if nm -D --defined-only "$libdir/libkvmc.so.0" | awk '{print $3}' | grep -v '^kvmc_' | grep -v '^KVMC_' | grep -q .; then
    echo "libkvmc exports symbols outside the kvmc_ namespace" >&2; exit 1
fi
# Each release's additions stay in their own version node (core/libkvmc.map).
symbols=$(objdump -T "$libdir/libkvmc.so.0" | awk 'NF >= 2 {print $(NF-1), $NF}')
for want in "KVMC_0.1 kvmc_vm_create" "KVMC_0.2 kvmc_config_add_net" "KVMC_0.3 kvmc_config_set_pit"; do
    grep -qx "$want" <<<"$symbols" ||
        { echo "libkvmc.so.0 lacks $want" >&2; exit 1; }
done
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -o "$prefix/consumer-pc" "$here/consumer.c" $(pkg-config --cflags --libs kvmc)
LD_LIBRARY_PATH="$libdir" "$prefix/consumer-pc"
cmake -S "$here" -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$prefix/consumer-build/consumer"
"$prefix/bin/kvmc" version
echo "install: ok (pkg-config, find_package, soname libkvmc.so.0, kvmc_ symbols only, version nodes 0.1-0.3)"
