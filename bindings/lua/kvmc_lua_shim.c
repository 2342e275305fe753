#include "kvmc_lua_shim.h"

#include <lauxlib.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <stdbool.h>
#include <stdio.h>

struct lua_owner {
    pthread_mutex_t lock;
    char error[512]; /* first error raised by a Lua callback */
};

static const char OWNER_KEY = 'k';

static struct lua_owner *owner(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &OWNER_KEY);
    struct lua_owner *o = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return o;
}

void kvmclua_init(lua_State *L)
{
    if (owner(L))
        return;
    struct lua_owner *o = lua_newuserdatauv(L, sizeof(*o), 0);
    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->lock, NULL);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &OWNER_KEY);
    pthread_mutex_lock(&o->lock); /* the loading thread runs Lua: it holds it */
}

void kvmclua_acquire(lua_State *L) { pthread_mutex_lock(&owner(L)->lock); }
void kvmclua_release(lua_State *L) { pthread_mutex_unlock(&owner(L)->lock); }

/* ------------------------------------------------------------- devices */

struct lua_device {
    struct lua_owner *owner;
    kvmc_vm *vm;
    lua_State *co;  /* coroutine the callbacks run on */
    int read_ref, write_ref, co_ref;
};

static void record_error(struct lua_device *d, const char *what)
{
    if (!d->owner->error[0])
        snprintf(d->owner->error, sizeof(d->owner->error), "%s", what);
    kvmc_vm_stop(d->vm);
}

static uint64_t lua_device_read(void *opaque, uint64_t offset, unsigned size)
{
    struct lua_device *d = opaque;
    uint64_t value = ~0ull;
    if (d->read_ref == LUA_NOREF)
        return value;
    pthread_mutex_lock(&d->owner->lock);
    lua_State *co = d->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, d->read_ref);
    lua_pushinteger(co, (lua_Integer)offset);
    lua_pushinteger(co, (lua_Integer)size);
    if (lua_pcall(co, 2, 1, 0) != LUA_OK) {
        record_error(d, lua_tostring(co, -1));
    } else {
        int ok = 0;
        lua_Integer v = lua_tointegerx(co, -1, &ok);
        if (ok)
            value = (uint64_t)v;
        else
            record_error(d, "device read function did not return an integer");
    }
    lua_settop(co, 0);
    pthread_mutex_unlock(&d->owner->lock);
    return value;
}

static void lua_device_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct lua_device *d = opaque;
    if (d->write_ref == LUA_NOREF)
        return;
    pthread_mutex_lock(&d->owner->lock);
    lua_State *co = d->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, d->write_ref);
    lua_pushinteger(co, (lua_Integer)offset);
    lua_pushinteger(co, (lua_Integer)size);
    lua_pushinteger(co, (lua_Integer)value);
    if (lua_pcall(co, 3, 0, 0) != LUA_OK)
        record_error(d, lua_tostring(co, -1));
    lua_settop(co, 0);
    pthread_mutex_unlock(&d->owner->lock);
}

static const kvmc_device_ops lua_device_ops = {.read = lua_device_read,
                                               .write = lua_device_write};

/* The device lives in a userdata the caller must keep until the VM is
 * destroyed (kvmc.lua keeps it in the VM object). */
static int lua_device_gc(lua_State *L)
{
    struct lua_device *d = lua_touserdata(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, d->read_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, d->write_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, d->co_ref);
    d->read_ref = d->write_ref = d->co_ref = LUA_NOREF;
    return 0;
}

static int optional_function_ref(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx))
        return LUA_NOREF;
    luaL_checktype(L, idx, LUA_TFUNCTION);
    lua_pushvalue(L, idx);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* add_*_device(vm, base, size, read_fn|nil, write_fn|nil) -> device, err */
