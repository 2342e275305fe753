/* VFIO passthrough without a host device: PCI addresses, the sysfs checks
 * (against a fake /sys tree), and the PCI model against a fake device: a
 * regular file laid out as VFIO regions (config space at 0, BAR 0 at
 * 0x10000) that kvmc reads, writes and mmaps as it would a device fd, with
 * MSI-X wiring recorded. The guest side goes through ECAM and the MMIO bus
 * of a fake VM, as a guest's accesses do. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fake_vm.h"
#include "pci/host.h"
#include "vfio/vfio.h"
#include "vfio/vfio_pci.h"
#include "x86/layout.h"

#define NR BUS_NO_READER
#define BAR0_OFFSET 0x10000
#define BAR0_SIZE 0x4000
#define TABLE_OFFSET 0x2000
#define PBA_OFFSET 0x3000
#define NVEC 4

/* ------------------------------------------------------------ addresses */

Test(vfio, pci_addresses_are_checked_and_made_canonical)
{
    char out[VFIO_BDF_LEN];
    cr_assert(vfio_parse_bdf("0000:00:03.0", out));
    cr_assert_str_eq(out, "0000:00:03.0");
    cr_assert(vfio_parse_bdf("00:1f.7", out));
    cr_assert_str_eq(out, "0000:00:1f.7", "domain 0 by default");
    cr_assert(vfio_parse_bdf("ABCD:0A:1F.2", out));
    cr_assert_str_eq(out, "abcd:0a:1f.2");
    const char *bad[] = {"", "zz", "0000:00:20.0", "0000:00:03.8", "0000:00:03",
                         "0000:00:03.0x", "1:2:3:4.0", "00000:00:03.0", "0000:00:03.0 ",
                         "../../etc", "0000:00:03.-1",
                         "-000:00:03.0", "+000:00:03.0", "0x0:00:03.0", " 000:00:03.0"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert(!vfio_parse_bdf(bad[i], out), "'%s' accepted", bad[i]);
    cr_assert(!vfio_parse_bdf(NULL, out));
}

Test(vfio, the_config_takes_each_device_once_and_at_most_eight)
{
    kvmc_config *cfg;
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_add_vfio(cfg, "nonsense"), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "'nonsense' is not a PCI address"), "%s",
              kvmc_last_error());
    cr_assert_eq(kvmc_config_add_vfio(cfg, "00:03.0"), KVMC_OK);
    cr_assert_eq(kvmc_config_add_vfio(cfg, "0000:00:03.0"), KVMC_EINVAL, "the same device");
    cr_assert(strstr(kvmc_last_error(), "added twice"), "%s", kvmc_last_error());
    for (unsigned i = 1; i < KVMC_MAX_VFIO_DEVICES; i++) {
        char bdf[16];
        snprintf(bdf, sizeof(bdf), "00:%02x.0", 3 + i);
        cr_assert_eq(kvmc_config_add_vfio(cfg, bdf), KVMC_OK);
    }
    cr_assert_eq(kvmc_config_add_vfio(cfg, "00:1e.0"), KVMC_EINVAL, "a ninth");
    cr_assert_eq(kvmc_config_add_vfio(NULL, "00:1e.0"), KVMC_EINVAL);
    kvmc_config_free(cfg);
}

/* ---------------------------------------------------------- fake sysfs */

static char sysfs[64];

static void mk(const char *fmt, const char *arg)
{
    char path[256];
    snprintf(path, sizeof(path), fmt, sysfs, arg);
    cr_assert(mkdir(path, 0755) == 0, "mkdir %s", path);
}

static void ln(const char *target, const char *fmt, const char *arg)
{
    char path[256];
    snprintf(path, sizeof(path), fmt, sysfs, arg);
    cr_assert(symlink(target, path) == 0, "symlink %s", path);
}

