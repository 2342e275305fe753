/* Library lifecycle for valgrind's leak checker: every way a VM can be made
 * and unmade, repeated, with nothing left behind.
 *   lifecycle GUEST.elf DISK.img */
#include <stdio.h>
#include <stdlib.h>

#include "kvmc/kvmc.h"

static kvmc_config *config(const char *kernel, const char *disk, const char *cmdline)
{
    kvmc_config *cfg = NULL;
    if (kvmc_config_new(&cfg) || kvmc_config_set_kernel(cfg, kernel) ||
        kvmc_config_set_memory(cfg, 32u << 20) || kvmc_config_set_cpus(cfg, 2) ||
        (cmdline && kvmc_config_set_cmdline(cfg, cmdline)) ||
        (disk && (kvmc_config_add_disk(cfg, disk, 0, "vg") || kvmc_config_set_rng(cfg, 1)))) {
        fprintf(stderr, "lifecycle: %s\n", kvmc_last_error());
        exit(1);
    }
    return cfg;
}

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "lifecycle: %s: %s\n", what, kvmc_last_error());
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    const char *guest = argv[1], *disk = argv[2];
    for (int i = 0; i < 3; i++) {
        kvmc_vm *vm = NULL;
        kvmc_config *cfg = config(guest, disk, "kvmc.test=virtio");
        /* created, never started */
        expect(kvmc_vm_create(cfg, &vm) == KVMC_OK, "create");
        kvmc_vm_destroy(vm);
        /* a full run with every device */
        expect(kvmc_vm_create(cfg, &vm) == KVMC_OK, "create");
        kvmc_exit_info info;
        expect(kvmc_vm_start(vm) == KVMC_OK && kvmc_vm_wait(vm, 60000, &info) == KVMC_OK,
               "run");
        expect(info.reason == KVMC_EXIT_POWEROFF, "poweroff");
        kvmc_vm_destroy(vm);
        kvmc_config_free(cfg);
        /* stopped while waiting for input, after a pause */
        cfg = config(guest, NULL, "kvmc.test=echo");
        expect(kvmc_vm_create(cfg, &vm) == KVMC_OK, "create");
        expect(kvmc_vm_start(vm) == KVMC_OK, "start");
        expect(kvmc_vm_pause(vm) == KVMC_OK && kvmc_vm_resume(vm) == KVMC_OK, "pause");
        kvmc_vm_stop(vm);
        kvmc_vm_destroy(vm);
        kvmc_config_free(cfg);
        /* failures part-way through creation */
        cfg = config("/nonexistent/kernel", NULL, NULL);
        expect(kvmc_vm_create(cfg, &vm) == KVMC_EIO, "missing kernel");
        kvmc_config_free(cfg);
        cfg = config(guest, "/nonexistent/disk", NULL);
        expect(kvmc_vm_create(cfg, &vm) == KVMC_EIO, "missing disk");
        kvmc_config_free(cfg);
    }
    puts("lifecycle: ok");
    return 0;
}
