/* The one GSI routing table: I/O APIC level routes and MSI routes never wipe
 * each other out, and a VM with the kernel's irqchip keeps its default
 * routes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/kvm.h>
#include <string.h>

#include "kvmc/kvmc.h"
#include "x86/gsi_routes.h"

struct captured {
    unsigned commits;
    unsigned nr;
    struct kvm_irq_routing_entry e[1024];
    bool fail;
};

static int capture(void *ctx, const struct kvm_irq_routing *t)
{
    struct captured *c = ctx;
    if (c->fail) {
        errno = EINVAL;
        return -1;
    }
    c->commits++;
    c->nr = t->nr;
    memcpy(c->e, t->entries, t->nr * sizeof(t->entries[0]));
    return 0;
}

static const struct kvm_irq_routing_entry *find(const struct captured *c, unsigned gsi,
                                                unsigned type)
{
    for (unsigned i = 0; i < c->nr; i++)
        if (c->e[i].gsi == gsi && c->e[i].type == type)
            return &c->e[i];
    return NULL;
}

static void setup(struct gsi_routes *r, struct captured *c, bool kernel)
{
    memset(c, 0, sizeof(*c));
    gsi_routes_init(r, -1, kernel);
    r->commit = capture;
    r->ctx = c;
}

Test(gsi_routes, pin_rewrites_keep_msi_routes_and_back)
{
    struct gsi_routes r;
    struct captured c;
    setup(&r, &c, false);
    unsigned a, b;
    cr_assert_eq(gsi_routes_alloc_msi(&r, &a), KVMC_OK);
    cr_assert_eq(gsi_routes_alloc_msi(&r, &b), KVMC_OK);
    cr_assert_geq(a, GSI_ROUTES_MSI_BASE, "MSI GSIs start above the I/O APIC pins");
    cr_assert_neq(a, b);
    struct gsi_msi_route m = {.address = 0xfee00000, .data = 0x41};
    cr_assert_eq(gsi_routes_set_msi(&r, a, &m), KVMC_OK);

    unsigned pins[] = {4, 9};
    struct gsi_msi_route pin_msi[] = {{0xfee00000, 0x30}, {0xfee00000, 0x39}};
    cr_assert_eq(gsi_routes_set_pins(&r, pins, pin_msi, 2), 0);
    cr_assert_eq(c.nr, 4, "two pins and two MSI routes");
    const struct kvm_irq_routing_entry *e = find(&c, a, KVM_IRQ_ROUTING_MSI);
    cr_assert_not_null(e, "the guest reprogramming its I/O APIC kept the MSI route");
    cr_assert_eq(e->u.msi.data, 0x41);
    cr_assert_not_null(find(&c, 9, KVM_IRQ_ROUTING_MSI));

    m.data = 0x42; /* the guest retargets its MSI-X vector */
    cr_assert_eq(gsi_routes_set_msi(&r, a, &m), KVMC_OK);
    cr_assert_not_null(find(&c, 4, KVM_IRQ_ROUTING_MSI), "and the pins stay");
    cr_assert_eq(find(&c, a, KVM_IRQ_ROUTING_MSI)->u.msi.data, 0x42);

    gsi_routes_free_msi(&r, a);
    cr_assert_null(find(&c, a, KVM_IRQ_ROUTING_MSI));
    cr_assert_eq(gsi_routes_set_msi(&r, a, &m), KVMC_EINVAL, "a freed GSI is not a route");
    cr_assert_eq(gsi_routes_set_msi(&r, 5, &m), KVMC_EINVAL, "nor is a pin");
    cr_assert_eq(gsi_routes_count(&r), 3);
    gsi_routes_destroy(&r);
}

Test(gsi_routes, the_kernels_irqchip_keeps_its_default_routes)
{
    struct gsi_routes r;
    struct captured c;
    setup(&r, &c, true);
    unsigned gsi;
    cr_assert_eq(gsi_routes_alloc_msi(&r, &gsi), KVMC_OK);
    struct gsi_msi_route m = {.address = 0xfee00000, .data = 0x50};
    cr_assert_eq(gsi_routes_set_msi(&r, gsi, &m), KVMC_OK);
    /* What kvm_setup_default_irq_routing installs: I/O APIC pins 0-23,
     * PIC pins 0-15. */
    cr_assert_eq(c.nr, 24 + 16 + 1);
    for (unsigned pin = 0; pin < 24; pin++) {
        unsigned n = 0;
        for (unsigned i = 0; i < c.nr; i++)
            if (c.e[i].gsi == pin && c.e[i].type == KVM_IRQ_ROUTING_IRQCHIP) {
                n++;
                if (c.e[i].u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC)
                    cr_assert_eq(c.e[i].u.irqchip.pin, pin);
                else
                    cr_assert_eq(c.e[i].u.irqchip.irqchip,
                                 pin < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
            }
        cr_assert_eq(n, pin < 16 ? 2u : 1u, "GSI %u", pin);
    }
    gsi_routes_destroy(&r);
}

Test(gsi_routes, allocation_is_bounded_and_failures_are_reported)
{
    struct gsi_routes r;
    struct captured c;
    setup(&r, &c, false);
    unsigned gsi = 0;
    for (unsigned i = 0; i < GSI_ROUTES_MAX_MSI; i++)
        cr_assert_eq(gsi_routes_alloc_msi(&r, &gsi), KVMC_OK);
    cr_assert_eq(gsi_routes_alloc_msi(&r, &gsi), KVMC_ENOTSUP);
    cr_assert(strstr(kvmc_last_error(), "MSI routes are in use"));
    c.fail = true;
    struct gsi_msi_route m = {0};
    cr_assert_eq(gsi_routes_set_msi(&r, GSI_ROUTES_MSI_BASE, &m), KVMC_EKVM);
    cr_assert(strstr(kvmc_last_error(), "KVM_SET_GSI_ROUTING"));
    gsi_routes_destroy(&r);
}
