/* Callbacks from kvmc's vCPU threads into Lua. One lock per Lua state: the
 * thread running Lua holds it, and lets go only inside calls that wait for
 * vCPUs (wait, pause, destroy). A device callback takes the lock and runs on
 * a coroutine of its own, so the Lua state is never used by two threads;
 * while it runs, in_callback says so, and kvmc.lua refuses close, wait and
 * pause, which would wait for the callback's own thread. */
#ifndef KVMC_LUA_SHIM_H
#define KVMC_LUA_SHIM_H

#include <lua.h>

#include "kvmc/kvmc.h"

/* From the SWIG wrapper: raise a Lua error unless idx holds the handle. */
kvmc_vm *kvmclua_checkvm(lua_State *L, int idx);
kvmc_config *kvmclua_checkconfig(lua_State *L, int idx);

void kvmclua_init(lua_State *L);
void kvmclua_acquire(lua_State *L);
void kvmclua_release(lua_State *L);

int kvmclua_add_mmio_device(lua_State *L);
int kvmclua_add_pio_device(lua_State *L);
int kvmclua_add_pci_device(lua_State *L);
int kvmclua_console_capture(lua_State *L);
int kvmclua_console_text(lua_State *L);
int kvmclua_virtio_console_write(lua_State *L);
int kvmclua_console_input(lua_State *L);
int kvmclua_console_write(lua_State *L);
int kvmclua_console_input_close(lua_State *L);
int kvmclua_callback_error(lua_State *L);
int kvmclua_in_callback(lua_State *L);
int kvmclua_wait(lua_State *L);
int kvmclua_set_kernel_image(lua_State *L);
int kvmclua_read_memory(lua_State *L);
int kvmclua_write_memory(lua_State *L);

#endif
