/* The PCI root complex, config space decoding, BAR sizing and placement,
 * MSI-X and the virtio-pci transport, driven the way a guest does: through
 * ECAM and the 0xcf8/0xcfc ports on the real buses of a fake VM. */
#include <criterion/criterion.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <string.h>

#include "config.h"
#include "devices/virtio_rng.h"
#include "devmgr.h"
#include "fake_vm.h"
#include "pci/host.h"
#include "pci/user_device.h"
#include "virtio/virtio_pci.h"
#include "x86/layout.h"

#define NR BUS_NO_READER

static struct fake *f;
static struct pci_host host;

static void setup(void)
{
    f = fake_new();
    cr_assert_eq(pci_host_create(&host, &f->svc, 64ull << 20), KVMC_OK, "%s",
                 kvmc_last_error());
}

static void teardown(void)
{
    pci_host_destroy(&host);
    fake_free(f);
}

TestSuite(pci, .init = setup, .fini = teardown);

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

static uint32_t port_rd(unsigned bus, unsigned dev, unsigned fn, unsigned reg, unsigned size)
{
    uint64_t v;
    bus_write(&f->pio, NR, 0xcf8, 4, 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc));
    bus_read(&f->pio, NR, 0xcfc + (reg & 3), size, &v);
    return (uint32_t)v;
}

Test(pci, the_host_bridge_answers_through_ecam_and_the_ports)
{
    cr_assert_eq(ecam_rd(0, 0, 4), 0x00081b36);
    cr_assert_eq(port_rd(0, 0, 0, 0, 4), 0x00081b36);
    cr_assert_eq(port_rd(0, 0, 0, 2, 2), 0x0008, "a word in the middle of the dword");
    cr_assert_eq(ecam_rd(0, 0x0b, 1), 0x06, "class: bridge");
    /* What is not there reads as all ones. */
    cr_assert_eq(ecam_rd(5, 0, 4), 0xffffffff, "empty slot");
    cr_assert_eq(port_rd(1, 0, 0, 0, 4), 0xffffffff, "bus 1");
    cr_assert_eq(port_rd(0, 0, 3, 0, 4), 0xffffffff, "function 3");
    cr_assert_eq(ecam_rd(0, 1, 2), 0xffff, "misaligned");
    cr_assert_eq(ecam_rd(0, 0x100, 4), 0, "extended space: no capabilities");
    /* CONFIG_ADDRESS reads back what was written (Linux's type 1 probe). */
    uint64_t v;
    bus_write(&f->pio, NR, 0xcf8, 4, 0x80000000u);
    bus_read(&f->pio, NR, 0xcf8, 4, &v);
    cr_assert_eq(v, 0x80000000u);
    bus_write(&f->pio, NR, 0xcf8, 4, 0);
    bus_read(&f->pio, NR, 0xcfc, 4, &v);
    cr_assert_eq(v, 0xffffffffu, "config space off: all ones");
    /* Read-only registers stay. */
    ecam_wr(0, 0, 4, 0x12345678);
    cr_assert_eq(ecam_rd(0, 0, 4), 0x00081b36);
}

static uint64_t dev_read(void *opaque, unsigned bar, uint64_t offset, unsigned size)
{
    (void)opaque, (void)size;
    return 0x1000 * (bar + 1) + offset;
}

static struct {
    unsigned bar;
    uint64_t offset, value;
} last_write;

static void dev_write(void *opaque, unsigned bar, uint64_t offset, unsigned size, uint64_t value)
{
    (void)opaque, (void)size;
    last_write.bar = bar;
    last_write.offset = offset;
    last_write.value = value;
}

