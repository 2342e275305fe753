/* Interrupt controllers. By default KVM's split irqchip: local APICs in the
 * kernel, the I/O APIC in kvmc (devices/ioapic.c), no 8259 PIC. A VM that
 * asks for a PIT gets the kernel's full irqchip instead, which the
 * in-kernel PIT needs. Both route through the VM's one GSI routing table
 * (gsi_routes.h). */
#ifndef KVMC_IRQCHIP_H
#define KVMC_IRQCHIP_H

#include <stdbool.h>
#include <stdint.h>

#include "gsi_routes.h"

struct bus;
struct ioapic;

struct irqchip {
    int vm_fd;
    struct ioapic *ioapic; /* split irqchip; NULL with the kernel's (PIT) */
    struct gsi_routes routes;
};

/* After the memory slots: adding a slot once the irqchip exists costs
 * milliseconds on some hosts (measured: 5.5 ms against 0.1 ms on PVM).
 * Puts kvmc's I/O APIC on mmio. */
int irqchip_create(struct irqchip *c, int kvm_fd, int vm_fd, struct bus *mmio, bool pit);
/* After every thread that raises interrupts has stopped. */
void irqchip_destroy(struct irqchip *c);

/* Drives GSI gsi's line (any thread): KVMC_EINVAL past the last pin. */
int irqchip_set_irq(struct irqchip *c, unsigned gsi, int level);
/* One edge on gsi (raise, then lower). */
void irqchip_pulse(struct irqchip *c, unsigned gsi);
/* An irqfd on gsi; KVMC_ENOTSUP with kvmc's I/O APIC, whose pulses cost the
 * same one syscall (KVM_SIGNAL_MSI) and keep masking exact. */
int irqchip_irqfd(struct irqchip *c, int fd, unsigned gsi);
/* KVM_EXIT_IOAPIC_EOI: the guest ended a level-triggered interrupt. */
void irqchip_eoi(struct irqchip *c, uint8_t vector);

/* Whether KVM has this capability; KVMC_ENOTSUP naming it if not. */
int kvm_require(int kvm_fd, int cap, const char *name);

#endif