static void make_sysfs(void)
{
    snprintf(sysfs, sizeof(sysfs), "/tmp/kvmc-sysfs-XXXXXX");
    cr_assert(mkdtemp(sysfs));
    mk("%s/bus%s", "");
    mk("%s/bus/pci%s", "");
    mk("%s/bus/pci/devices%s", "");
    /* 00:03.0 is ready, 00:04.0 is the host's nvme's, 00:05.0 has no
     * driver, 00:06.0 is vfio-pci's but the host has no IOMMU. */
    const char *devs[] = {"0000:00:03.0", "0000:00:04.0", "0000:00:05.0", "0000:00:06.0"};
    for (unsigned i = 0; i < 4; i++)
        mk("%s/bus/pci/devices/%s", devs[i]);
    ln("../../../bus/pci/drivers/vfio-pci", "%s/bus/pci/devices/%s/driver", devs[0]);
    ln("../../../kernel/iommu_groups/7", "%s/bus/pci/devices/%s/iommu_group", devs[0]);
    ln("../../../bus/pci/drivers/nvme", "%s/bus/pci/devices/%s/driver", devs[1]);
    ln("../../../kernel/iommu_groups/8", "%s/bus/pci/devices/%s/iommu_group", devs[1]);
    ln("../../../bus/pci/drivers/vfio-pci", "%s/bus/pci/devices/%s/driver", devs[3]);
}

static void remove_sysfs(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", sysfs);
    cr_assert_eq(system(cmd), 0);
}

Test(vfio, each_host_misconfiguration_is_one_line_naming_the_device, .init = make_sysfs,
     .fini = remove_sysfs)
{
    unsigned group = 0;
    cr_assert_eq(vfio_locate(sysfs, "0000:00:03.0", &group), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(group, 7);

    cr_assert_eq(vfio_locate(sysfs, "0000:00:09.0", &group), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "VFIO device 0000:00:09.0: no such PCI device"), "%s",
              kvmc_last_error());
    cr_assert_eq(vfio_locate(sysfs, "0000:00:04.0", &group), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "0000:00:04.0 is bound to nvme, not vfio-pci"), "%s",
              kvmc_last_error());
    cr_assert(strstr(kvmc_last_error(), "driver_override"), "says how: %s", kvmc_last_error());
    cr_assert_eq(vfio_locate(sysfs, "0000:00:05.0", &group), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "bound to no driver"), "%s", kvmc_last_error());
    cr_assert_eq(vfio_locate(sysfs, "0000:00:06.0", &group), KVMC_ENOTSUP);
    cr_assert(strstr(kvmc_last_error(), "0000:00:06.0 has no IOMMU group"), "%s",
              kvmc_last_error());
    for (const char *m = kvmc_last_error(); *m; m++)
        cr_assert_neq(*m, '\n', "one line");

    /* Opening goes no further than the first failed check: nothing opened. */
    struct vfio_container c;
    struct vfio_host_device d;
    vfio_container_init(&c, NULL, sysfs, "/nonexistent");
    cr_assert_eq(vfio_device_open(&c, "0000:00:04.0", &d), KVMC_EINVAL);
    cr_assert_eq(c.fd, -1, "no container for a device that is not vfio-pci's");
    cr_assert_eq(vfio_device_open(&c, "0000:00:03.0", &d), KVMC_ENOTSUP,
                 "no /dev/vfio/vfio: %s", kvmc_last_error());
    cr_assert(strstr(kvmc_last_error(), "/nonexistent/vfio"), "%s", kvmc_last_error());
    vfio_container_close(&c);
}

/* ------------------------------------------------- the fake VFIO device */

static struct fake *f;
static struct pci_host host;
static int dev_fd = -1;
static struct {
    unsigned calls;
    unsigned count; /* of the last call */
    bool msix;      /* of the last call */
    int fds[NVEC];
} wired;

static int fake_set_irqs(struct vfio_host_device *d, bool msix, const int *fds, unsigned count)
{
    (void)d;
    cr_assert(!count || !wired.count || wired.msix,
              "MSI re-enabled with a new count without being turned off first");
    wired.calls++;
    wired.count = count;
    wired.msix = msix;
    for (unsigned i = 0; i < count && i < NVEC; i++)
        wired.fds[i] = fds[i];
    return KVMC_OK;
}

static int fake_reset(struct vfio_host_device *d)
{
    (void)d;
    return KVMC_OK;
}

static const struct vfio_device_io fake_io = {.set_irqs = fake_set_irqs, .reset = fake_reset};

static void put(uint8_t *cfg, unsigned off, uint32_t v, unsigned size)
{
    for (unsigned i = 0; i < size; i++)
        cfg[off + i] = (uint8_t)(v >> (8 * i));
}

/* An NVMe-like function: 64-bit BAR 0 of 16 KiB with the MSI-X table and
 * PBA in it, and PM, MSI and MSI-X capabilities. */
