/* kvmc's I/O APIC model against a fake KVM: which pin changes become MSIs,
 * with what address and data, and when KVM's routes are rewritten. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>

#include "devices/ioapic.h"

struct fake_kvm {
    struct ioapic_msi sent[64];
    unsigned nsent;
    unsigned route_writes;
    unsigned nroutes;
    unsigned route_pins[IOAPIC_PINS];
    struct ioapic_msi routes[IOAPIC_PINS];
};

static int fake_signal(void *ctx, const struct ioapic_msi *msi)
{
    struct fake_kvm *k = ctx;
    if (k->nsent < 64)
        k->sent[k->nsent] = *msi;
    k->nsent++;
    return 0;
}

static int fake_routes(void *ctx, const unsigned *pins, const struct ioapic_msi *msis, unsigned n)
{
    struct fake_kvm *k = ctx;
    k->route_writes++;
    k->nroutes = n;
    for (unsigned i = 0; i < n; i++) {
        k->route_pins[i] = pins[i];
        k->routes[i] = msis[i];
    }
    return 0;
}

static struct ioapic *new_ioapic(struct fake_kvm *k)
{
    struct ioapic_host host = {.signal_msi = fake_signal, .set_level_routes = fake_routes,
                               .ctx = k};
    struct ioapic *io = ioapic_new(&host);
    cr_assert_not_null(io);
    return io;
}

static void write_reg(struct ioapic *io, uint32_t reg, uint32_t value)
{
    ioapic_mmio_write(io, 0x00, 4, reg);
    ioapic_mmio_write(io, 0x10, 4, value);
}

static uint32_t read_reg(struct ioapic *io, uint32_t reg)
{
    ioapic_mmio_write(io, 0x00, 4, reg);
    return (uint32_t)ioapic_mmio_read(io, 0x10, 4);
}

/* Programs pin: vector, fixed delivery, physical destination dest. */
static void program(struct ioapic *io, unsigned pin, uint8_t vector, uint8_t dest, bool level,
                    bool masked)
{
    write_reg(io, 0x11 + 2 * pin, (uint32_t)dest << 24);
    write_reg(io, 0x10 + 2 * pin,
              vector | (level ? 1u << 15 : 0) | (masked ? 1u << 16 : 0));
}

Test(ioapic, registers_read_back_like_an_82093aa)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    cr_assert_eq(read_reg(io, 0x01), 0x00170011u, "version 0x11, 24 pins");
    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++)
        cr_assert_eq(read_reg(io, 0x10 + 2 * pin), 1u << 16, "pin %u starts masked", pin);
    write_reg(io, 0x00, 0xffffffffu);
    cr_assert_eq(read_reg(io, 0x00), 0x0f000000u, "only the ID bits stick");
    /* Delivery status, remote IRR and the reserved bits are read-only. */
    write_reg(io, 0x12, 0xffffffffu);
    cr_assert_eq(read_reg(io, 0x12), 0x1ffffu & ~((1u << 12) | (1u << 14)));
    write_reg(io, 0x13, 0xffffffffu);
    cr_assert_eq(read_reg(io, 0x13), 0xff000000u);
    ioapic_free(io);
}

Test(ioapic, an_edge_pin_sends_one_msi_per_assertion)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    program(io, 4, 0x34, 1, false, false);
    ioapic_set_irq(io, 4, 1);
    ioapic_set_irq(io, 4, 1); /* raised again: a new event, as with KVM's */
    ioapic_set_irq(io, 4, 0);
    ioapic_set_irq(io, 4, 1);
    cr_assert_eq(k.nsent, 3);
    cr_assert_eq(k.sent[0].address, 0xfee01000ull, "physical destination 1");
    cr_assert_eq(k.sent[0].data, 0x34u, "fixed delivery, edge, vector 0x34");
    cr_assert_eq(k.route_writes, 0, "edge pins need no KVM routes");
    ioapic_free(io);
}

