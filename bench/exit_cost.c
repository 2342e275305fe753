/* Drives libkvmc for the benchmarks:
 *   exit_cost exits GUEST N   boots the guest doing N port and N MMIO exits
 *                             to a device written in C; prints seconds
 *   exit_cost create GUEST N  creates, runs and destroys N VMs back to back;
 *                             prints VMs per second */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvmc/kvmc.h"

static uint64_t sink;
static uint64_t dev_read(void *o, uint64_t off, unsigned size) { (void)o, (void)off, (void)size; return sink; }
static void dev_write(void *o, uint64_t off, unsigned size, uint64_t v) { (void)o, (void)off, (void)size; sink += v; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static kvmc_vm *make_vm(const char *guest, const char *cmdline, int with_devices)
{
    kvmc_config *cfg;
    kvmc_vm *vm;
    if (kvmc_config_new(&cfg) || kvmc_config_set_kernel(cfg, guest) ||
        kvmc_config_set_memory(cfg, 64u << 20) || kvmc_config_set_cmdline(cfg, cmdline) ||
        kvmc_vm_create(cfg, &vm)) {
        fprintf(stderr, "exit_cost: %s\n", kvmc_last_error());
        exit(1);
    }
    kvmc_config_free(cfg);
    static const kvmc_device_ops ops = {.version = KVMC_DEVICE_OPS_VERSION, .read = dev_read,
                                        .write = dev_write};
    if (with_devices && (kvmc_vm_add_pio_device(vm, 0x600, 4, &ops, NULL) ||
                         kvmc_vm_add_mmio_device(vm, 0xd0000000, 0x1000, &ops, NULL))) {
        fprintf(stderr, "exit_cost: %s\n", kvmc_last_error());
        exit(1);
    }
    return vm;
}

static void run_vm(kvmc_vm *vm)
{
    kvmc_exit_info info;
    if (kvmc_vm_start(vm) || kvmc_vm_wait(vm, 120000, &info)) {
        fprintf(stderr, "exit_cost: %s\n", kvmc_last_error());
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: exit_cost exits|create GUEST N\n");
        return 2;
    }
    long n = atol(argv[3]);
    if (strcmp(argv[1], "exits") == 0) {
        char cmdline[64];
        snprintf(cmdline, sizeof(cmdline), "kvmc.test=exits:%ld", n);
        kvmc_vm *vm = make_vm(argv[2], cmdline, 1);
        double t0 = now();
        run_vm(vm);
        printf("%.6f\n", now() - t0);
        kvmc_vm_destroy(vm);
    } else {
        double t0 = now();
        for (long i = 0; i < n; i++) {
            kvmc_vm *vm = make_vm(argv[2], "", 0);
            run_vm(vm);
            kvmc_vm_destroy(vm);
        }
        printf("%.3f\n", n / (now() - t0));
    }
    return 0;
}