static void default_config(uint8_t *cfg)
{
    memset(cfg, 0, PCI_CFG_SIZE);
    put(cfg, 0x00, 0x1b36, 2);
    put(cfg, 0x02, 0x0010, 2);
    put(cfg, 0x06, PCI_STATUS_CAP_LIST, 2);
    put(cfg, 0x08, 0x02, 1);           /* revision */
    put(cfg, 0x09, 0x010802, 3);       /* NVMe */
    put(cfg, 0x10, 0x4 | 0xfebf0000, 4); /* 64-bit memory, at the host's address */
    put(cfg, 0x2c, 0x1af4, 2);
    put(cfg, 0x2e, 0x1100, 2);
    put(cfg, 0x30, 0xfeb80000, 4);     /* a ROM the guest must not see */
    put(cfg, 0x34, 0x40, 1);
    put(cfg, 0x40, 0x01 | 0x50 << 8, 2); /* PM */
    put(cfg, 0x50, 0x05 | 0x60 << 8, 2); /* MSI */
    put(cfg, 0x60, 0x11 | 0x00 << 8, 2); /* MSI-X */
    put(cfg, 0x62, NVEC - 1, 2);
    put(cfg, 0x64, TABLE_OFFSET | 0, 4);
    put(cfg, 0x68, PBA_OFFSET | 0, 4);
}

static struct vfio_host_device fake_device(const uint8_t *cfg)
{
    char path[] = "/tmp/kvmc-vfio-dev-XXXXXX";
    dev_fd = mkstemp(path);
    cr_assert(dev_fd >= 0);
    unlink(path);
    cr_assert_eq(ftruncate(dev_fd, BAR0_OFFSET + BAR0_SIZE), 0);
    cr_assert_eq(pwrite(dev_fd, cfg, PCI_CFG_SIZE, 0), PCI_CFG_SIZE);
    struct vfio_host_device d = {.bdf = "0000:00:03.0", .fd = dev_fd, .msix_count = NVEC,
                                 .msi_count = NVEC,
                                 .io = &fake_io};
    d.regions[0] = (struct vfio_region){BAR0_OFFSET, BAR0_SIZE, VFIO_REGION_INFO_FLAG_READ |
                                        VFIO_REGION_INFO_FLAG_WRITE |
                                        VFIO_REGION_INFO_FLAG_MMAP};
    d.regions[VFIO_REGION_CONFIG] = (struct vfio_region){0, PCI_CFG_SIZE, 3};
    return d;
}

static void setup(void)
{
    f = fake_new();
    memset(&wired, 0, sizeof(wired));
    cr_assert_eq(pci_host_create(&host, &f->svc, 64ull << 20), KVMC_OK);
}

static void teardown(void)
{
    pci_host_destroy(&host);
    fake_free(f);
}

static struct vfio_pci *plug(const uint8_t *cfg)
{
    struct vfio_host_device d = fake_device(cfg);
    struct vfio_pci *v = NULL;
    cr_assert_eq(vfio_pci_create(&host, &d, &v), KVMC_OK, "%s", kvmc_last_error());
    return v;
}

static void unplug(struct vfio_pci *v)
{
    pci_host_unplug(&host, &v->pci);
    vfio_pci_destroy(v);
}

static uint32_t ecam_rd(unsigned dev, unsigned reg, unsigned size)
{
    uint64_t v;
    bus_read(&f->mmio, NR, LAYOUT_PCI_ECAM + (dev << 15) + reg, size, &v);
    return (uint32_t)v;
}

static void ecam_wr(unsigned dev, unsigned reg, unsigned size, uint32_t v)
{
    bus_write(&f->mmio, NR, LAYOUT_PCI_ECAM + (dev << 15) + reg, size, v);
}

static uint32_t device_cfg(unsigned off, unsigned size)
{
    uint32_t v = 0;
    cr_assert_eq(pread(dev_fd, &v, size, off), (ssize_t)size);
    return v;
}

TestSuite(vfio_pci, .init = setup, .fini = teardown);