Test(ioapic, an_edge_while_masked_waits_for_the_unmask)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    ioapic_set_irq(io, 5, 1); /* reset state: masked */
    program(io, 6, 0x40, 0, false, true);
    ioapic_set_irq(io, 6, 1);
    ioapic_set_irq(io, 6, 0);
    ioapic_set_irq(io, 6, 1); /* two edges while masked: latched as one */
    ioapic_set_irq(io, IOAPIC_PINS, 1); /* no such pin */
    ioapic_set_irq(io, ~0u, 1);
    cr_assert_eq(k.nsent, 0);
    program(io, 6, 0x40, 0, false, false);
    cr_assert_eq(k.nsent, 1, "delivered once on unmask");
    cr_assert_eq(k.sent[0].data, 0x40u);
    program(io, 6, 0x40, 0, false, false);
    cr_assert_eq(k.nsent, 1, "and only once");
    ioapic_free(io);
}

/* A pulse is one event: an edge pin interrupts once per pulse; a level pin
 * once, and its line is low again afterwards, so the EOI brings nothing. */
Test(ioapic, a_pulse_is_one_interrupt)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    program(io, 16, 0x30, 0, false, false);
    for (unsigned i = 0; i < 3; i++)
        ioapic_pulse(io, 16);
    cr_assert_eq(k.nsent, 3);
    program(io, 17, 0x31, 0, true, false);
    ioapic_pulse(io, 17);
    cr_assert_eq(k.nsent, 4);
    ioapic_eoi(io, 0x31);
    cr_assert_eq(k.nsent, 4, "the line is low: no redelivery");
    ioapic_pulse(io, IOAPIC_PINS); /* no such pin */
    cr_assert_eq(k.nsent, 4);
    ioapic_free(io);
}

struct pulser {
    struct ioapic *io;
    unsigned n;
};

static void *pulse(void *arg)
{
    struct pulser *p = arg;
    for (unsigned i = 0; i < p->n; i++) {
        ioapic_set_irq(p->io, 16, 1);
        ioapic_set_irq(p->io, 16, 0);
    }
    return NULL;
}

static int no_routes(void *ctx, const unsigned *pins, const struct ioapic_msi *msis, unsigned n)
{
    (void)ctx, (void)pins, (void)msis, (void)n;
    cr_assert_fail("edge pins need no routes");
    return 0;
}

static int count_msi_atomically(void *ctx, const struct ioapic_msi *msi)
{
    (void)msi;
    __atomic_fetch_add((unsigned *)ctx, 1, __ATOMIC_RELAXED);
    return 0;
}

/* The I/O thread and the block workers signal the same pin at once, each
 * with a raise and a lower: no signal may be lost to the other's raise
 * (this lost an interrupt, and hung a Linux guest's disk, in the lab). */
Test(ioapic, concurrent_pulses_are_all_delivered)
{
    unsigned count = 0;
    struct ioapic_host host = {.signal_msi = count_msi_atomically,
                               .set_level_routes = no_routes, .ctx = &count};
    struct ioapic *io = ioapic_new(&host);
    cr_assert_not_null(io);
    write_reg(io, 0x10 + 2 * 16, 0x30);
    struct pulser p = {io, 20000};
    pthread_t a, b;
    pthread_create(&a, NULL, pulse, &p);
    pthread_create(&b, NULL, pulse, &p);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    cr_assert_eq(count, 40000u);
    ioapic_free(io);
}

