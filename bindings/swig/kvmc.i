/* SWIG interface for libkvmc, generated from the public header. Every SWIG
 * language gets the plain C API; what needs a target language's own code
 * (typemaps that push its values, callbacks into it) sits in that
 * language's block below (Lua: this file plus bindings/lua/kvmc_lua_shim.c). */
%module kvmc_core

%{
#include "kvmc/kvmc.h"
#ifdef SWIGLUA
#include "kvmc_lua_shim.h"
#endif
%}

%include <stdint.i>

/* Function-pointer setters and raw buffers need a shim per language. */
%ignore kvmc_config_set_console_callback;
%ignore kvmc_config_set_virtio_console_callback;
%ignore kvmc_config_set_vsock_connector;
%ignore kvmc_vm_virtio_console_write;
%ignore kvmc_vm_set_event_callback;
%ignore kvmc_vm_add_pio_device;
%ignore kvmc_vm_add_mmio_device;
%ignore kvmc_config_set_kernel_image;
%ignore kvmc_vm_read_memory;
%ignore kvmc_vm_write_memory;
%ignore kvmc_device_ops;
%ignore kvmc_vm_add_pci_device;
%ignore kvmc_pci_device;
%ignore kvmc_pci_bar;

#ifdef SWIGLUA
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

/* Integers are Lua integers both ways (SWIG's defaults go through
 * lua_Number: 7.0 instead of 7, and 64-bit registers lose their low bits).
 * Values that do not fit the C type are an error, not truncated. */
%typemap(out) int, unsigned, int32_t, uint32_t, uint16_t, uint64_t, kvmc_vm_state,
              kvmc_exit_reason, kvmc_error
    %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}
%typemap(in) uint64_t %{ $1 = (uint64_t)luaL_checkinteger(L, $input); %}
%typemap(in) int, int32_t %{
    {
        lua_Integer v = luaL_checkinteger(L, $input);
        luaL_argcheck(L, v >= INT32_MIN && v <= INT32_MAX, $input, "out of range");
        $1 = ($1_ltype)v;
    }
%}
%typemap(in) unsigned, uint32_t %{
    {
        lua_Integer v = luaL_checkinteger(L, $input);
        luaL_argcheck(L, v >= 0 && v <= (lua_Integer)UINT32_MAX, $input, "out of range");
        $1 = ($1_ltype)v;
    }
%}
%typemap(in) uint16_t %{
    {
        lua_Integer v = luaL_checkinteger(L, $input);
        luaL_argcheck(L, v >= 0 && v <= 0xffff, $input, "out of range");
        $1 = (uint16_t)v;
    }
%}

/* Calls that wait for vCPU threads let go of the Lua state, so a device
 * callback written in Lua can run meanwhile. */
%exception kvmc_vm_wait { kvmclua_release(L); $action kvmclua_acquire(L); }
%exception kvmc_vm_pause { kvmclua_release(L); $action kvmclua_acquire(L); }
%exception kvmc_vm_destroy { kvmclua_release(L); $action kvmclua_acquire(L); }

/* core.kvmc_stats() comes with its size set, as KVMC_STATS_INIT does. */
%extend kvmc_stats {
    kvmc_stats() {
        kvmc_stats *s = calloc(1, sizeof(*s));
        if (s)
            s->size = sizeof(*s);
        return s;
    }
}

%native(add_mmio_device) int kvmclua_add_mmio_device(lua_State *L);
%native(add_pio_device) int kvmclua_add_pio_device(lua_State *L);
%native(add_pci_device) int kvmclua_add_pci_device(lua_State *L);
%native(console_capture) int kvmclua_console_capture(lua_State *L);
%native(console_text) int kvmclua_console_text(lua_State *L);
%native(console_input) int kvmclua_console_input(lua_State *L);
%native(console_write) int kvmclua_console_write(lua_State *L);
%native(console_input_close) int kvmclua_console_input_close(lua_State *L);
%native(virtio_console_write) int kvmclua_virtio_console_write(lua_State *L);
%native(callback_error) int kvmclua_callback_error(lua_State *L);
%native(in_callback) int kvmclua_in_callback(lua_State *L);
%native(wait) int kvmclua_wait(lua_State *L);
%native(read_memory) int kvmclua_read_memory(lua_State *L);
%native(write_memory) int kvmclua_write_memory(lua_State *L);
%native(set_kernel_image) int kvmclua_set_kernel_image(lua_State *L);

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