Test(vfio_pci, the_guest_sees_the_ids_and_bars_and_only_msix)
{
    uint8_t cfg[PCI_CFG_SIZE];
    default_config(cfg);
    struct vfio_pci *v = plug(cfg);
    unsigned s = v->pci.slot;
    cr_assert_eq(ecam_rd(s, 0, 4), 0x00101b36);
    cr_assert_eq(ecam_rd(s, 0x08, 4), 0x01080202, "class and revision");
    cr_assert_eq(ecam_rd(s, 0x2c, 4), 0x11001af4, "subsystem");
    cr_assert_eq(ecam_rd(s, 0x30, 4), 0, "no ROM");
    cr_assert_eq(ecam_rd(s, 0x10, 4) & 0xf, 0x4, "BAR 0 is 64-bit memory, as the device's");
    cr_assert_neq(ecam_rd(s, 0x10, 4) & ~0xfu, 0xfebf0000, "placed by kvmc, not the host");
    /* Sizing BAR 0 gives the region's size. */
    uint32_t at = ecam_rd(s, 0x10, 4);
    ecam_wr(s, 0x10, 4, 0xffffffff);
    cr_assert_eq(ecam_rd(s, 0x10, 4) & ~0xfu, (uint32_t)-BAR0_SIZE);
    ecam_wr(s, 0x10, 4, at);
    /* The capability list: MSI-X and nothing else. */
    unsigned caps = 0, cap = ecam_rd(s, 0x34, 1), msix = 0;
    while (cap && caps < 48) {
        caps++;
        if (ecam_rd(s, cap, 1) == 0x11)
            msix = cap;
        cr_assert(ecam_rd(s, cap, 1) != 0x01 && ecam_rd(s, cap, 1) != 0x05,
                  "PM or MSI offered at 0x%x", cap);
        cap = ecam_rd(s, cap + 1, 1);
    }
    cr_assert_eq(caps, 1);
    cr_assert_eq(ecam_rd(s, msix + 2, 2) & 0x7ff, NVEC - 1);
    cr_assert_eq(ecam_rd(s, msix + 4, 4), TABLE_OFFSET, "the table where the device has it");
    cr_assert_eq(ecam_rd(s, msix + 8, 4), PBA_OFFSET);
    /* Config writes beyond the allowed bits never reach the device. */
    for (unsigned off = 0x40; off < PCI_CFG_SIZE; off += 4)
        ecam_wr(s, off, 4, 0xffffffff);
    ecam_wr(s, 0x00, 4, 0);
    ecam_wr(s, 0x2c, 4, 0);
    ecam_wr(s, 0x30, 4, 0xffffffff);
    uint8_t after[PCI_CFG_SIZE];
    cr_assert_eq(pread(dev_fd, after, PCI_CFG_SIZE, 0), PCI_CFG_SIZE);
    cr_assert_eq(memcmp(after, cfg, PCI_CFG_SIZE), 0, "the device's config changed");
    cr_assert_eq(ecam_rd(s, 0x30, 4), 0, "no ROM, also after a sizing write");
    unplug(v);
}

Test(vfio_pci, the_command_register_reaches_the_device_with_intx_off)
{
    uint8_t cfg[PCI_CFG_SIZE];
    default_config(cfg);
    struct vfio_pci *v = plug(cfg);
    unsigned s = v->pci.slot;
    ecam_wr(s, 0x04, 2, 0x0106); /* memory, bus master, and SERR (not allowed) */
    cr_assert_eq(device_cfg(0x04, 2), 0x0406, "memory + master + INTx disable");
    ecam_wr(s, 0x04, 2, 0);
    cr_assert_eq(device_cfg(0x04, 2), 0x0400);
    unplug(v);
}

