#include <criterion/criterion.h>

#include "bus.h"

static uint64_t last_read_offset;
static uint64_t read_offset(void *opaque, uint64_t offset, unsigned size)
{
    (void)size;
    last_read_offset = offset;
    return (uint64_t)(uintptr_t)opaque + offset;
}
static const kvmc_device_ops ops = {.read = read_offset};

Test(bus, overlaps_are_rejected_adjacent_ranges_accepted)
{
    struct bus b;
    bus_init(&b, "PIO");
    cr_assert_eq(bus_add(&b, 0x100, 0x10, &ops, NULL, "a"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x100, 0x10, &ops, NULL, "same"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0xf8, 0x10, &ops, NULL, "left"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0x10f, 0x10, &ops, NULL, "right"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0x104, 0x2, &ops, NULL, "inside"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0x0, 0x1000, &ops, NULL, "around"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0xf0, 0x10, &ops, NULL, "below"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x110, 0x10, &ops, NULL, "above"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x200, 0, &ops, NULL, "empty"), KVMC_EINVAL);
    cr_assert_eq(bus_add(&b, UINT64_MAX - 4, 0x10, &ops, NULL, "wraps"), KVMC_EINVAL);
    cr_assert_eq(b.count, 3);
    bus_destroy(&b);
}

Test(bus, lookup_finds_the_owner_of_every_address)
{
    struct bus b;
    bus_init(&b, "MMIO");
    /* Added out of order; kept sorted. */
    for (uint64_t i = 0; i < 64; i++) {
        uint64_t base = ((i * 37) % 64) * 0x1000;
        cr_assert_eq(bus_add(&b, base, 0x800, &ops, (void *)(uintptr_t)base, "dev"), KVMC_OK);
    }
    for (uint64_t base = 0; base < 64 * 0x1000; base += 0x1000) {
        const struct bus_range *r = bus_find(&b, base + 0x7ff);
        cr_assert_not_null(r);
        cr_assert_eq(r->base, base);
        cr_assert_null(bus_find(&b, base + 0x800), "gap after 0x%llx", (unsigned long long)base);
    }
    cr_assert_null(bus_find(&b, 64 * 0x1000));
    bus_destroy(&b);
}

Test(bus, dispatch_passes_offsets_and_handles_edges)
{
    struct bus b;
    bus_init(&b, "PIO");
    cr_assert_eq(bus_add(&b, 0x3f8, 8, &ops, (void *)(uintptr_t)0x1000, "uart"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x500, 4, &(kvmc_device_ops){0}, NULL, "noops"), KVMC_OK);
    uint64_t v;
    cr_assert_eq(bus_read(&b, 0x3fd, 1, &v), 0);
    cr_assert_eq(last_read_offset, 5);
    cr_assert_eq(v, 0x1005);
    /* A 4-byte access at the last register straddles the end: unmapped. */
    cr_assert_eq(bus_read(&b, 0x3fe, 4, &v), -1);
    cr_assert_eq(v, ~0ull);
    cr_assert_eq(bus_read(&b, 0x80, 1, &v), -1);
    cr_assert_eq(v, ~0ull);
    /* Devices without callbacks read as all ones and ignore writes. */
    cr_assert_eq(bus_read(&b, 0x500, 4, &v), 0);
    cr_assert_eq(v, ~0ull);
    cr_assert_eq(bus_write(&b, 0x500, 4, 1), 0);
    cr_assert_eq(bus_write(&b, 0x600, 4, 1), -1);
    bus_destroy(&b);
}
