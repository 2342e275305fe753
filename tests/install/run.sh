#!/usr/bin/env bash
# Installs kvmc from BUILD_DIR into a scratch prefix and builds a consumer
# with pkg-config and with find_package(kvmc); both must run.
set -euo pipefail
build=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d /tmp/kvmc-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(find "$prefix" -name 'libkvmc.so.1' | head -1)
libdir=$(dirname "$lib")
test -L "$libdir/libkvmc.so" && test -e "$libdir/libkvmc.a" && test -e "$prefix/bin/kvmc"
readelf -d "$lib" | grep -q 'SONAME.*libkvmc.so.1'
if nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^kvmc_' | grep -v '^KVMC_' | grep -q .; then
    echo "libkvmc exports symbols outside the kvmc_ namespace" >&2; exit 1
fi
# The exports are exactly the header's KVMC_API functions, each under a
# version node (core/libkvmc.map).
header=$(grep -ho 'KVMC_API [^(]*(' "$prefix"/include/kvmc/*.h | grep -o 'kvmc_[a-z0-9_]*($' |
         tr -d '(' | sort -u)
exported=$(objdump -T "$lib" | awk '$NF ~ /^kvmc_/ && $(NF-1) ~ /^KVMC_1\./ {print $NF}' | sort -u)
if [ "$header" != "$exported" ]; then
    echo "libkvmc.so.1 exports and kvmc.h disagree:" >&2
    diff <(echo "$header") <(echo "$exported") >&2 || true
    exit 1
fi
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -o "$prefix/consumer-pc" "$here/consumer.c" $(pkg-config --cflags --libs kvmc)
LD_LIBRARY_PATH="$libdir" "$prefix/consumer-pc"
cmake -S "$here" -B "$prefix/consumer-build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer-build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$prefix/consumer-build/consumer"
"$prefix/bin/kvmc" version
echo "install: ok (pkg-config, find_package, soname libkvmc.so.1, exports = the header's $(wc -l <<<"$header") functions, all versioned)"