Test(vfio_pci, bar_accesses_reach_the_device_and_its_pages_are_mapped_around_msix)
{
    uint8_t cfg[PCI_CFG_SIZE];
    default_config(cfg);
    struct vfio_pci *v = plug(cfg);
    unsigned s = v->pci.slot;
    uint64_t bar = ecam_rd(s, 0x10, 4) & ~0xfull;
    bar |= (uint64_t)ecam_rd(s, 0x14, 4) << 32;
    cr_assert_eq(f->maps, 0, "nothing mapped before the guest enables decoding");
    ecam_wr(s, 0x04, 2, 0x0002);
    /* Direct: [0, table page): the table and the PBA pages stay trapped. */
    cr_assert_eq(f->live_maps, 1);
    cr_assert_eq(f->map_gpa[0], bar);
    cr_assert_eq(f->map_size[0], TABLE_OFFSET);
    /* Trapped accesses (as a vCPU exit would bring them) go to the region. */
    bus_write(&f->mmio, NR, bar + 0x14, 4, 0x460001);
    cr_assert_eq(device_cfg(BAR0_OFFSET + 0x14, 4), 0x460001);
    uint32_t word = 0xabcd1234;
    cr_assert_eq(pwrite(dev_fd, &word, 4, BAR0_OFFSET + 0x1c), 4);
    uint64_t got;
    bus_read(&f->mmio, NR, bar + 0x1c, 4, &got);
    cr_assert_eq(got, 0xabcd1234);
    bus_read(&f->mmio, NR, bar + 0x3ffc, 8, &got);
    /* The table is kvmc's: a write there never reaches the device. */
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET, 4, 0xfee00000);
    cr_assert_eq(device_cfg(BAR0_OFFSET + TABLE_OFFSET, 4), 0);
    bus_read(&f->mmio, NR, bar + TABLE_OFFSET, 4, &got);
    cr_assert_eq(got, 0xfee00000);
    /* Moving the BAR moves the mapping; decoding off takes it away. */
    ecam_wr(s, 0x10, 4, (uint32_t)(bar + 0x100000) | 4);
    cr_assert_eq(f->live_maps, 1);
    cr_assert_eq(f->map_gpa[1], bar + 0x100000);
    ecam_wr(s, 0x04, 2, 0);
    cr_assert_eq(f->live_maps, 0);
    unplug(v);
}

static void entry(uint64_t bar, unsigned v, uint32_t addr, uint32_t data, uint32_t ctrl)
{
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 16 * v, 4, addr);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 16 * v + 4, 4, 0);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 16 * v + 8, 4, data);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 16 * v + 12, 4, ctrl);
}

Test(vfio_pci, msix_vectors_become_irqfds_on_routes_that_follow_the_table)
{
    uint8_t cfg[PCI_CFG_SIZE];
    default_config(cfg);
    struct vfio_pci *v = plug(cfg);
    unsigned s = v->pci.slot;
    uint64_t bar = ecam_rd(s, 0x10, 4) & ~0xfull;
    ecam_wr(s, 0x04, 2, 0x0006);
    cr_assert_eq(wired.calls, 0);
    ecam_wr(s, v->msix.cap + 2, 2, 0x8000); /* enable */
    cr_assert_eq(wired.calls, 1);
    cr_assert_eq(wired.count, NVEC, "every vector gets an eventfd");
    cr_assert_eq(f->irqfd_calls, 0, "all masked: nothing attached yet");

    entry(bar, 0, 0xfee00000, 0x4041, 0);
    cr_assert_eq(f->route_addr[0], 0xfee00000);
    cr_assert_eq(f->route_data[0], 0x4041);
    cr_assert_eq(f->irqfd_on[0], wired.fds[0], "vector 0's eventfd on its route");
    /* A new message moves the route; the irqfd stays. */
    unsigned calls = f->irqfd_calls;
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 8, 4, 0x4042);
    cr_assert_eq(f->route_data[0], 0x4042);
    cr_assert_eq(f->irqfd_calls, calls);
    /* Masked: detached (the eventfd keeps counting); unmasked: back. */
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 12, 4, 1);
    cr_assert_eq(f->irqfd_on[0], -1);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 12, 4, 0);
    cr_assert_eq(f->irqfd_on[0], wired.fds[0]);
    /* Function mask: all off; lifted: back. */
    ecam_wr(s, v->msix.cap + 2, 2, 0xc000);
    cr_assert_eq(f->irqfd_on[0], -1);
    ecam_wr(s, v->msix.cap + 2, 2, 0x8000);
    cr_assert_eq(f->irqfd_on[0], wired.fds[0]);
    /* Disabled: off at the device and in KVM. */
    ecam_wr(s, v->msix.cap + 2, 2, 0);
    cr_assert_eq(wired.calls, 2);
    cr_assert_eq(wired.count, 0);
    cr_assert_eq(f->irqfd_on[0], -1);
    unplug(v);
    cr_assert(f->route_freed[0], "the route goes with the device");
}

