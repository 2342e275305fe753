/* virtio-blk and virtio-rng driven by the test guest's own driver, on the
 * host's /dev/kvm, over both transports: virtio-mmio and virtio-pci. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_run.h"
#include "guest_run.h"

/* 64 sectors, sector s filled with byte s. */
static char *make_disk(void)
{
    char *path = strdup("/tmp/kvmc-vdisk-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    uint8_t sector[512];
    for (unsigned s = 0; s < 64; s++) {
        memset(sector, (int)s, sizeof(sector));
        cr_assert_eq(write(fd, sector, sizeof(sector)), 512);
    }
    close(fd);
    return path;
}

static uint64_t fnv1a_prefix(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)fgetc(f);
        h *= 0x100000001b3ull;
    }
    fclose(f);
    return h;
}

static const kvmc_virtio_transport transports[] = {KVMC_VIRTIO_MMIO, KVMC_VIRTIO_PCI};
#define EACH_TRANSPORT for (unsigned t = 0; t < 2; t++)

static void boot_counting(const char *mode, const char *disk, unsigned disk_flags, bool rng,
                          unsigned t, struct guest_result *r, kvmc_stats *stats)
{
    struct guest_spec spec = {.cmdline = mode};
    memset(r, 0, sizeof(*r));
    kvmc_config *cfg = guest_config(&spec, &r->console);
    cr_assert_eq(kvmc_config_set_virtio_transport(cfg, transports[t]), KVMC_OK);
    if (disk)
        cr_assert_eq(kvmc_config_add_disk(cfg, disk, disk_flags, "it-disk"), KVMC_OK);
    if (rng)
        cr_assert_eq(kvmc_config_set_rng(cfg, 1), KVMC_OK);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_wait(vm, 20000, &r->exit), KVMC_OK, "%s", r->console.data);
    if (stats)
        cr_assert_eq(kvmc_vm_get_stats(vm, stats), KVMC_OK, "%s", kvmc_last_error());
    kvmc_vm_destroy(vm);
}

static void boot_with_devices(const char *mode, const char *disk, unsigned disk_flags,
                              bool rng, unsigned t, struct guest_result *r)
{
    boot_counting(mode, disk, disk_flags, rng, t, r, NULL);
}

/* The counters say what the guest's driver made the devices do. */
Test(virtio, counters_count_what_the_devices_did)
{
    EACH_TRANSPORT {
        char *disk = make_disk();
        struct guest_result r;
        kvmc_stats st = KVMC_STATS_INIT;
        boot_counting("kvmc.test=virtio", disk, 0, true, t, &r, &st);
        cr_assert(strstr(r.console.data, "self-check: ok"), "%s", r.console.data);
        cr_assert_eq(st.size, sizeof(kvmc_stats));
        cr_assert_gt(st.exit_io_out, 500, "COM1 is written a byte per exit: %" PRIu64,
                     st.exit_io_out);
        cr_assert_gt(st.exit_mmio_read + st.exit_mmio_write, 20, "the virtio registers");
        cr_assert_geq(st.block_read_count, 1);
        cr_assert_geq(st.block_read_bytes, 512 * st.block_read_count);
        cr_assert_geq(st.block_write_count, 1);
        cr_assert_geq(st.block_write_bytes, 512);
        cr_assert_gt(st.block_errors, 0, "the guest reads past the end on purpose");
        cr_assert_geq(st.rng_bytes, 16);
        cr_assert_eq(st.virtio_errors, 0);
        cr_assert_eq(st.net_rx_packets + st.net_tx_packets + st.vsock_conns_opened, 0);
        guest_result_free(&r);

        boot_counting("kvmc.test=virtio-hostile", disk, 0, false, t, &r, &st);
        cr_assert_geq(st.virtio_errors, 1, "the hostile chain broke the device once");
        unlink(disk);
        free(disk);
        guest_result_free(&r);
    }
}

