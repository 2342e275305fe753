-- The kvmc Lua 5.4 module as a rock, built from this source tree with
-- libkvmc linked into it (nothing else to install):
--   luarocks --lua-version 5.4 make bindings/lua/kvmc-scm-1.rockspec
-- run from the repository's root. Needs cmake, a C compiler, SWIG 4, the
-- Lua 5.4 headers, and libseccomp's and libslirp's (Debian: swig
-- liblua5.4-dev libseccomp-dev libslirp-dev).
rockspec_format = "3.0"
package = "kvmc"
version = "scm-1"
source = {
   url = "git+https://github.com/kvmc/kvmc.git",
}
description = {
   summary = "Create, run and control KVM guests from Lua, without QEMU",
   detailed = [[
Lua bindings to libkvmc: boot a kernel on /dev/kvm, read its console,
pause, snapshot and restore it, and write devices (PIO, MMIO and PCI with
MSI-X) as Lua functions against a real guest driver.]],
   homepage = "https://github.com/kvmc/kvmc",
   license = "MIT",
}
dependencies = {
   "lua == 5.4",
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      KVMC_LUA_ROCK = "ON",
      KVMC_LUA_LMOD = "$(LUADIR)",
      KVMC_LUA_CMOD = "$(LIBDIR)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
   },
}
