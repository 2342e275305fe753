/* libFuzzer: a hostile snapshot state file.
 *
 * 1. The container reader on the input as it is: every section is read in
 *    chunks whose sizes come from the section's own bytes; a read past the
 *    input (ASan) or past a section is a bug.
 * 2. The parser (snapshot_parse) on the input with its header's length
 *    and checksum made right, so the fuzzer reaches the sections' meaning
 *    instead of stopping at the CRC; what it accepts must be consistent
 *    (as many vCPU states as vCPUs, device sections inside the file), and
 *    an accepted I/O APIC section is fed to the model's restore, and each
 *    virtio section to a device of the kind it names (a detached
 *    virtio-mmio transport over 16 MiB of RAM, as the seeds' VMs had, and
 *    the host sides of fuzz_devices.c), which then serves each queue once.
 *    A diff's extents must be in the file, sorted, apart and within RAM.
 * Seeds: make_seeds.py (a container, real state files kvmc wrote, and one
 * of them made a diff). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/ioapic.h"
#include "fuzz_devices.h"
#include "guest_memory.h"
#include "iothread.h"
#include "virtio/mmio.h"
#include "snapshot/format.h"
#include "snapshot/snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int no_msi(void *ctx, const struct ioapic_msi *msi)
{
    (void)ctx;
    if ((msi->address & 0xfff00000u) != 0xfee00000u)
        abort(); /* the model made an MSI outside the local APICs' window */
    return 0;
}

static int no_routes(void *ctx, const unsigned *pins, const struct ioapic_msi *msis, unsigned n)
{
    (void)ctx, (void)msis;
    for (unsigned i = 0; i < n; i++)
        if (pins[i] >= IOAPIC_PINS)
            abort();
    return 0;
}

/* A virtio section into a fresh device of the kind it names (virtio-rng
 * for a name no device has): whatever it accepts, the queues it restored
 * must be safe to serve. */
static void restore_virtio(const struct snapshot_device *d)
{
    static const char *const kinds[FUZZ_VIRTIO_KINDS] = {
        [FUZZ_VIRTIO_BLK] = "virtio-blk", [FUZZ_VIRTIO_RNG] = "virtio-rng",
        [FUZZ_VIRTIO_CONSOLE] = "virtio-console", [FUZZ_VIRTIO_VSOCK] = "virtio-vsock",
        [FUZZ_VIRTIO_NET] = "virtio-net"};
    static struct guest_memory mem;
    static bool have_mem;
    if (!have_mem && gm_init(&mem, 16u << 20, 0) == 0) /* as the seeds' VMs */
        have_mem = true;
    if (!have_mem)
        return;
    unsigned which = FUZZ_VIRTIO_RNG;
    for (unsigned k = 0; k < FUZZ_VIRTIO_KINDS; k++)
        if (!strcmp(d->name, kinds[k]))
            which = k;
    const struct virtio_device_ops *ops;
    void *impl;
    struct virtio_mmio *m;
    if (fuzz_open_virtio(which, &ops, &impl) || virtio_mmio_create_detached(&mem, ops, impl, &m))
        return;
    /* Attached to an I/O thread that never starts, as in a VM not started
     * yet: the device's host side exists; its queues run when told here. */
    struct iothread io;
    struct snapshot_reader r;
    snapshot_reader_section(&r, SNAP_VIRTIO, d->state, d->len);
    if (!iothread_init(&io) && (!ops->attach || !ops->attach(&m->dev, &io)) &&
        virtio_mmio_restore(m, &r) == 0)
        for (unsigned qi = 0; qi < m->dev.ops->num_queues; qi++)
            m->dev.ops->process_queue(&m->dev, qi);
    iothread_destroy(&io);
    virtio_mmio_destroy(m);
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy, so reading one byte too far is caught. */
    uint8_t *file = malloc(size ? size : 1);
    if (!file)
        abort();
    memcpy(file, data, size);
    struct snapshot_reader r;
    if (snapshot_open(&r, file, size) == 0) {
        uint32_t tag;
        while (snapshot_next(&r, &tag) == 1) {
            uint8_t chunk[256], want = 1;
            while (snapshot_get(&r, chunk, want) == 0)
                want = (uint8_t)(chunk[0] | 1);
            if (r.sec_at > r.sec_len)
                abort();
        }
    }

    if (size >= SNAPSHOT_HEADER_SIZE) {
        put_le(file + 32, size - SNAPSHOT_HEADER_SIZE, 8);
        put_le(file + 40, snapshot_crc32(file + SNAPSHOT_HEADER_SIZE, size - SNAPSHOT_HEADER_SIZE),
               4);
        struct snapshot_image img;
        if (snapshot_parse(file, size, &img) == 0) {
            if (!img.vcpus || img.ncpus == 0 || img.ncpus > SNAPSHOT_MAX_CPUS ||
                img.ndevices > SNAPSHOT_MAX_DEVICES)
                abort();
            for (unsigned i = 0; i < img.ncpus; i++)
                if (img.vcpus[i].nmsrs > VCPU_STATE_MAX_MSRS)
                    abort();
            for (unsigned i = 0; i < img.ndevices; i++)
                if (img.devices[i].state < file || img.devices[i].state + img.devices[i].len >
                                                       file + size)
                    abort();
            if (!img.kernel_irqchip) {
                struct ioapic_host host = {.signal_msi = no_msi, .set_level_routes = no_routes};
                struct ioapic *io = ioapic_new(&host);
                struct snapshot_reader ir;
                snapshot_reader_section(&ir, SNAP_IOAPIC, img.irq, img.irq_len);
                if (io && ioapic_restore(io, &ir) == 0)
                    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++)
                        ioapic_set_irq(io, pin, 1); /* deliveries from a restored state */
                ioapic_free(io);
            }
            /* A diff's extents: in the file, sorted, apart, within RAM. */
            if (img.diff && (img.extents < file || img.nextents > size / 16 ||
                             img.extents + img.nextents * 16 > file + size))
                abort();
            for (uint64_t i = 0, end = 0; img.diff && i < img.nextents; i++) {
                struct snapshot_extent e = diff_extent_at(img.extents, i);
                if ((i && e.page <= end) || !e.pages ||
                    e.page + e.pages > img.ram_size / SNAPSHOT_PAGE)
                    abort();
                end = e.page + e.pages;
            }
            for (unsigned i = 0; i < img.nvirtio; i++)
                restore_virtio(&img.virtio[i]);
            snapshot_image_free(&img);
        }
    }
    free(file);
    return 0;
}
