#include "gsi_routes.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../error.h"

#define PIC_PINS 16

static int commit_ioctl(void *ctx, const struct kvm_irq_routing *table)
{
    const struct gsi_routes *r = ctx;
    return ioctl(r->vm_fd, KVM_SET_GSI_ROUTING, table);
}

void gsi_routes_init(struct gsi_routes *r, int vm_fd, bool kernel_irqchip)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->vm_fd = vm_fd;
    r->kernel_irqchip = kernel_irqchip;
    r->commit = commit_ioctl;
    r->ctx = r;
}

void gsi_routes_destroy(struct gsi_routes *r) { pthread_mutex_destroy(&r->lock); }

static struct kvm_irq_routing_entry msi_entry(unsigned gsi, const struct gsi_msi_route *m)
{
    return (struct kvm_irq_routing_entry){
        .gsi = gsi, .type = KVM_IRQ_ROUTING_MSI,
        .u.msi = {.address_lo = (uint32_t)m->address,
                  .address_hi = (uint32_t)(m->address >> 32), .data = m->data},
    };
}

static struct kvm_irq_routing_entry chip_entry(unsigned gsi, unsigned chip, unsigned pin)
{
    return (struct kvm_irq_routing_entry){
        .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
        .u.irqchip = {.irqchip = chip, .pin = pin},
    };
}

/* The table from everything registered, with the lock held. */
static unsigned build(const struct gsi_routes *r, struct kvm_irq_routing_entry *e)
{
    unsigned n = 0;
    if (r->kernel_irqchip) { /* KVM's defaults (kvm_setup_default_irq_routing) */
        for (unsigned gsi = 0; gsi < GSI_ROUTES_PINS; gsi++) {
            e[n++] = chip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi);
            if (gsi < PIC_PINS)
                e[n++] = chip_entry(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                                 : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
        }
    }
    for (unsigned pin = 0; pin < GSI_ROUTES_PINS; pin++)
        if (r->pin_routed[pin])
            e[n++] = msi_entry(pin, &r->pins[pin]);
    for (unsigned i = 0; i < GSI_ROUTES_MAX_MSI; i++)
        if (r->msi_used[i])
            e[n++] = msi_entry(GSI_ROUTES_MSI_BASE + i, &r->msi[i]);
    return n;
}

static unsigned count_locked(const struct gsi_routes *r);

static int rewrite(struct gsi_routes *r)
{
    struct kvm_irq_routing *table =
        calloc(1, sizeof(*table) + count_locked(r) * sizeof(struct kvm_irq_routing_entry));
    if (!table)
        return kvmc_fail(KVMC_ENOMEM, "allocating the GSI routing table");
    table->nr = build(r, table->entries);
    int rc = r->commit(r->ctx, table);
    int e = errno;
    free(table);
    if (rc == 0)
        return KVMC_OK;
    if (!r->warned) { /* once: a guest may reprogram its interrupts in a loop */
        r->warned = true;
        fprintf(stderr, "kvmc: KVM_SET_GSI_ROUTING: %s; level-triggered EOIs and MSI "
                        "routes may not reach the guest\n", strerror(e));
    }
    return kvmc_fail_errno(KVMC_EKVM, e, "KVM_SET_GSI_ROUTING");
}

int gsi_routes_set_pins(struct gsi_routes *r, const unsigned *pins,
                        const struct gsi_msi_route *msis, unsigned n)
{
    pthread_mutex_lock(&r->lock);
    memset(r->pin_routed, 0, sizeof(r->pin_routed));
    for (unsigned i = 0; i < n; i++)
        if (pins[i] < GSI_ROUTES_PINS) {
            r->pin_routed[pins[i]] = true;
            r->pins[pins[i]] = msis[i];
        }
    int err = rewrite(r);
    pthread_mutex_unlock(&r->lock);
    return err ? -1 : 0;
}

int gsi_routes_alloc_msi(struct gsi_routes *r, unsigned *gsi)
{
    pthread_mutex_lock(&r->lock);
    int err = kvmc_fail(KVMC_ENOTSUP, "all %u MSI routes are in use", GSI_ROUTES_MAX_MSI);
    for (unsigned i = 0; i < GSI_ROUTES_MAX_MSI; i++)
        if (!r->msi_used[i]) {
            r->msi_used[i] = true;
            r->msi[i] = (struct gsi_msi_route){0}; /* routes nowhere until set */
            *gsi = GSI_ROUTES_MSI_BASE + i;
            err = KVMC_OK;
            break;
        }
    pthread_mutex_unlock(&r->lock);
    return err;
}

static bool valid_msi_gsi(const struct gsi_routes *r, unsigned gsi)
{
    return gsi >= GSI_ROUTES_MSI_BASE && gsi - GSI_ROUTES_MSI_BASE < GSI_ROUTES_MAX_MSI &&
           r->msi_used[gsi - GSI_ROUTES_MSI_BASE];
}

int gsi_routes_set_msi(struct gsi_routes *r, unsigned gsi, const struct gsi_msi_route *msi)
{
    pthread_mutex_lock(&r->lock);
    int err;
    if (!valid_msi_gsi(r, gsi)) {
        err = kvmc_fail(KVMC_EINVAL, "GSI %u is not an allocated MSI route", gsi);
    } else {
        r->msi[gsi - GSI_ROUTES_MSI_BASE] = *msi;
        err = rewrite(r);
    }
    pthread_mutex_unlock(&r->lock);
    return err;
}

void gsi_routes_free_msi(struct gsi_routes *r, unsigned gsi)
{
    pthread_mutex_lock(&r->lock);
    if (valid_msi_gsi(r, gsi)) {
        r->msi_used[gsi - GSI_ROUTES_MSI_BASE] = false;
        rewrite(r);
    }
    pthread_mutex_unlock(&r->lock);
}

static unsigned count_locked(const struct gsi_routes *r)
{
    unsigned n = r->kernel_irqchip ? GSI_ROUTES_PINS + PIC_PINS : 0;
    for (unsigned pin = 0; pin < GSI_ROUTES_PINS; pin++)
        n += r->pin_routed[pin];
    for (unsigned i = 0; i < GSI_ROUTES_MAX_MSI; i++)
        n += r->msi_used[i];
    return n;
}

unsigned gsi_routes_count(struct gsi_routes *r)
{
    pthread_mutex_lock(&r->lock);
    unsigned n = count_locked(r);
    pthread_mutex_unlock(&r->lock);
    return n;
}
