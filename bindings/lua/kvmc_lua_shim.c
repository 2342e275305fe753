#include "kvmc_lua_shim.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct lua_owner {
    pthread_mutex_t lock;
    bool in_callback; /* a device callback holds the lock and runs Lua */
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
    d->owner->in_callback = true;
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
    d->owner->in_callback = false;
    pthread_mutex_unlock(&d->owner->lock);
    return value;
}

static void lua_device_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct lua_device *d = opaque;
    if (d->write_ref == LUA_NOREF)
        return;
    pthread_mutex_lock(&d->owner->lock);
    d->owner->in_callback = true;
    lua_State *co = d->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, d->write_ref);
    lua_pushinteger(co, (lua_Integer)offset);
    lua_pushinteger(co, (lua_Integer)size);
    lua_pushinteger(co, (lua_Integer)value);
    if (lua_pcall(co, 3, 0, 0) != LUA_OK)
        record_error(d, lua_tostring(co, -1));
    lua_settop(co, 0);
    d->owner->in_callback = false;
    pthread_mutex_unlock(&d->owner->lock);
}

static const kvmc_device_ops lua_device_ops = {.version = KVMC_DEVICE_OPS_VERSION,
                                              .read = lua_device_read,
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
    if (!mmio) {
        luaL_argcheck(L, base >= 0 && base <= 0xffff, 2, "a port is 0 to 0xffff");
        luaL_argcheck(L, size >= 1 && size <= 0x10000 - base, 3, "ports past 0xffff");
    }
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

/* ---------------------------------------------------------- PCI devices */

/* A PCI device's functions get the BAR number (from 0) before the offset. */
static uint64_t lua_pci_read(void *opaque, unsigned bar, uint64_t offset, unsigned size)
{
    struct lua_device *d = opaque;
    uint64_t value = ~0ull;
    if (d->read_ref == LUA_NOREF)
        return value;
    pthread_mutex_lock(&d->owner->lock);
    d->owner->in_callback = true;
    lua_State *co = d->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, d->read_ref);
    lua_pushinteger(co, (lua_Integer)bar);
    lua_pushinteger(co, (lua_Integer)offset);
    lua_pushinteger(co, (lua_Integer)size);
    if (lua_pcall(co, 3, 1, 0) != LUA_OK) {
        record_error(d, lua_tostring(co, -1));
    } else {
        int ok = 0;
        lua_Integer v = lua_tointegerx(co, -1, &ok);
        if (ok)
            value = (uint64_t)v;
        else
            record_error(d, "PCI device read function did not return an integer");
    }
    lua_settop(co, 0);
    d->owner->in_callback = false;
    pthread_mutex_unlock(&d->owner->lock);
    return value;
}

static void lua_pci_write(void *opaque, unsigned bar, uint64_t offset, unsigned size,
                          uint64_t value)
{
    struct lua_device *d = opaque;
    if (d->write_ref == LUA_NOREF)
        return;
    pthread_mutex_lock(&d->owner->lock);
    d->owner->in_callback = true;
    lua_State *co = d->co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, d->write_ref);
    lua_pushinteger(co, (lua_Integer)bar);
    lua_pushinteger(co, (lua_Integer)offset);
    lua_pushinteger(co, (lua_Integer)size);
    lua_pushinteger(co, (lua_Integer)value);
    if (lua_pcall(co, 4, 0, 0) != LUA_OK)
        record_error(d, lua_tostring(co, -1));
    lua_settop(co, 0);
    d->owner->in_callback = false;
    pthread_mutex_unlock(&d->owner->lock);
}

static lua_Integer field_integer(lua_State *L, int t, const char *name, lua_Integer dflt,
                                 lua_Integer max)
{
    lua_getfield(L, t, name);
    lua_Integer v = dflt;
    if (!lua_isnil(L, -1)) {
        int ok = 0;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < 0 || v > max)
            luaL_error(L, "%s must be an integer from 0 to %I", name, max);
    }
    lua_pop(L, 1);
    return v;
}