Test(ioapic, a_level_pin_waits_for_the_eoi)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    program(io, 9, 0x51, 0, true, false);
    cr_assert_eq(k.route_writes, 1, "KVM learns the level-triggered vector");
    cr_assert_eq(k.nroutes, 1);
    cr_assert_eq(k.route_pins[0], 9u);
    cr_assert_eq(k.routes[0].data, 0x51u | 1u << 15);

    ioapic_set_irq(io, 9, 1);
    ioapic_set_irq(io, 9, 1);
    cr_assert_eq(k.nsent, 1, "remote IRR holds the second");
    cr_assert(read_reg(io, 0x10 + 2 * 9) & 1u << 14, "remote IRR set");
    ioapic_eoi(io, 0x50); /* another vector */
    cr_assert_eq(k.nsent, 1);
    ioapic_eoi(io, 0x51); /* still asserted: again */
    cr_assert_eq(k.nsent, 2);
    ioapic_set_irq(io, 9, 0);
    ioapic_eoi(io, 0x51);
    cr_assert_eq(k.nsent, 2, "lowered before the EOI: nothing more");
    cr_assert_eq(read_reg(io, 0x10 + 2 * 9) & 1u << 14, 0u, "remote IRR clear");
    ioapic_free(io);
}

Test(ioapic, unmasking_an_asserted_level_pin_delivers)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    program(io, 10, 0x60, 0, true, true);
    ioapic_set_irq(io, 10, 1);
    cr_assert_eq(k.nsent, 0);
    program(io, 10, 0x60, 0, true, false);
    cr_assert_eq(k.nsent, 1);
    ioapic_free(io);
}

Test(ioapic, routes_are_rewritten_only_when_they_change)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    program(io, 9, 0x51, 0, true, false);
    program(io, 9, 0x51, 0, true, true); /* masking alone: same route */
    program(io, 9, 0x51, 0, true, false);
    program(io, 3, 0x33, 0, false, false); /* an edge pin: no route */
    cr_assert_eq(k.route_writes, 1, "each rewrite costs the host an SRCU grace period");
    program(io, 9, 0x52, 2, true, false);
    cr_assert_eq(k.route_writes, 3, "destination then vector changed: %u", k.route_writes);
    cr_assert_eq(k.routes[0].address, 0xfee02000ull);
    program(io, 9, 0x52, 2, false, false); /* back to edge: the route goes */
    cr_assert_eq(k.nroutes, 0);
    ioapic_free(io);
}

Test(ioapic, logical_destination_and_delivery_mode_reach_the_msi)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    write_reg(io, 0x11 + 2 * 2, 0x03000000u);
    write_reg(io, 0x10 + 2 * 2, 0x41u | 1u << 8 | 1u << 11); /* lowest priority, logical */
    ioapic_set_irq(io, 2, 1);
    cr_assert_eq(k.nsent, 1);
    cr_assert_eq(k.sent[0].address, 0xfee03004ull);
    cr_assert_eq(k.sent[0].data, 0x141u);
    /* ExtINT would go to an 8259, which does not exist here. */
    write_reg(io, 0x10 + 2 * 3, 0x20u | 7u << 8);
    ioapic_set_irq(io, 3, 1);
    cr_assert_eq(k.nsent, 1);
    ioapic_free(io);
}

Test(ioapic, any_access_pattern_is_contained)
{
    struct fake_kvm k = {0};
    struct ioapic *io = new_ioapic(&k);
    srand(7);
    for (unsigned i = 0; i < 100000; i++) {
        uint64_t off = (uint64_t)(rand() % IOAPIC_MMIO_SIZE);
        unsigned size = 1u << (rand() % 4);
        if (rand() & 1)
            ioapic_mmio_write(io, off, size, ((uint64_t)rand() << 32) | (uint64_t)rand());
        else
            (void)ioapic_mmio_read(io, off, size);
        if (i % 7 == 0)
            ioapic_set_irq(io, (unsigned)(rand() % 30), rand() & 1);
        if (i % 11 == 0)
            ioapic_eoi(io, (uint8_t)rand());
    }
    cr_assert_eq(ioapic_mmio_read(io, 0x20, 4), 0u, "only IOREGSEL and IOWIN exist");
    cr_assert_eq(ioapic_mmio_read(io, 0x10, 2), 0u, "IOWIN is 32-bit only");
    cr_assert_leq(k.nroutes, (unsigned)IOAPIC_PINS);
    ioapic_free(io);
}