static int add_device(lua_State *L, bool mmio)
{
    kvmc_vm *vm = kvmclua_checkvm(L, 1);
    lua_Integer base = luaL_checkinteger(L, 2), size = luaL_checkinteger(L, 3);
    struct lua_device *d = lua_newuserdatauv(L, sizeof(*d), 0);
    memset(d, 0, sizeof(*d));
    d->owner = owner(L);
    d->vm = vm;
    d->read_ref = optional_function_ref(L, 4);
    d->write_ref = optional_function_ref(L, 5);
    d->co = lua_newthread(L);
    d->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (luaL_newmetatable(L, "kvmc.lua_device")) {
        lua_pushcfunction(L, lua_device_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    int rc = mmio ? kvmc_vm_add_mmio_device(vm, (uint64_t)base, (uint64_t)size,
                                            &lua_device_ops, d)
                  : kvmc_vm_add_pio_device(vm, (uint16_t)base, (uint16_t)size,
                                           &lua_device_ops, d);
    if (rc != KVMC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, kvmc_last_error());
        return 2;
    }
    return 1;
}

int kvmclua_add_mmio_device(lua_State *L) { return add_device(L, true); }
int kvmclua_add_pio_device(lua_State *L) { return add_device(L, false); }

int kvmclua_callback_error(lua_State *L)
{
    struct lua_owner *o = owner(L);
    if (!o->error[0])
        return 0;
    lua_pushstring(L, o->error);
    o->error[0] = '\0';
    return 1;
}

/* -------------------------------------------------------------- console */

struct console_buffer {
    pthread_mutex_t lock;
    char *data;
    size_t len, cap;
};

static void console_append(void *opaque, const uint8_t *data, size_t len)
{
    struct console_buffer *b = opaque;
    pthread_mutex_lock(&b->lock);
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            pthread_mutex_unlock(&b->lock);
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    pthread_mutex_unlock(&b->lock);
}

static int console_gc(lua_State *L)
{
    struct console_buffer *b = lua_touserdata(L, 1);
    free(b->data);
    b->data = NULL;
    return 0;
}

/* console_capture(cfg [, "virtio"]) -> buffer: the VM's serial console (or
 * with "virtio", its virtio-console) goes into buffer. */
int kvmclua_console_capture(lua_State *L)
{
    kvmc_config *cfg = kvmclua_checkconfig(L, 1);
    const char *which = luaL_optstring(L, 2, "serial");
    bool virtio = strcmp(which, "virtio") == 0;
    if (!virtio && strcmp(which, "serial") != 0)
        return luaL_error(L, "console_capture: %s is not serial or virtio", which);
    struct console_buffer *b = lua_newuserdatauv(L, sizeof(*b), 0);
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    if (luaL_newmetatable(L, "kvmc.console_buffer")) {
        lua_pushcfunction(L, console_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (virtio)
        kvmc_config_set_virtio_console_callback(cfg, console_append, b);
    else
        kvmc_config_set_console_callback(cfg, console_append, b);
    return 1;
}

/* virtio_console_write(vm, data) -> bytes queued, or nil, message. */
int kvmclua_virtio_console_write(lua_State *L)
{
    kvmc_vm *vm = kvmclua_checkvm(L, 1);
    size_t len, written = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    if (kvmc_vm_virtio_console_write(vm, data, len, &written) != KVMC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, kvmc_last_error());
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)written);
    return 1;
}

int kvmclua_console_text(lua_State *L)
{
    struct console_buffer *b = luaL_checkudata(L, 1, "kvmc.console_buffer");
    pthread_mutex_lock(&b->lock);
    lua_pushlstring(L, b->data ? b->data : "", b->len);
    pthread_mutex_unlock(&b->lock);
    return 1;
}

/* ------------------------------------------------------- guest memory */

int kvmclua_read_memory(lua_State *L)
{
    kvmc_vm *vm = kvmclua_checkvm(L, 1);
    lua_Integer gpa = luaL_checkinteger(L, 2), len = luaL_checkinteger(L, 3);
    luaL_argcheck(L, len >= 0 && len <= (1 << 26), 3, "length out of range");
    luaL_Buffer buf;
    char *p = luaL_buffinitsize(L, &buf, (size_t)len);
    if (kvmc_vm_read_memory(vm, (uint64_t)gpa, p, (size_t)len) != KVMC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, kvmc_last_error());
        return 2;
    }
    luaL_pushresultsize(&buf, (size_t)len);
    return 1;
}

int kvmclua_write_memory(lua_State *L)
{
    kvmc_vm *vm = kvmclua_checkvm(L, 1);
    lua_Integer gpa = luaL_checkinteger(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    if (kvmc_vm_write_memory(vm, (uint64_t)gpa, data, len) != KVMC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, kvmc_last_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}