/* The size field: an older caller's struct is filled as far as it goes. */
Test(virtio, counters_fill_only_what_the_callers_struct_holds)
{
    struct guest_spec spec = {0};
    kvmc_vm *vm = guest_vm(&spec, NULL);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_wait(vm, 20000, NULL), KVMC_OK);
    kvmc_stats st;
    memset(&st, 0xee, sizeof(st));
    st.size = 0;
    cr_assert_eq(kvmc_vm_get_stats(vm, &st), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "KVMC_STATS_INIT"), "%s", kvmc_last_error());
    st.size = 8 + 2 * sizeof(uint64_t); /* a caller that knew exit_io_in and exit_io_out */
    cr_assert_eq(kvmc_vm_get_stats(vm, &st), KVMC_OK);
    cr_assert_eq(st.size, 8 + 2 * sizeof(uint64_t));
    cr_assert_gt(st.exit_io_out, 0);
    cr_assert_eq(st.exit_mmio_read, 0xeeeeeeeeeeeeeeeeull, "beyond its size: untouched");
    cr_assert_eq(kvmc_vm_get_stats(NULL, &st), KVMC_EINVAL);
    cr_assert_eq(kvmc_vm_get_stats(vm, NULL), KVMC_EINVAL);
    kvmc_vm_destroy(vm);
}

Test(virtio, blk_read_write_id_and_bounds)
{
    EACH_TRANSPORT {
        char *disk = make_disk();
        char want[256];
        snprintf(want, sizeof(want),
                 "virtio-blk: 64 sectors, read status 0, sectors 0-3 fnv1a 0x%016" PRIx64
                 ", sector 5 write+read ok, serial it-disk, past-end read status 1\n",
                 fnv1a_prefix(disk, 2048));
        struct guest_result r;
        boot_with_devices("kvmc.test=virtio", disk, 0, false, t, &r);
        cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "%s", r.exit.message);
        cr_assert(strstr(r.console.data, want), "want: %s\nconsole:\n%s", want, r.console.data);
        FILE *f = fopen(disk, "rb");
        fseek(f, 5 * 512 + 3, SEEK_SET);
        cr_assert_eq(fgetc(f), 0xa5 ^ 3, "the guest's write is in the image after the VM");
        fclose(f);
        unlink(disk);
        free(disk);
        guest_result_free(&r);
    }
}

Test(virtio, read_only_disk_keeps_the_image)
{
    EACH_TRANSPORT {
        char *disk = make_disk();
        uint64_t before = fnv1a_prefix(disk, 64 * 512);
        struct guest_result r;
        boot_with_devices("kvmc.test=virtio", disk, KVMC_DISK_READ_ONLY, false, t, &r);
        cr_assert(strstr(r.console.data, "sector 5 write+read FAILED"), "%s", r.console.data);
        cr_assert_eq(fnv1a_prefix(disk, 64 * 512), before, "a read-only disk was modified");
        unlink(disk);
        free(disk);
        guest_result_free(&r);
    }
}

Test(virtio, rng_gives_random_bytes)
{
    EACH_TRANSPORT {
        struct guest_result r;
        boot_with_devices("kvmc.test=virtio", NULL, 0, true, t, &r);
        char line[128];
        cr_assert_not_null(console_line(&r, "virtio-rng: ", line, sizeof(line)), "%s",
                           r.console.data);
        unsigned bytes = 0, distinct = 0;
        cr_assert_eq(sscanf(line, "%u bytes, %u distinct", &bytes, &distinct), 2);
        cr_assert_eq(bytes, 64);
        cr_assert_gt(distinct, 30, "64 random bytes with only %u distinct values", distinct);
        guest_result_free(&r);
    }
}

Test(virtio, both_devices_enumerate)
{
    EACH_TRANSPORT {
        char *disk = make_disk();
        struct guest_result r;
        boot_with_devices("kvmc.test=virtio", disk, 0, true, t, &r);
        cr_assert(strstr(r.console.data, "virtio: 2 devices\n"), "%s", r.console.data);
        cr_assert(strstr(r.console.data, "self-check: ok"));
        unlink(disk);
        free(disk);
        guest_result_free(&r);
    }
}

