/* libFuzzer: a hostile guest against the PCI root complex, through the real
 * buses as vCPU exits reach them: config reads and writes by ECAM and by
 * ports 0xcf8/0xcfc (BAR sizing and moves, decoding on and off, capability
 * registers), accesses wherever the BARs are right now (an MSI-X table, a
 * virtio-pci device's registers, a device of the API's), and MSI-X vectors
 * raised from the host side in between. No KVM: the services are fakes,
 * and an MSI that reaches "KVM" must have a local-APIC address.
 *
 * Input: 8-byte operations
 *   [op] [a] [b] [size] [value: 4 bytes LE]
 *   op % 6: 0 ECAM write, 1 ECAM read (device a % 32, register from a, b),
 *           2 port write (0xcf8 = value, then 0xcfc + b % 4), 3 port read,
 *           4 BAR access (device a % 32, BAR a >> 5 % 6, offset b << 2,
 *             write if value bit 31), 5 raise MSI-X vector value % 8 of the
 *             API's device
 * Then the virtio-pci device is saved (issue 18) and restored into
 * itself: as saved (which must succeed), and with the state's bytes past
 * its version flipped by the input (which must be refused or leave a
 * device that serves its queue safely). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "console.h"
#include "devices/virtio_rng.h"
#include "guest_memory.h"
#include "iothread.h"
#include "pci/host.h"
#include "pci/user_device.h"
#include "services.h"
#include "snapshot/format.h"
#include "snapshot/snapshot.h"
#include "virtio/virtio_pci.h"
#include "x86/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct shell {
    struct bus pio, mmio;
    struct guest_memory mem;
    struct iothread io;
    struct vm_services svc;
    struct pci_host host;
    struct pci_user_device *user;
    struct virtio_pci *rng;
};

static void no_irq(void *ctx, unsigned gsi, int level) { (void)ctx, (void)gsi, (void)level; }
static void no_pulse(void *ctx, unsigned gsi) { (void)ctx, (void)gsi; }
static int no_irqfd(void *ctx, int fd, unsigned gsi)
{
    (void)ctx, (void)fd, (void)gsi;
    return KVMC_ENOTSUP;
}
static int fake_ioeventfd(void *ctx, uint64_t addr, unsigned len, uint64_t match, int fd,
                          bool assign)
{
    (void)ctx, (void)addr, (void)len, (void)match, (void)fd, (void)assign;
    return KVMC_OK;
}
static int checked_msi(void *ctx, uint64_t addr, uint32_t data)
{
    (void)ctx, (void)data;
    if ((addr >> 20) != 0xfee)
        abort(); /* kvmc must drop what is not a local APIC address */
    return 0;
}
static void no_exit(void *ctx, const kvmc_exit_info *info) { (void)ctx, (void)info; }

static uint64_t user_read(void *opaque, unsigned bar, uint64_t offset, unsigned size)
{
    (void)opaque, (void)size;
    return bar * 0x1000 + offset;
}

static struct shell *new_shell(void)
{
    struct shell *sh = calloc(1, sizeof(*sh));
    if (!sh || bus_init(&sh->pio, "PIO", 0) || bus_init(&sh->mmio, "MMIO", 0) ||
        gm_init(&sh->mem, KVMC_MIN_MEMORY, 0) || iothread_init(&sh->io))
        abort();
    sh->svc = (struct vm_services){
        .mem = &sh->mem, .pio = &sh->pio, .mmio = &sh->mmio, .io = &sh->io,
        .set_irq = no_irq, .pulse_irq = no_pulse, .irqfd = no_irqfd,
        .ioeventfd = fake_ioeventfd, .signal_msi = checked_msi, .request_exit = no_exit,
        .ctx = sh,
    };
    if (pci_host_create(&sh->host, &sh->svc, KVMC_MIN_MEMORY))
        abort();
    kvmc_pci_device info = KVMC_PCI_DEVICE_INIT;
    info.vendor_id = 0x1234;
    info.bars[0] = (kvmc_pci_bar){0x1000, KVMC_PCI_BAR_MEM32};
    info.bars[1] = (kvmc_pci_bar){0x20, KVMC_PCI_BAR_IO};
    info.bars[2] = (kvmc_pci_bar){0x100000, KVMC_PCI_BAR_MEM64 | KVMC_PCI_BAR_PREFETCHABLE};
    info.msix_vectors = 8;
    info.read = user_read;
    const struct virtio_device_ops *ops;
    void *impl;
    if (pci_user_device_create(&sh->host, &info, NULL, &sh->user) ||
        virtio_rng_device.open(NULL, 0, &ops, &impl) ||
        virtio_pci_create(&sh->svc, &sh->host, ops, impl, &sh->rng))
        abort();
    return sh;
}