Test(vfio_pci, hostile_table_entries_and_accesses_never_reach_kvm)
{
    uint8_t cfg[PCI_CFG_SIZE];
    default_config(cfg);
    struct vfio_pci *v = plug(cfg);
    unsigned s = v->pci.slot;
    uint64_t bar = ecam_rd(s, 0x10, 4) & ~0xfull;
    ecam_wr(s, 0x04, 2, 0x0006);
    ecam_wr(s, v->msix.cap + 2, 2, 0x8000);
    /* Not the local APICs: no route, no irqfd (said once on stderr). */
    entry(bar, 1, 0xdead0000, 0x41, 0);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 16 + 4, 4, 1); /* above 4 GiB */
    entry(bar, 2, 0xfee00000, 0x41, 1);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 32 + 4, 4, 0xffffffff);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 32 + 12, 4, 0);
    cr_assert_eq(f->routes_set, 0, "a hostile address reached KVM's routing");
    cr_assert_eq(f->irqfd_calls, 0);
    /* Malformed accesses: bytes, words, misaligned, a qword across the end
     * of the table, writes to the PBA: ignored, nothing past the table. */
    uint64_t before = f->routes_set;
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 48, 1, 0xfe);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 50, 2, 0xfee0);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 49, 4, 0xfee00000);
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 16 * NVEC - 4, 8, ~0ull);
    bus_write(&f->mmio, NR, bar + PBA_OFFSET, 8, ~0ull);
    uint64_t got;
    bus_read(&f->mmio, NR, bar + PBA_OFFSET, 8, &got);
    cr_assert_eq(got, 0, "the PBA is read-only");
    bus_read(&f->mmio, NR, bar + TABLE_OFFSET + 48, 4, &got);
    cr_assert_eq(got, 0, "vector 3's address untouched");
    bus_read(&f->mmio, NR, bar + TABLE_OFFSET + 16 * NVEC - 4, 4, &got);
    cr_assert_eq(got, 1, "vector 3 still masked");
    cr_assert_eq(f->routes_set, before);
    /* Past the table (the rest of its page) is the device's again. */
    bus_write(&f->mmio, NR, bar + TABLE_OFFSET + 16 * NVEC, 4, 0x5a5a5a5a);
    cr_assert_eq(device_cfg(BAR0_OFFSET + TABLE_OFFSET + 16 * NVEC, 4), 0x5a5a5a5a);
    unplug(v);
}

Test(vfio_pci, broken_devices_are_refused_with_a_reason)
{
    uint8_t cfg[PCI_CFG_SIZE];
    struct vfio_pci *v = NULL;
    struct vfio_host_device d;

    default_config(cfg);
    put(cfg, 0x64, 0x3ff8, 4); /* the table runs past BAR 0 */
    d = fake_device(cfg);
    cr_assert_eq(vfio_pci_create(&host, &d, &v), KVMC_ENOTSUP);
    cr_assert(strstr(kvmc_last_error(), "lies outside its BARs"), "%s", kvmc_last_error());

    default_config(cfg);
    put(cfg, 0x41, 0x40, 1); /* the capability list loops before MSI and MSI-X */
    d = fake_device(cfg);
    cr_assert_eq(vfio_pci_create(&host, &d, &v), KVMC_ENOTSUP);
    cr_assert(strstr(kvmc_last_error(), "has neither MSI-X nor MSI"), "%s", kvmc_last_error());

    default_config(cfg);
    d = fake_device(cfg);
    d.msix_count = d.msi_count = 0; /* VFIO offers INTx only */
    cr_assert_eq(vfio_pci_create(&host, &d, &v), KVMC_ENOTSUP);
    cr_assert(strstr(kvmc_last_error(), "has neither MSI-X nor MSI"), "%s", kvmc_last_error());

    default_config(cfg);
    put(cfg, 0x0e, 0x01, 1); /* a bridge */
    d = fake_device(cfg);
    cr_assert_eq(vfio_pci_create(&host, &d, &v), KVMC_ENOTSUP);
    cr_assert(strstr(kvmc_last_error(), "is a bridge"), "%s", kvmc_last_error());

    default_config(cfg);
    d = fake_device(cfg);
    d.regions[VFIO_REGION_CONFIG].size = 64; /* config space cannot be read */
    cr_assert_eq(vfio_pci_create(&host, &d, &v), KVMC_EIO);
    cr_assert_eq(host.slots[1], NULL, "nothing left plugged in");
}

/* An edu-like function: MSI (4 vectors, 32-bit, not maskable) and no MSI-X. */
static void msi_only_config(uint8_t *cfg)
{
    default_config(cfg);
    put(cfg, 0x50, 0x05 | 0x00 << 8, 2); /* MSI ends the list */
    put(cfg, 0x52, 2 << 1, 2);           /* Multiple Message Capable: 4 */
    memset(cfg + 0x60, 0, 12);           /* no MSI-X */
}

