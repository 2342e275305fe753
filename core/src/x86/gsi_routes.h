/* The one owner of KVM's GSI routing table. KVM_SET_GSI_ROUTING replaces
 * the whole table, so everything that needs a route registers here and
 * every change rewrites the table from all of them:
 *   - the kernel's irqchip (a VM with a PIT): its default PIC and I/O APIC
 *     routes for GSIs 0-23, which a bare rewrite would drop;
 *   - kvmc's I/O APIC (split irqchip): one MSI route per level-triggered
 *     pin, so that KVM reports their EOIs (devices/ioapic.h);
 *   - MSI routes for irqfds (MSI-X vectors of virtio-pci and VFIO devices),
 *     on GSIs from GSI_ROUTES_MSI_BASE up.
 * A rewrite costs an SRCU grace period in the kernel: callers change routes
 * only when they change, never per interrupt.
 *
 * Threads: every function takes the table's lock. */
#ifndef KVMC_GSI_ROUTES_H
#define KVMC_GSI_ROUTES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define GSI_ROUTES_PINS 24       /* I/O APIC pins: GSIs 0-23 */
#define GSI_ROUTES_MSI_BASE 24   /* first GSI handed out for MSI routes */
#define GSI_ROUTES_MAX_MSI 512

struct kvm_irq_routing;

struct gsi_msi_route {
    uint64_t address;
    uint32_t data;
};

struct gsi_routes {
    pthread_mutex_t lock;
    bool kernel_irqchip;          /* keep the kernel's default routes */
    bool pin_routed[GSI_ROUTES_PINS];
    struct gsi_msi_route pins[GSI_ROUTES_PINS];
    bool msi_used[GSI_ROUTES_MAX_MSI];
    struct gsi_msi_route msi[GSI_ROUTES_MAX_MSI];
    bool warned;                  /* a failed rewrite was reported */
    /* Installs a table: KVM_SET_GSI_ROUTING on vm_fd unless a test sets
     * its own. 0 or -1 (errno set). */
    int (*commit)(void *ctx, const struct kvm_irq_routing *table);
    void *ctx;
    int vm_fd;
};

/* kernel_irqchip: the VM has KVM's PIC and I/O APIC (not kvmc's). */
void gsi_routes_init(struct gsi_routes *r, int vm_fd, bool kernel_irqchip);
void gsi_routes_destroy(struct gsi_routes *r);

/* Replaces kvmc's I/O APIC routes with these n (pin, MSI) pairs. -1 if KVM
 * refused the table (reported once on stderr). */
int gsi_routes_set_pins(struct gsi_routes *r, const unsigned *pins,
                        const struct gsi_msi_route *msis, unsigned n);

/* A GSI for an MSI route (KVMC_ENOTSUP when all are taken), then its target
 * (any number of times), then its release. */
int gsi_routes_alloc_msi(struct gsi_routes *r, unsigned *gsi);
int gsi_routes_set_msi(struct gsi_routes *r, unsigned gsi, const struct gsi_msi_route *msi);
void gsi_routes_free_msi(struct gsi_routes *r, unsigned gsi);

/* How many entries the table has now (for tests). */
unsigned gsi_routes_count(struct gsi_routes *r);

#endif
