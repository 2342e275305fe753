/* An 82093AA-style I/O APIC emulated in user space, for KVM's split
 * irqchip: the local APICs stay in the kernel, and this model turns pin
 * changes into MSIs (KVM_SIGNAL_MSI).
 *
 * Why not the kernel's: a full in-kernel irqchip (PIC + IOAPIC) makes every
 * VM's teardown wait for four SRCU grace periods, about 9 ms of each VM's
 * exit on these hosts against 0.4 ms with a split irqchip (bench/run.py,
 * cold start). Cloud Hypervisor made the same choice.
 *
 * Pins are edge- or level-triggered as the guest programs them.
 *
 * On an edge-triggered pin every assertion is an interrupt, even of a line
 * that is already asserted (as in KVM's and QEMU's I/O APICs), and one that
 * comes while the pin is masked is latched until it is unmasked (as in
 * QEMU's; KVM's latches only level-triggered pins). Devices raise and lower
 * lines from several threads at once (the I/O thread and the block
 * workers), so an assertion must never depend on the line having been seen
 * low in between.
 *
 * For a level-triggered pin, remote IRR is set on delivery and cleared by
 * the guest's EOI (KVM_EXIT_IOAPIC_EOI). KVM reports those EOIs only for
 * vectors it finds in GSI routes, so the model keeps one MSI route per
 * level-triggered pin, rewritten only when those routes change (each
 * rewrite costs an SRCU grace period).
 *
 * Thread safety: every entry point takes the model's lock; pins may be
 * raised from any thread. */
#ifndef KVMC_IOAPIC_H
#define KVMC_IOAPIC_H

#include <stdint.h>

#define IOAPIC_PINS 24
#define IOAPIC_MMIO_SIZE 0x1000

struct ioapic_msi {
    uint64_t address;
    uint32_t data;
};

/* What the model needs from KVM; a test passes fakes. */
struct ioapic_host {
    /* Delivers one MSI. */
    int (*signal_msi)(void *ctx, const struct ioapic_msi *msi);
    /* Replaces the GSI routing table with these MSI routes (gsi = pin). */
    int (*set_level_routes)(void *ctx, const unsigned *pins, const struct ioapic_msi *msis,
                            unsigned n);
    void *ctx;
};

struct ioapic;

/* NULL on ENOMEM (with the thread's error message set). */
struct ioapic *ioapic_new(const struct ioapic_host *host);
void ioapic_free(struct ioapic *io);

/* The MMIO window (offset from LAYOUT_IOAPIC). Accesses other than aligned
 * 32-bit IOREGSEL and IOWIN read as zero and are ignored. */
uint64_t ioapic_mmio_read(void *io, uint64_t offset, unsigned size);
void ioapic_mmio_write(void *io, uint64_t offset, unsigned size, uint64_t value);

/* Drives a pin's line: level 1 asserts it (an edge-triggered pin then
 * interrupts), 0 deasserts it. Pins past the last are ignored. */
void ioapic_set_irq(struct ioapic *io, unsigned pin, int level);
/* An assertion and deassertion in one step: what an edge-signalling device
 * (virtio) does per event. */
void ioapic_pulse(struct ioapic *io, unsigned pin);
/* The guest ended an interrupt with this vector (KVM_EXIT_IOAPIC_EOI). */
void ioapic_eoi(struct ioapic *io, uint8_t vector);

struct snapshot_writer;
struct snapshot_reader;
/* The model's whole state into a snapshot section, and back (restoring
 * rewrites KVM's level-triggered routes). Restore refuses, with
 * KVMC_EFORMAT, an entry with reserved bits set or pins that do not
 * exist. */
int ioapic_save(struct ioapic *io, struct snapshot_writer *w);
int ioapic_restore(struct ioapic *io, struct snapshot_reader *r);

#endif