static void msi_wr(struct vfio_pci *v, unsigned reg, unsigned size, uint32_t value)
{
    ecam_wr(v->pci.slot, v->msi.cap + reg, size, value);
}

Test(vfio_pci, msi_vectors_become_irqfds_for_a_device_without_msix)
{
    uint8_t cfg[PCI_CFG_SIZE];
    msi_only_config(cfg);
    struct vfio_host_device d = fake_device(cfg);
    d.msix_count = 0;
    struct vfio_pci *v = NULL;
    cr_assert_eq(vfio_pci_create(&host, &d, &v), KVMC_OK, "%s", kvmc_last_error());
    unsigned s = v->pci.slot;
    cr_assert(v->has_msi && !v->has_msix);
    /* The guest sees one capability: MSI, 4 vectors, 64-bit, maskable. */
    unsigned cap = ecam_rd(s, 0x34, 1);
    cr_assert_eq(ecam_rd(s, cap, 1), 0x05);
    cr_assert_eq(ecam_rd(s, cap + 1, 1), 0, "MSI is the only capability");
    cr_assert_eq(ecam_rd(s, cap + 2, 2), 2 << 1 | 0x80 | 0x100);

    ecam_wr(s, 0x04, 2, 0x0006);
    msi_wr(v, 4, 4, 0xfee01003); /* the low two bits are not writable */
    msi_wr(v, 8, 4, 0);
    msi_wr(v, 12, 2, 0x4043);
    cr_assert_eq(ecam_rd(s, cap + 4, 4), 0xfee01000);
    cr_assert_eq(wired.calls, 0, "nothing wired while MSI is off");
    msi_wr(v, 2, 2, 0x0001 | 1 << 4); /* enable, 2 vectors */
    cr_assert_eq(wired.calls, 1);
    cr_assert(!wired.msix, "MSI's index, not MSI-X's");
    cr_assert_eq(wired.count, 2);
    cr_assert_eq(f->route_addr[0], 0xfee01000);
    cr_assert_eq(f->route_data[0], 0x4042, "vector 0: the data's low bit is the vector's");
    cr_assert_eq(f->route_data[1], 0x4043);
    cr_assert_eq(f->irqfd_on[0], wired.fds[0]);
    cr_assert_eq(f->irqfd_on[1], wired.fds[1]);
    /* Per-vector mask: detached while masked, back when unmasked. */
    msi_wr(v, 16, 4, 0x2);
    cr_assert_eq(f->irqfd_on[1], -1);
    cr_assert_eq(f->irqfd_on[0], wired.fds[0]);
    msi_wr(v, 16, 4, 0xffffffff);
    cr_assert_eq(ecam_rd(s, cap + 16, 4), 0xf, "mask bits only for the 4 offered vectors");
    msi_wr(v, 16, 4, 0);
    cr_assert_eq(f->irqfd_on[1], wired.fds[1]);
    /* More vectors than offered (32): cut to 4, MSI turned off and on
     * again with the new count (VFIO cannot resize MSI while on). */
    msi_wr(v, 2, 2, 0x0001 | 5 << 4);
    cr_assert_eq(wired.count, 4);
    cr_assert_eq(f->irqfd_on[3], wired.fds[3]);
    /* A hostile address: every vector detached, nothing routed there. */
    uint64_t routes = f->routes_set;
    msi_wr(v, 4, 4, 0xdead0000);
    cr_assert_eq(f->routes_set, routes, "a hostile address reached KVM's routing");
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(f->irqfd_on[i], -1);
    msi_wr(v, 4, 4, 0xfee00000);
    cr_assert_eq(f->irqfd_on[2], wired.fds[2]);
    /* Disabled: off at the device and in KVM. */
    msi_wr(v, 2, 2, 0);
    cr_assert_eq(wired.count, 0);
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(f->irqfd_on[i], -1);
    /* None of it reached the device's own config space. */
    uint8_t after[PCI_CFG_SIZE];
    cr_assert_eq(pread(dev_fd, after, PCI_CFG_SIZE, 0), PCI_CFG_SIZE);
    cr_assert_eq(memcmp(after + 0x40, cfg + 0x40, PCI_CFG_SIZE - 0x40), 0);
    unplug(v);
    cr_assert(f->route_freed[0] && f->route_freed[1], "the routes go with the device");
}