Test(virtio, hostile_chain_needs_reset_and_recovers)
{
    EACH_TRANSPORT {
        char *disk = make_disk();
        struct guest_result r;
        boot_with_devices("kvmc.test=virtio-hostile", disk, 0, false, t, &r);
        cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "the VMM survived: %s", r.exit.message);
        cr_assert(strstr(r.console.data,
                         "virtio-hostile: status 0x4f, interrupt status 0x2, after reset read ok\n"),
                  "%s", r.console.data);
        unlink(disk);
        free(disk);
        guest_result_free(&r);
    }
}

/* A hostile driver through real port and MMIO exits, under the CLI's seccomp
 * lists, with every kind of virtio device: random writes to COM1 and the
 * i8042, reads of every platform port, random values at every register and
 * access size of all 8 virtio windows, random rings, random I/O APIC
 * programming, then resets mid-bring-up. The VMM keeps running and every device still
 * works afterwards. */
Test(virtio, a_guest_scribbling_on_every_register_is_contained, .timeout = 60)
{
    char *disk = make_disk();
    char dir[] = "/tmp/kvmc-scribble-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char disk_arg[256], vsock[300], vcon[300];
    snprintf(disk_arg, sizeof(disk_arg), "%s,serial=it-disk", disk);
    snprintf(vsock, sizeof(vsock), "cid=3,uds=%s/v.sock", dir);
    snprintf(vcon, sizeof(vcon), "socket:%s/c.sock", dir);
    char *argv[] = {KVMC_CLI, "run", "--mem", "64M", "--cmdline", "kvmc.test=scribble",
                    "--disk", disk_arg, "--rng", "--net", "user", "--vsock", vsock,
                    "--virtio-console", vcon, NULL};
    static struct cli_result r;
    cli_run(&r, argv);
    cr_assert_eq(r.status, 0, "status %d\nstdout:\n%s\nstderr:\n%s", r.status, r.out, r.err);
    cr_assert(strstr(r.out, "scribble: platform ports, 12500 accesses\n"), "%s", r.out);
    cr_assert(strstr(r.out, "scribble: 8096 accesses, 10000 resets, still running\n"), "%s", r.out);
    cr_assert(strstr(r.out, "sector 5 write+read ok, serial it-disk"), "%s", r.out);
    cr_assert(strstr(r.out, "virtio-rng: 64 bytes"), "%s", r.out);
    cr_assert(strstr(r.out, "virtio: 5 devices\n"), "%s", r.out);
    cr_assert(strstr(r.out, "self-check: ok\n"), "%s", r.out);
    unlink(disk);
    free(disk);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(virtio, bad_disk_configuration)
{
    kvmc_config *cfg = NULL;
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_add_disk(cfg, "", 0, NULL), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_add_disk(cfg, "/x", 0x80, NULL), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_add_disk(cfg, "/x", 0, "a-serial-longer-than-20-bytes"),
                 KVMC_EINVAL);
    for (unsigned i = 0; i < KVMC_MAX_VIRTIO_DEVICES; i++)
        cr_assert_eq(kvmc_config_add_disk(cfg, "/x", 0, NULL), KVMC_OK);
    cr_assert_eq(kvmc_config_add_disk(cfg, "/x", 0, NULL), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_rng(cfg, 1), KVMC_EINVAL);
    kvmc_config_free(cfg);

    struct guest_spec spec = {0};
    cfg = guest_config(&spec, NULL);
    cr_assert_eq(kvmc_config_add_disk(cfg, "/nonexistent/disk.img", 0, NULL), KVMC_OK);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_EIO);
    cr_assert(strstr(kvmc_last_error(), "disk /nonexistent/disk.img"), "%s", kvmc_last_error());
    kvmc_config_free(cfg);
}