static struct pci_user_device *plug(unsigned msix_vectors)
{
    kvmc_pci_device info = KVMC_PCI_DEVICE_INIT;
    info.vendor_id = 0x1234;
    info.device_id = 0x5678;
    info.class_code = 0xff0000;
    info.bars[0] = (kvmc_pci_bar){0x1000, KVMC_PCI_BAR_MEM32};
    info.bars[1] = (kvmc_pci_bar){0x20, KVMC_PCI_BAR_IO};
    info.bars[2] = (kvmc_pci_bar){0x100000, KVMC_PCI_BAR_MEM64 | KVMC_PCI_BAR_PREFETCHABLE};
    info.msix_vectors = msix_vectors;
    info.read = dev_read;
    info.write = dev_write;
    struct pci_user_device *u = NULL;
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_OK, "%s",
                 kvmc_last_error());
    return u;
}

static bool on_bus(struct bus *b, uint64_t addr)
{
    struct bus_range r;
    return bus_lookup(b, addr, &r) == 0;
}

Test(pci, bars_are_sized_placed_and_decoded_as_the_command_register_says)
{
    struct pci_user_device *u = plug(0);
    unsigned s = u->pci.slot;
    cr_assert_eq(s, 1);
    cr_assert_eq(ecam_rd(s, 0, 4), 0x56781234);
    uint32_t bar0 = ecam_rd(s, 0x10, 4), bar1 = ecam_rd(s, 0x14, 4);
    uint32_t bar2 = ecam_rd(s, 0x18, 4), bar3 = ecam_rd(s, 0x1c, 4);
    cr_assert(bar0 >= LAYOUT_PCI_MMIO32 && bar0 < LAYOUT_PCI_MMIO32_END, "0x%x", bar0);
    cr_assert_eq(bar0 & 0xfff, 0, "aligned to its size, type memory32");
    cr_assert_eq(bar1 & 3, 1, "I/O");
    cr_assert(bar1 >= LAYOUT_PCI_IO, "0x%x", bar1);
    cr_assert_eq(bar2 & 0xf, 0xc, "64-bit, prefetchable");
    cr_assert_eq(bar3, 0, "below 4 GiB");

    /* Sizing: all ones in, the size mask out, type bits kept. */
    ecam_wr(s, 0x10, 4, 0xffffffff);
    cr_assert_eq(ecam_rd(s, 0x10, 4), 0xfffff000);
    ecam_wr(s, 0x14, 4, 0xffffffff);
    cr_assert_eq(ecam_rd(s, 0x14, 4), 0x0000ffe1);
    ecam_wr(s, 0x18, 4, 0xffffffff);
    ecam_wr(s, 0x1c, 4, 0xffffffff);
    cr_assert_eq(ecam_rd(s, 0x18, 4), 0xfff0000c);
    cr_assert_eq(ecam_rd(s, 0x1c, 4), 0xffffffff);
    cr_assert_eq(ecam_rd(s, 0x30, 4), 0, "no expansion ROM");
    ecam_wr(s, 0x10, 4, bar0);
    ecam_wr(s, 0x14, 4, bar1);
    ecam_wr(s, 0x18, 4, bar2);
    ecam_wr(s, 0x1c, 4, 0);

    /* Decoding off: nothing on the buses. */
    cr_assert_not(on_bus(&f->mmio, bar0));
    cr_assert_not(on_bus(&f->pio, bar1 & ~3u));
    ecam_wr(s, 0x04, 2, PCI_COMMAND_MEMORY);
    cr_assert(on_bus(&f->mmio, bar0));
    cr_assert(on_bus(&f->mmio, bar2 & ~0xfu));
    cr_assert_not(on_bus(&f->pio, bar1 & ~3u), "I/O decoding is separate");
    ecam_wr(s, 0x04, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
    cr_assert(on_bus(&f->pio, bar1 & ~3u));

    /* Accesses reach the callbacks with BAR number and offset. */
    uint64_t v;
    bus_read(&f->mmio, NR, bar0 + 0x10, 4, &v);
    cr_assert_eq(v, 0x1010);
    bus_write(&f->mmio, NR, (bar2 & ~0xfu) + 0x88, 8, 0xdeadbeefcafeull);
    cr_assert_eq(last_write.bar, 2);
    cr_assert_eq(last_write.offset, 0x88);
    cr_assert_eq(last_write.value, 0xdeadbeefcafeull);

    /* The guest moves BAR 0 while decoding: it follows. */
    ecam_wr(s, 0x10, 4, 0xd0000000);
    cr_assert_not(on_bus(&f->mmio, bar0));
    bus_read(&f->mmio, NR, 0xd0000004, 4, &v);
    cr_assert_eq(v, 0x1004);
    /* Onto another device's range (the ECAM window): refused, off the bus. */
    ecam_wr(s, 0x10, 4, (uint32_t)LAYOUT_PCI_ECAM);
    cr_assert_not(on_bus(&f->mmio, 0xd0000000));
    cr_assert_eq(ecam_rd(0, 0, 4), 0x00081b36, "ECAM still works");
    ecam_wr(s, 0x10, 4, 0xd0000000);
    cr_assert(on_bus(&f->mmio, 0xd0000000), "back once the place is free");
    ecam_wr(s, 0x04, 2, 0);
    cr_assert_not(on_bus(&f->mmio, 0xd0000000));
    cr_assert_not(on_bus(&f->pio, bar1 & ~3u));
    pci_host_destroy(&host);
    pci_host_unplug(&host, &u->pci);
    pci_user_device_destroy(u);
    pci_host_create(&host, &f->svc, 64ull << 20); /* for teardown */
}

static uint64_t msix_table(struct pci_user_device *u)
{
    return pci_bar_address(&u->pci, u->msix.table_bar);
}

Test(pci, msix_delivers_masks_and_remembers_pending_vectors)
{
    struct pci_user_device *u = plug(4);
    unsigned s = u->pci.slot;
    cr_assert_eq(u->msix.table_bar, 4, "the first free BAR (2 and 3 are the 64-bit one)");
    /* Find the capability by walking the list, as a guest does. */
    unsigned cap = ecam_rd(s, 0x34, 1);
    while (cap && ecam_rd(s, cap, 1) != PCI_CAP_ID_MSIX)
        cap = ecam_rd(s, cap + 1, 1);
    cr_assert_neq(cap, 0);
    cr_assert_eq(ecam_rd(s, cap + 2, 2) & 0x7ff, 3, "table size - 1");
    ecam_wr(s, 0x04, 2, PCI_COMMAND_MEMORY);
    uint64_t table = msix_table(u), pba = table + (ecam_rd(s, cap + 8, 4) & ~7u);
    uint64_t v;
    bus_read(&f->mmio, NR, table + 12, 4, &v);
    cr_assert_eq(v, 1, "vectors start masked");

    bus_write(&f->mmio, NR, table + 0, 4, 0xfee00000);
    bus_write(&f->mmio, NR, table + 8, 4, 0x41);
    bus_write(&f->mmio, NR, table + 12, 4, 0);
    cr_assert(pci_msix_notify(&u->msix, 0) == false, "MSI-X not enabled yet: lost");
    cr_assert_eq(f->msis, 0);
    ecam_wr(s, cap + 2, 2, 0x8000); /* enable */
    cr_assert_eq(pci_user_device_notify(u, 0), KVMC_OK);
    cr_assert_eq(f->msis, 1);
    cr_assert_eq(f->msi_addr[0], 0xfee00000);
    cr_assert_eq(f->msi_data[0], 0x41);

    /* Masked: pending, then delivered on unmask. */
    bus_write(&f->mmio, NR, table + 12, 4, 1);
    pci_user_device_notify(u, 0);
    cr_assert_eq(f->msis, 1);
    bus_read(&f->mmio, NR, pba, 8, &v);
    cr_assert_eq(v, 1, "pending bit 0");
    bus_write(&f->mmio, NR, table + 12, 4, 0);
    cr_assert_eq(f->msis, 2);
    bus_read(&f->mmio, NR, pba, 8, &v);
    cr_assert_eq(v, 0);
    /* Function mask likewise. */
    ecam_wr(s, cap + 2, 2, 0xc000);
    pci_user_device_notify(u, 0);
    cr_assert_eq(f->msis, 2);
    ecam_wr(s, cap + 2, 2, 0x8000);
    cr_assert_eq(f->msis, 3);

    /* A hostile address never reaches KVM; nor does a vector past the end. */
    bus_write(&f->mmio, NR, table + 16, 8, 0x00000000c0000000ull);
    bus_write(&f->mmio, NR, table + 28, 4, 0);
    pci_user_device_notify(u, 1);
    cr_assert_eq(f->msis, 3);
    cr_assert_eq(pci_user_device_notify(u, 4), KVMC_EINVAL);
    /* Odd-sized table accesses are ignored. */
    bus_write(&f->mmio, NR, table + 8, 2, 0x55);
    bus_read(&f->mmio, NR, table + 8, 4, &v);
    cr_assert_eq(v, 0x41);
    pci_host_destroy(&host);
    pci_host_unplug(&host, &u->pci);
    pci_user_device_destroy(u);
    pci_host_create(&host, &f->svc, 64ull << 20);
}

Test(pci, bad_device_descriptions_are_refused_by_name)
{
    kvmc_pci_device info = KVMC_PCI_DEVICE_INIT;
    info.vendor_id = 0x1234;
    struct pci_user_device *u;
    info.bars[0] = (kvmc_pci_bar){0x1800, KVMC_PCI_BAR_MEM32};
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "power of two"), "%s", kvmc_last_error());
    info.bars[0] = (kvmc_pci_bar){0x1000, KVMC_PCI_BAR_MEM64};
    info.bars[1] = (kvmc_pci_bar){0x1000, KVMC_PCI_BAR_MEM32};
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "taken by the 64-bit BAR 0"), "%s", kvmc_last_error());
    info.bars[1] = (kvmc_pci_bar){0x1000, KVMC_PCI_BAR_IO | KVMC_PCI_BAR_PREFETCHABLE};
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_EINVAL);
    info.bars[1] = (kvmc_pci_bar){0, 0};
    for (unsigned i = 2; i < 6; i++)
        info.bars[i] = (kvmc_pci_bar){0x100, KVMC_PCI_BAR_MEM32};
    info.msix_vectors = 1;
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "MSI-X table needs one"), "%s", kvmc_last_error());
    info.version = 0;
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_EINVAL);
    info.version = 2;
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_ENOTSUP);
    info = (kvmc_pci_device)KVMC_PCI_DEVICE_INIT;
    info.vendor_id = 0xffff;
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_EINVAL);
    /* 31 devices fill bus 0. */
    info.vendor_id = 0x1234;
    struct pci_user_device *all[31];
    for (unsigned i = 0; i < 31; i++)
        cr_assert_eq(pci_user_device_create(&host, &info, NULL, &all[i]), KVMC_OK);
    cr_assert_eq(pci_user_device_create(&host, &info, NULL, &u), KVMC_EBUSY);
    pci_host_destroy(&host);
    for (unsigned i = 0; i < 31; i++)
        pci_user_device_destroy(all[i]);
    pci_host_create(&host, &f->svc, 64ull << 20);
}