static void free_shell(struct shell *sh)
{
    pci_host_destroy(&sh->host);
    pci_user_device_destroy(sh->user);
    virtio_pci_destroy(sh->rng);
    iothread_destroy(&sh->io);
    gm_destroy(&sh->mem);
    bus_destroy(&sh->pio);
    bus_destroy(&sh->mmio);
    free(sh);
}

/* Saves p and restores it into itself, first as saved, then flipped. */
static void round_trip(struct virtio_pci *p, const uint8_t *data, size_t size)
{
    struct snapshot_writer w;
    struct snapshot_reader r;
    uint32_t tag;
    snapshot_writer_init(&w);
    snapshot_begin(&w, SNAP_VIRTIO);
    if (virtio_pci_save(p, &w) || snapshot_finish(&w, "fuzz") ||
        snapshot_open(&r, w.buf, w.len) || snapshot_next(&r, &tag) != 1 ||
        virtio_pci_restore(p, &r) || !snapshot_section_done(&r))
        { fprintf(stderr, "round trip: %s\n", kvmc_last_error()); abort(); } /* kvmc refused its own state */
    if (size) {
        uint8_t *sec = (uint8_t *)r.sec;
        for (size_t i = 4; i < r.sec_len; i++)
            sec[i] ^= data[i % size] & data[(i * 7) % size];
        snapshot_reader_section(&r, SNAP_VIRTIO, sec, r.sec_len);
        if (virtio_pci_restore(p, &r) == 0)
            p->dev.ops->process_queue(&p->dev, 0);
    }
    snapshot_writer_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shell *sh = new_shell();
    for (size_t at = 0; at + 8 <= size; at += 8) {
        const uint8_t *op = data + at;
        unsigned width = 1u << (op[3] % 4), dev = op[1] % 32;
        uint32_t value;
        memcpy(&value, op + 4, 4);
        uint64_t got, ecam = LAYOUT_PCI_ECAM + ((uint64_t)dev << 15) + (((op[1] >> 5) | op[2] << 3) & 0xfff);
        switch (op[0] % 6) {
        case 0: bus_write(&sh->mmio, BUS_NO_READER, ecam, width, value); break;
        case 1: bus_read(&sh->mmio, BUS_NO_READER, ecam, width, &got); break;
        case 2:
            bus_write(&sh->pio, BUS_NO_READER, 0xcf8, 4, value);
            bus_write(&sh->pio, BUS_NO_READER, 0xcfc + op[2] % 4, width, op[2]);
            break;
        case 3: bus_read(&sh->pio, BUS_NO_READER, 0xcfc + op[2] % 4, width, &got); break;
        case 4: {
            struct pci_device *d = pci_host_device(&sh->host, dev);
            unsigned bar = (op[1] >> 5) % 6;
            if (!d || !d->bars[bar].mapped)
                break;
            struct bus *b = d->bars[bar].kind == PCI_BAR_IO ? &sh->pio : &sh->mmio;
            uint64_t addr = d->bars[bar].at + ((uint64_t)op[2] << 2);
            if (value >> 31)
                bus_write(b, BUS_NO_READER, addr, width, value);
            else
                bus_read(b, BUS_NO_READER, addr, width, &got);
            break;
        }
        default:
            pci_user_device_notify(sh->user, value % 8);
            pci_msix_notify(&sh->rng->msix, value % 3);
            break;
        }
    }
    round_trip(sh->rng, data, size);
    free_shell(sh);
    return 0;
}
