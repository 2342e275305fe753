/* A device written outside the core: a port I/O register and an MMIO
 * register that count the guest's accesses. Boots the kvmc test guest in
 * its "devices" mode, which writes each register once and reads it back.
 *
 *   counter_device PATH-TO-kvmc-test-guest.elf
 */
#include <inttypes.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kvmc/kvmc.h"

struct counter {
    pthread_mutex_t lock; /* callbacks run on vCPU threads */
    uint64_t value;
    unsigned reads, writes;
};

static uint64_t counter_read(void *opaque, uint64_t offset, unsigned size)
{
    struct counter *c = opaque;
    (void)offset, (void)size;
    pthread_mutex_lock(&c->lock);
    c->reads++;
    uint64_t v = c->value + c->reads; /* something the guest can tell apart */
    pthread_mutex_unlock(&c->lock);
    return v;
}

static void counter_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct counter *c = opaque;
    (void)offset, (void)size;
    pthread_mutex_lock(&c->lock);
    c->writes++;
    c->value = value;
    pthread_mutex_unlock(&c->lock);
}

static int fail(const char *what)
{
    fprintf(stderr, "counter_device: %s: %s\n", what, kvmc_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-TO-kvmc-test-guest.elf\n", argv[0]);
        return 2;
    }
    kvmc_config *cfg;
    kvmc_vm *vm;
    if (kvmc_config_new(&cfg) || kvmc_config_set_kernel(cfg, argv[1]) ||
        kvmc_config_set_memory(cfg, 64u << 20) ||
        kvmc_config_set_cmdline(cfg, "kvmc.test=devices") ||
        kvmc_config_set_console_fd(cfg, STDOUT_FILENO))
        return fail("config");
    if (kvmc_vm_create(cfg, &vm))
        return fail("create");
    kvmc_config_free(cfg);

    static const kvmc_device_ops ops = {.version = KVMC_DEVICE_OPS_VERSION,
                                        .read = counter_read,
                                        .write = counter_write};
    struct counter pio = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct counter mmio = {.lock = PTHREAD_MUTEX_INITIALIZER};
    if (kvmc_vm_add_pio_device(vm, 0x600, 4, &ops, &pio) ||
        kvmc_vm_add_mmio_device(vm, 0xd0000000, 0x1000, &ops, &mmio))
        return fail("add device");

    kvmc_exit_info info;
    if (kvmc_vm_start(vm) || kvmc_vm_wait(vm, 30000, &info))
        return fail("run");
    kvmc_vm_destroy(vm);

    printf("host: pio counter saw %u write(s) (last 0x%" PRIx64 ") and %u read(s)\n",
           pio.writes, pio.value, pio.reads);
    printf("host: mmio counter saw %u write(s) (last 0x%" PRIx64 ") and %u read(s)\n",
           mmio.writes, mmio.value, mmio.reads);
    printf("host: guest ended: %s\n", info.message);
    bool ok = info.reason == KVMC_EXIT_POWEROFF && info.code == 0 && pio.writes == 1 &&
              pio.reads == 1 && pio.value == 0x12345678 && mmio.writes == 1 &&
              mmio.reads == 1 && mmio.value == 0x1122334455667788ull;
    printf("%s\n", ok ? "counter_device: ok" : "counter_device: FAILED");
    return ok ? 0 : 1;
}