/* ------------------------------------------------------------ virtio-pci */

static unsigned find_vcap(unsigned s, unsigned type)
{
    for (unsigned cap = ecam_rd(s, 0x34, 1); cap; cap = ecam_rd(s, cap + 1, 1))
        if (ecam_rd(s, cap, 1) == PCI_CAP_ID_VNDR && ecam_rd(s, cap + 3, 1) == type)
            return cap;
    return 0;
}

Test(pci, virtio_pci_brings_up_a_device_and_interrupts_per_queue)
{
    const struct virtio_device_ops *ops;
    void *impl;
    cr_assert_eq(virtio_rng_device.open(NULL, 0, &ops, &impl), KVMC_OK);
    struct virtio_pci *p = NULL;
    cr_assert_eq(virtio_pci_create(&f->svc, &host, ops, impl, &p), KVMC_OK, "%s",
                 kvmc_last_error());
    unsigned s = p->pci.slot;
    cr_assert_eq(ecam_rd(s, 0, 4), 0x10441af4, "1af4:1044, modern virtio-rng");
    cr_assert_eq(ecam_rd(s, 0x08, 1), 1, "revision 1: modern only");
    unsigned common = find_vcap(s, 1), notify = find_vcap(s, 2), isr = find_vcap(s, 3),
             cfg = find_vcap(s, 5);
    cr_assert(common && notify && isr && cfg);
    cr_assert_eq(find_vcap(s, 4), 0, "rng has no device config");
    cr_assert_eq(ecam_rd(s, notify + 16, 4), VIRTIO_PCI_NOTIFY_MULTIPLIER);

    /* Decoding on: BAR 0 on the bus, the queue's notify ioeventfd assigned. */
    unsigned before = f->ioeventfds;
    ecam_wr(s, 0x04, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    uint64_t bar = pci_bar_address(&p->pci, 0);
    cr_assert_eq(f->ioeventfds, before + 1);
    cr_assert_eq(f->ioeventfd_addr[before], bar + VIRTIO_PCI_NOTIFY);
    cr_assert(f->ioeventfd_assigned[before]);
    /* Moved: the old one goes, a new one comes. */
    ecam_wr(s, 0x10, 4, 0xd8000000);
    cr_assert_eq(f->ioeventfds, before + 3);
    cr_assert_not(f->ioeventfd_assigned[before + 1]);
    cr_assert_eq(f->ioeventfd_addr[before + 2], 0xd8000000 + VIRTIO_PCI_NOTIFY);
    bar = 0xd8000000;

#define CC(off, size, val) bus_write(&f->mmio, NR, bar + (off), size, val)
    uint64_t v;
    bus_read(&f->mmio, NR, bar + 0x12, 2, &v);
    cr_assert_eq(v, 1, "num_queues");
    CC(0x14, 1, 0); /* reset */
    CC(0x14, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    CC(0x00, 4, 1);
    bus_read(&f->mmio, NR, bar + 0x04, 4, &v);
    cr_assert(v & 1, "VERSION_1 offered");
    CC(0x08, 4, 1);
    CC(0x0c, 4, 1);
    CC(0x14, 1, 0x0b); /* ACK | DRIVER | FEATURES_OK */
    bus_read(&f->mmio, NR, bar + 0x14, 1, &v);
    cr_assert_eq(v, 0x0b);
    CC(0x10, 2, 0);   /* config vector 0 */
    CC(0x16, 2, 0);   /* queue 0 */
    bus_read(&f->mmio, NR, bar + 0x18, 2, &v);
    cr_assert_eq(v, ops->queue_max, "queue size starts at the maximum");
    CC(0x18, 2, 8);
    CC(0x1a, 2, 1);   /* queue vector 1 */
    bus_read(&f->mmio, NR, bar + 0x1a, 2, &v);
    cr_assert_eq(v, 1);
    CC(0x1a, 2, 7);   /* no such vector: reads back NO_VECTOR */
    bus_read(&f->mmio, NR, bar + 0x1a, 2, &v);
    cr_assert_eq(v, 0xffff);
    CC(0x1a, 2, 1);
    CC(0x20, 4, 0x1000);
    CC(0x28, 4, 0x2000);
    CC(0x30, 4, 0x3000);
    CC(0x1c, 2, 1);
    bus_read(&f->mmio, NR, bar + 0x1c, 2, &v);
    cr_assert_eq(v, 1, "queue enabled");
    CC(0x14, 1, 0x0f);

    /* MSI-X: vector 1 to 0xfee00000 / 0x51, enabled. */
    unsigned mcap = ecam_rd(s, 0x34, 1);
    while (ecam_rd(s, mcap, 1) != PCI_CAP_ID_MSIX)
        mcap = ecam_rd(s, mcap + 1, 1);
    uint64_t table = pci_bar_address(&p->pci, p->msix.table_bar);
    bus_write(&f->mmio, NR, table + 16, 4, 0xfee00000);
    bus_write(&f->mmio, NR, table + 24, 4, 0x51);
    bus_write(&f->mmio, NR, table + 28, 4, 0);
    ecam_wr(s, mcap + 2, 2, 0x8000);

    /* One 16-byte buffer; the queue runs as the I/O thread would run it. */
    struct vring_desc d = {.addr = 0x10000, .len = 16, .flags = VRING_DESC_F_WRITE};
    gm_write(&f->mem, 0x1000, &d, sizeof(d));
    uint16_t head = 0, idx = 1;
    gm_write(&f->mem, 0x2004, &head, 2);
    gm_write(&f->mem, 0x2002, &idx, 2);
    unsigned msis = f->msis;
    ops->process_queue(&p->dev, 0);
    uint16_t used;
    gm_read(&f->mem, 0x3002, &used, 2);
    cr_assert_eq(used, 1);
    cr_assert_eq(f->msis, msis + 1, "the queue's vector fired");
    cr_assert_eq(f->msi_data[msis], 0x51);
    bus_read(&f->mmio, NR, bar + VIRTIO_PCI_ISR, 1, &v);
    cr_assert_eq(v, 1, "ISR: queue interrupt");
    bus_read(&f->mmio, NR, bar + VIRTIO_PCI_ISR, 1, &v);
    cr_assert_eq(v, 0, "read to clear");

    /* The PCI config access window reaches the common config. */
    ecam_wr(s, cfg + 4, 1, 0);
    ecam_wr(s, cfg + 8, 4, 0x12);
    ecam_wr(s, cfg + 12, 4, 2);
    cr_assert_eq(ecam_rd(s, cfg + 16, 4) & 0xffff, 1, "num_queues through config space");

    /* Reset clears the vectors. */
    CC(0x14, 1, 0);
    bus_read(&f->mmio, NR, bar + 0x10, 2, &v);
    cr_assert_eq(v, 0xffff);
#undef CC
    pci_host_destroy(&host);
    pci_host_unplug(&host, &p->pci);
    virtio_pci_destroy(p);
    pci_host_create(&host, &f->svc, 64ull << 20);
}

Test(pci, the_device_manager_puts_virtio_on_pci_when_asked)
{
    pci_host_destroy(&host); /* the device manager makes its own */
    kvmc_config *cfg;
    kvmc_config_new(&cfg);
    kvmc_config_set_rng(cfg, 1);
    cr_assert_eq(kvmc_config_set_virtio_transport(cfg, KVMC_VIRTIO_PCI), KVMC_OK);
    cr_assert_eq(kvmc_config_set_virtio_transport(cfg, 7), KVMC_EINVAL);
    struct devmgr m;
    cr_assert_eq(devmgr_create(&m, &f->svc, cfg), KVMC_OK, "%s", kvmc_last_error());
    struct mmio_device_desc d[8];
    cr_assert_eq(devmgr_describe_virtio(&m, d, 8), 0, "no virtio-mmio in the DSDT");
    struct pci_host_desc pd;
    devmgr_describe_pci(&m, &pd);
    cr_assert(pd.present);
    uint64_t v;
    bus_read(&f->mmio, NR, LAYOUT_PCI_ECAM + (1 << 15), 4, &v);
    cr_assert_eq(v, 0x10441af4, "virtio-rng in slot 1");
    devmgr_destroy(&m);
    kvmc_config_free(cfg);
    pci_host_create(&host, &f->svc, 64ull << 20);
}
