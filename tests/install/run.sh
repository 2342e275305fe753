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
# pkg-config's flags carry an rpath outside the linker's own directories:
# the consumer runs with nothing set.
env -u LD_LIBRARY_PATH "$prefix/consumer-pc" >/dev/null

# The man page: installed, and it names every option of `kvmc run --help`.
man1="$prefix/share/man/man1/kvmc.1"
test -s "$man1" || { echo "no man page at $man1 (scdoc missing?)" >&2; exit 1; }
options=$("$prefix/bin/kvmc" run --help | grep -oE '^ +(-[a-zA-Z], )?--[a-z-]+' |
          grep -oE -- '--[a-z-]+' | sort -u)
for opt in $options; do
    grep -qF -- "\\fB$opt\\fR" "$man1" || { echo "kvmc(1) lacks $opt" >&2; exit 1; }
done
# kvmc-firecracker: installed, runs from the prefix, and its page names
# every option of its --help.
"$prefix/bin/kvmc-firecracker" --version | grep -q '^Firecracker v[0-9.]* (kvmc ' ||
    { echo "the installed kvmc-firecracker --version is not Firecracker's form" >&2; exit 1; }
fcman="$prefix/share/man/man1/kvmc-firecracker.1"
test -s "$fcman" || { echo "no man page at $fcman" >&2; exit 1; }
options=$("$prefix/bin/kvmc-firecracker" --help | grep -oE '^ +(-[a-zA-Z], )?--[a-z-]+' |
          grep -oE -- '--[a-z-]+' | sort -u)
for opt in $options; do
    grep -qF -- "\\fB$opt\\fR" "$fcman" || { echo "kvmc-firecracker(1) lacks $opt" >&2; exit 1; }
done

# Lua: kvmc.lua and the kvmc_core module where lua5.4 looks under the
# prefix (for /usr/local, its default path); require works from any
# directory, with no LD_LIBRARY_PATH.
guest=$build/tests/guests/kvmc-test-guest.elf
lua_check='local kvmc = require("kvmc")
local vm = assert(kvmc.vm{kernel = os.getenv("KVMC_GUEST"), memory = "16M"})
assert(vm:start())
local exit = assert(vm:wait(10))
assert(exit.reason == "poweroff", exit.reason)
print("lua: kvmc " .. kvmc.version() .. ", the test guest powered off")'
if [ -d "$build/bindings/lua" ]; then
    test -f "$prefix/share/lua/5.4/kvmc.lua" && test -f "$prefix/lib/lua/5.4/kvmc_core.so"
    (cd / && env -u LD_LIBRARY_PATH LUA_PATH="$prefix/share/lua/5.4/?.lua;;" \
        LUA_CPATH="$prefix/lib/lua/5.4/?.so;;" KVMC_GUEST="$guest" lua5.4 -e "$lua_check")
    # The rock: luarocks make builds and installs it, libkvmc inside.
    if command -v luarocks >/dev/null; then
        (cd "$here/../.." && luarocks --lua-version 5.4 --tree "$prefix/rocks" make \
            bindings/lua/kvmc-scm-1.rockspec >"$prefix/rock.log" 2>&1) ||
            { cat "$prefix/rock.log" >&2; exit 1; }
        (cd / && eval "$(luarocks --lua-version 5.4 --tree "$prefix/rocks" path)" &&
            env -u LD_LIBRARY_PATH KVMC_GUEST="$guest" lua5.4 -e "$lua_check") | sed 's/^lua:/luarocks:/'
    else
        echo "luarocks missing: the rock is not checked" >&2; exit 1
    fi
fi

# Go: a module of its own, outside the tree, uses the binding (by a
# replace: it is not published) and builds against the installed library
# with PKG_CONFIG_PATH alone; the program runs from / with nothing set.
if command -v go >/dev/null; then
    gomod="$prefix/gomod"
    mkdir -p "$gomod"
    printf 'module example.com/kvmcuser\n\ngo 1.21\n\nrequire github.com/kvmc/kvmc/bindings/go v0.0.0\n\nreplace github.com/kvmc/kvmc/bindings/go => %s\n' \
        "$(cd "$here/../../bindings/go" && pwd)" >"$gomod/go.mod"
    cp "$here/gouser.go" "$gomod/main.go"
    # A build cache of its own: with the shared one, a later `go run` against
    # the build tree linked with this (deleted) prefix's -L from the cache
    # (seen in CI), so the flags pkg-config printed are not all of the key.
    (cd "$gomod" && env -u CGO_CFLAGS -u CGO_LDFLAGS PKG_CONFIG_PATH="$libdir/pkgconfig" \
        GOCACHE="$prefix/gocache" GOFLAGS=-modcacherw go build -o "$prefix/gouser" .)
    (cd / && env -u LD_LIBRARY_PATH "$prefix/gouser" "$guest")
fi
echo "install: ok (pkg-config, find_package, soname libkvmc.so.1, exports = the header's $(wc -l <<<"$header") functions, all versioned; man pages; kvmc-firecracker; Lua module and rock; Go through pkg-config)"
