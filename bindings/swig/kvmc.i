/* SWIG interface for libkvmc, generated from the public header. Every SWIG
 * language gets the plain C API; callbacks into the target language need a
 * small language-specific shim (Lua: bindings/lua/kvmc_lua_shim.c). */
%module kvmc_core

%{
#include "kvmc/kvmc.h"
#ifdef SWIGLUA
#include "kvmc_lua_shim.h"
#endif
%}

%include <stdint.i>

/* kvmc_config_new(&cfg) / kvmc_vm_create(cfg, &vm): the handle becomes a
 * second return value. */
%typemap(in, numinputs=0) kvmc_config **out (kvmc_config *tmp = NULL) { $1 = &tmp; }
%typemap(argout) kvmc_config **out {
    SWIG_NewPointerObj(L, *$1, $descriptor(kvmc_config *), 0); SWIG_arg++;
}
%typemap(in, numinputs=0) kvmc_vm **out (kvmc_vm *tmp = NULL) { $1 = &tmp; }
%typemap(argout) kvmc_vm **out {
    SWIG_NewPointerObj(L, *$1, $descriptor(kvmc_vm *), 0); SWIG_arg++;
}

/* Function-pointer setters need a shim per language. */
%ignore kvmc_config_set_console_callback;
%ignore kvmc_config_set_virtio_console_callback;
%ignore kvmc_vm_virtio_console_write;
%ignore kvmc_vm_set_event_callback;
%ignore kvmc_vm_add_pio_device;
%ignore kvmc_vm_add_mmio_device;
%ignore kvmc_config_set_kernel_image;
%ignore kvmc_vm_read_memory;
%ignore kvmc_vm_write_memory;
%ignore kvmc_device_ops;

#ifdef SWIGLUA
/* Calls that wait for vCPU threads let go of the Lua state, so a device
 * callback written in Lua can run meanwhile. */
%exception kvmc_vm_wait { kvmclua_release(L); $action kvmclua_acquire(L); }
%exception kvmc_vm_pause { kvmclua_release(L); $action kvmclua_acquire(L); }
%exception kvmc_vm_destroy { kvmclua_release(L); $action kvmclua_acquire(L); }

%native(add_mmio_device) int kvmclua_add_mmio_device(lua_State *L);
%native(add_pio_device) int kvmclua_add_pio_device(lua_State *L);
%native(console_capture) int kvmclua_console_capture(lua_State *L);
%native(console_text) int kvmclua_console_text(lua_State *L);
%native(virtio_console_write) int kvmclua_virtio_console_write(lua_State *L);
%native(callback_error) int kvmclua_callback_error(lua_State *L);
%native(read_memory) int kvmclua_read_memory(lua_State *L);
%native(write_memory) int kvmclua_write_memory(lua_State *L);

/* Unwrapping SWIG's pointers for the shim (SWIG's helpers are static). */
%wrapper %{
kvmc_vm *kvmclua_checkvm(lua_State *L, int idx)
{
    void *p = NULL;
    if (!SWIG_IsOK(SWIG_ConvertPtr(L, idx, &p, SWIGTYPE_p_kvmc_vm, 0)) || !p)
        luaL_error(L, "argument %d is not a kvmc VM", idx);
    return p;
}
kvmc_config *kvmclua_checkconfig(lua_State *L, int idx)
{
    void *p = NULL;
    if (!SWIG_IsOK(SWIG_ConvertPtr(L, idx, &p, SWIGTYPE_p_kvmc_config, 0)) || !p)
        luaL_error(L, "argument %d is not a kvmc config", idx);
    return p;
}
%}

%init %{
    kvmclua_init(L);
%}
#endif

%include "kvmc/version.h"
%include "kvmc/kvmc.h"