/* add_pci_device(vm, spec) -> device, slot | nil, err. spec: vendor,
 * device, class, revision, subsystem_vendor, subsystem, msix, bars = {
 * {size =, kind = "mem32"|"mem64"|"io", prefetchable =}, ... } (holes
 * false), read = function(bar, offset, size), write = function(bar,
 * offset, size, value). Bad fields raise (kvmc.lua turns that into nil,
 * message). */
int kvmclua_add_pci_device(lua_State *L)
{
    kvmc_vm *vm = kvmclua_checkvm(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    kvmc_pci_device info = KVMC_PCI_DEVICE_INIT;
    info.vendor_id = (uint16_t)field_integer(L, 2, "vendor", 0, 0xffff);
    info.device_id = (uint16_t)field_integer(L, 2, "device", 0, 0xffff);
    info.class_code = (uint32_t)field_integer(L, 2, "class", 0xff0000, 0xffffff);
    info.revision = (uint8_t)field_integer(L, 2, "revision", 0, 0xff);
    info.subsystem_vendor_id = (uint16_t)field_integer(L, 2, "subsystem_vendor", 0, 0xffff);
    info.subsystem_id = (uint16_t)field_integer(L, 2, "subsystem", 0, 0xffff);
    info.msix_vectors = (unsigned)field_integer(L, 2, "msix", 0, 0xffffffff);
    lua_getfield(L, 2, "bars");
    if (!lua_isnil(L, -1)) {
        luaL_argcheck(L, lua_istable(L, -1), 2, "bars is a table of up to 6 BARs");
        for (int i = 1; i <= 6; i++) {
            lua_geti(L, -1, i);
            if (lua_istable(L, -1)) {
                int b = lua_gettop(L);
                info.bars[i - 1].size = (uint64_t)field_integer(L, b, "size", 0, LUA_MAXINTEGER);
                lua_getfield(L, b, "kind");
                const char *kind = lua_tostring(L, -1);
                unsigned k = !kind                       ? 0
                             : strcmp(kind, "mem32") == 0 ? KVMC_PCI_BAR_MEM32
                             : strcmp(kind, "mem64") == 0 ? KVMC_PCI_BAR_MEM64
                             : strcmp(kind, "io") == 0    ? KVMC_PCI_BAR_IO
                                                          : 0;
                if (!k)
                    luaL_error(L, "bars[%d].kind must be \"mem32\", \"mem64\" or \"io\"", i);
                lua_pop(L, 1);
                lua_getfield(L, b, "prefetchable");
                if (lua_toboolean(L, -1))
                    k |= KVMC_PCI_BAR_PREFETCHABLE;
                lua_pop(L, 1);
                info.bars[i - 1].kind = k;
            } else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
                luaL_error(L, "bars[%d] must be a table {size =, kind =} or false", i);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "read");
    lua_getfield(L, 2, "write");
    int fns = lua_gettop(L) - 1;
    struct lua_device *d = lua_newuserdatauv(L, sizeof(*d), 0);
    memset(d, 0, sizeof(*d));
    d->owner = owner(L);
    d->vm = vm;
    d->read_ref = optional_function_ref(L, fns);
    d->write_ref = optional_function_ref(L, fns + 1);
    d->co = lua_newthread(L);
    d->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (luaL_newmetatable(L, "kvmc.lua_device")) {
        lua_pushcfunction(L, lua_device_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    info.read = lua_pci_read;
    info.write = lua_pci_write;
    unsigned slot = 0;
    if (kvmc_vm_add_pci_device(vm, &info, d, &slot) != KVMC_OK) {
        lua_pushnil(L);
        lua_pushstring(L, kvmc_last_error());
        return 2;
    }
    lua_pushinteger(L, slot);
    return 2;
}

int kvmclua_add_mmio_device(lua_State *L) { return add_device(L, true); }
int kvmclua_add_pio_device(lua_State *L) { return add_device(L, false); }

int kvmclua_in_callback(lua_State *L)
{
    lua_pushboolean(L, owner(L)->in_callback);
    return 1;
}

/* wait(vm, timeout_ms) -> rc, info: kvmc_vm_wait with the Lua state let go
 * of, and Ctrl-C: a SIGINT while it waits stops the VM, waits for it, and
 * returns "interrupted" (the handler before is put back). Waits in slices
 * of 100 ms to look at the flag. */
static volatile sig_atomic_t sigint_seen;
static void on_sigint(int sig)
{
    (void)sig;
    sigint_seen = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kvmclua_wait(lua_State *L)
{
    kvmc_vm *vm = kvmclua_checkvm(L, 1);
    lua_Integer timeout = luaL_optinteger(L, 2, -1);
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigemptyset(&sa.sa_mask);
    sigint_seen = 0;
    sigaction(SIGINT, &sa, &old);
    kvmc_exit_info info;
    memset(&info, 0, sizeof(info));
    int64_t deadline = timeout < 0 ? -1 : now_ms() + timeout;
    int rc;
    bool interrupted = false;
    kvmclua_release(L);
    for (;;) {
        int64_t left = deadline < 0 ? 100 : deadline - now_ms();
        rc = kvmc_vm_wait(vm, (int)(left < 0 ? 0 : left > 100 ? 100 : left), &info);
        if (sigint_seen && rc == KVMC_ETIMEDOUT) {
            kvmc_vm_stop(vm);
            rc = kvmc_vm_wait(vm, -1, &info);
            interrupted = true;
            break;
        }
        if (rc != KVMC_ETIMEDOUT || (deadline >= 0 && now_ms() >= deadline))
            break;
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", kvmc_last_error());
    kvmclua_acquire(L);
    sigaction(SIGINT, &old, NULL);
    if (interrupted) {
        lua_pushstring(L, "interrupted");
        return 1;
    }
    lua_pushinteger(L, rc);
    if (rc != KVMC_OK) {
        lua_pushstring(L, msg);
        return 2;
    }
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, info.reason);
    lua_setfield(L, -2, "reason");
    lua_pushinteger(L, info.code);
    lua_setfield(L, -2, "code");
    lua_pushinteger(L, info.vcpu);
    lua_setfield(L, -2, "vcpu");
    lua_pushinteger(L, (lua_Integer)info.rip);
    lua_setfield(L, -2, "rip");
    lua_pushstring(L, info.message);
    lua_setfield(L, -2, "message");
    return 2;
}

/* The guest's COM1 input: a pipe whose read end the config hands to kvmc;
 * console_input(cfg) -> writer. Its ends are closed by console_input_close
 * (once the VM is destroyed: kvmc reads the pipe until then) or when it is
 * collected. */
struct console_input {
    int fd, read_fd;
};

static int console_input_gc(lua_State *L)
{
    struct console_input *in = luaL_checkudata(L, 1, "kvmc.console_input");
    if (in->fd >= 0)
        close(in->fd);
    if (in->read_fd >= 0)
        close(in->read_fd);
    in->fd = in->read_fd = -1;
    return 0;
}

int kvmclua_console_input_close(lua_State *L) { return console_input_gc(L); }

int kvmclua_console_input(lua_State *L)
{
    kvmc_config *cfg = kvmclua_checkconfig(L, 1);
    struct console_input *in = lua_newuserdatauv(L, sizeof(*in), 0);
    in->fd = in->read_fd = -1;
    if (luaL_newmetatable(L, "kvmc.console_input")) {
        lua_pushcfunction(L, console_input_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "console input pipe: %s", strerror(errno));
        return 2;
    }
    in->fd = p[1];
    in->read_fd = p[0]; /* kvmc does not close an input fd it was given */
    kvmc_config_set_console_input_fd(cfg, p[0]);
    return 1;
}

/* console_write(writer, data) -> true, or nil, message. */
int kvmclua_console_write(lua_State *L)
{
    struct console_input *in = luaL_checkudata(L, 1, "kvmc.console_input");
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    while (len && in->fd >= 0) {
        ssize_t n = write(in->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "console input: %s", strerror(errno));
            return 2;
        }
        data += n;
        len -= (size_t)n;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* set_kernel_image(cfg, bytes) -> rc: a kernel from a Lua string. */
int kvmclua_set_kernel_image(lua_State *L)
{
    kvmc_config *cfg = kvmclua_checkconfig(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_pushinteger(L, kvmc_config_set_kernel_image(cfg, data, len));
    return 1;
}

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
