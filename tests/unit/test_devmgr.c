/* The device manager against fake VM services: what it attaches where, in
 * which order, what it tells the firmware tables, and that devices reach
 * the VM only through the services. */
#include <criterion/criterion.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "console.h"
#include "devices/virtio_console.h"
#include "devices/virtio_rng.h"
#include "devmgr.h"
#include "guest_memory.h"
#include "iothread.h"
#include "services.h"
#include "x86/layout.h"
#include "fake_vm.h"

static char *scratch_disk(void)
{
    static char path[64];
    int fd = memfd_create("kvmc-devmgr-disk", 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 1 << 20), 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return path;
}

static void range_at(struct bus *b, uint64_t addr, const char *name)
{
    struct bus_range r;
    cr_assert_eq(bus_lookup(b, addr, &r), 0, "nothing at 0x%llx", (unsigned long long)addr);
    cr_assert_str_eq(r.name, name);
}

Test(devmgr, platform_devices_sit_on_their_ports_and_end_the_run_through_services)
{
    struct fake *f = fake_new();
    kvmc_config *cfg;
    kvmc_config_new(&cfg);
    struct devmgr m;
    cr_assert_eq(devmgr_create(&m, &f->svc, cfg), KVMC_OK);
    range_at(&f->pio, 0x3f8, "serial");
    range_at(&f->pio, 0x64, "i8042");
    range_at(&f->pio, PORT_DEBUG_EXIT, "debug-exit");
    range_at(&f->pio, PORT_ACPI_SLEEP_CONTROL, "acpi-sleep");
    range_at(&f->pio, PORT_PVPANIC, "pvpanic");
    cr_assert_eq(m.nvirtio, 0);

    bus_write(&f->pio, BUS_NO_READER, PORT_I8042_COMMAND, 1, I8042_CMD_RESET);
    cr_assert_eq(f->exits, 1);
    cr_assert_eq(f->exit.reason, KVMC_EXIT_RESET);
    cr_assert_eq(f->exit.vcpu, -1);
    cr_assert(strstr(f->exit.message, "i8042"));
    bus_write(&f->pio, BUS_NO_READER, PORT_DEBUG_EXIT, 1, 42);
    cr_assert_eq(f->exit.reason, KVMC_EXIT_POWEROFF);
    cr_assert_eq(f->exit.code, 42);
    bus_write(&f->pio, BUS_NO_READER, PORT_PVPANIC, 1, 1);
    cr_assert_eq(f->exit.reason, KVMC_EXIT_GUEST_PANIC);
    /* The UART's interrupt goes through set_irq on IRQ 4. */
    bus_write(&f->pio, BUS_NO_READER, 0x3f9, 1, 0x02); /* IER: THR empty */
    cr_assert_eq(f->last_gsi, 4);

    devmgr_destroy(&m);
    kvmc_config_free(cfg);
    fake_free(f);
}

Test(devmgr, virtio_devices_get_windows_and_lines_in_registry_order)
{
    struct fake *f = fake_new();
    kvmc_config *cfg;
    kvmc_config_new(&cfg);
    /* Set in a different order than the registry's: the registry decides. */
    cr_assert_eq(kvmc_config_set_virtio_console_callback(cfg, sink, NULL), KVMC_OK);
    cr_assert_eq(kvmc_config_set_rng(cfg, 1), KVMC_OK);
    cr_assert_eq(kvmc_config_add_disk(cfg, scratch_disk(), KVMC_DISK_NO_LOCK, NULL), KVMC_OK);
    cr_assert_eq(kvmc_config_add_disk(cfg, scratch_disk(), KVMC_DISK_NO_LOCK, NULL), KVMC_OK);
    cr_assert_eq(devmgr_virtio_count(cfg), 4);

    struct devmgr m;
    cr_assert_eq(devmgr_create(&m, &f->svc, cfg), KVMC_OK);
    struct mmio_device_desc d[KVMC_MAX_VIRTIO_DEVICES];
    cr_assert_eq(devmgr_describe_virtio(&m, d, KVMC_MAX_VIRTIO_DEVICES), 4);
    const char *names[] = {"virtio-blk", "virtio-blk", "virtio-rng", "virtio-console"};
    const uint32_t ids[] = {2, 2, 4, 3};
    for (unsigned i = 0; i < 4; i++) {
        cr_assert_eq(d[i].base, LAYOUT_VIRTIO_MMIO + i * LAYOUT_VIRTIO_MMIO_STRIDE);
        cr_assert_eq(d[i].gsi, LAYOUT_VIRTIO_GSI + i);
        range_at(&f->mmio, d[i].base, names[i]);
        uint64_t v;
        bus_read(&f->mmio, BUS_NO_READER, d[i].base + VIRTIO_MMIO_DEVICE_ID, 4, &v);
        cr_assert_eq(v, ids[i], "device %u", i);
    }
    /* Each queue's notify register is an ioeventfd matching its index. */
    cr_assert_eq(f->ioeventfds, 1 + 1 + 1 + 2);
    cr_assert_eq(f->ioeventfd_addr[4], d[3].base + VIRTIO_MMIO_QUEUE_NOTIFY);
    cr_assert_eq(f->ioeventfd_match[4], 1);
    cr_assert_not_null(devmgr_virtio_impl(&m, &virtio_console_device));
    cr_assert_null(devmgr_virtio_impl(&m, &virtio_rng_device), "rng has no state");

    devmgr_destroy(&m);
    kvmc_config_free(cfg);
    fake_free(f);
}

Test(devmgr, a_device_that_cannot_open_fails_creation_naming_it)
{
    struct fake *f = fake_new();
    kvmc_config *cfg;
    kvmc_config_new(&cfg);
    kvmc_config_set_rng(cfg, 1);
    kvmc_config_add_disk(cfg, "/nonexistent/kvmc-disk.img", 0, NULL);
    struct devmgr m;
    cr_assert_eq(devmgr_create(&m, &f->svc, cfg), KVMC_EIO);
    cr_assert(strstr(kvmc_last_error(), "/nonexistent/kvmc-disk.img"), "%s",
              kvmc_last_error());
    cr_assert_eq(m.nvirtio, 0, "nothing half-attached");
    devmgr_destroy(&m); /* the platform devices go; ASan checks nothing leaks */
    kvmc_config_free(cfg);
    fake_free(f);
}
