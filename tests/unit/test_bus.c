#include <criterion/criterion.h>
#include <pthread.h>

#include "bus.h"
#include "kvmc/kvmc.h"

#define NR BUS_NO_READER

static uint64_t last_read_offset;
static uint64_t read_offset(void *opaque, uint64_t offset, unsigned size)
{
    (void)size;
    last_read_offset = offset;
    return (uint64_t)(uintptr_t)opaque + offset;
}
static const struct bus_ops ops = {.read = read_offset};

Test(bus, overlaps_are_rejected_adjacent_ranges_accepted)
{
    struct bus b;
    cr_assert_eq(bus_init(&b, "PIO", 0), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x100, 0x10, &ops, NULL, "a"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x100, 0x10, &ops, NULL, "same"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0xf8, 0x10, &ops, NULL, "left"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0x10f, 0x10, &ops, NULL, "right"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0x104, 0x2, &ops, NULL, "inside"), KVMC_EBUSY);
    cr_assert_eq(bus_add(&b, 0x0, 0x1000, &ops, NULL, "around"), KVMC_EBUSY);
    cr_assert_str_eq(kvmc_last_error(),
                     "PIO range 0x0+0x1000 for around overlaps a at 0x100+0x10");
    cr_assert_eq(bus_add(&b, 0xf0, 0x10, &ops, NULL, "below"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x110, 0x10, &ops, NULL, "above"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x200, 0, &ops, NULL, "empty"), KVMC_EINVAL);
    cr_assert_eq(bus_add(&b, UINT64_MAX - 4, 0x10, &ops, NULL, "wraps"), KVMC_EINVAL);
    cr_assert_eq(bus_count(&b), 3);
    bus_destroy(&b);
}

Test(bus, lookup_finds_the_owner_of_every_address)
{
    struct bus b;
    bus_init(&b, "MMIO", 0);
    /* Added out of order; kept sorted. */
    for (uint64_t i = 0; i < 64; i++) {
        uint64_t base = ((i * 37) % 64) * 0x1000;
        cr_assert_eq(bus_add(&b, base, 0x800, &ops, (void *)(uintptr_t)base, "dev"), KVMC_OK);
    }
    struct bus_range r;
    for (uint64_t base = 0; base < 64 * 0x1000; base += 0x1000) {
        cr_assert_eq(bus_lookup(&b, base + 0x7ff, &r), 0);
        cr_assert_eq(r.base, base);
        cr_assert_eq(bus_lookup(&b, base + 0x800, &r), -1, "gap after 0x%llx",
                     (unsigned long long)base);
    }
    cr_assert_eq(bus_lookup(&b, 64 * 0x1000, &r), -1);
    const struct bus_map *m = bus_enter(&b, NR);
    for (unsigned i = 1; i < m->count; i++)
        cr_assert_lt(m->ranges[i - 1].base, m->ranges[i].base);
    bus_leave(&b, NR);
    bus_destroy(&b);
}

Test(bus, dispatch_passes_offsets_and_handles_edges)
{
    struct bus b;
    bus_init(&b, "PIO", 0);
    cr_assert_eq(bus_add(&b, 0x3f8, 8, &ops, (void *)(uintptr_t)0x1000, "uart"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x500, 4, &(struct bus_ops){0}, NULL, "noops"), KVMC_OK);
    uint64_t v;
    cr_assert_eq(bus_read(&b, NR, 0x3fd, 1, &v), 0);
    cr_assert_eq(last_read_offset, 5);
    cr_assert_eq(v, 0x1005);
    /* A 4-byte access at the last register straddles the end: unmapped. */
    cr_assert_eq(bus_read(&b, NR, 0x3fe, 4, &v), -1);
    cr_assert_eq(v, ~0ull);
    cr_assert_eq(bus_read(&b, NR, 0x80, 1, &v), -1);
    cr_assert_eq(v, ~0ull);
    /* Devices without callbacks read as all ones and ignore writes. */
    cr_assert_eq(bus_read(&b, NR, 0x500, 4, &v), 0);
    cr_assert_eq(v, ~0ull);
    cr_assert_eq(bus_write(&b, NR, 0x500, 4, 1), 0);
    cr_assert_eq(bus_write(&b, NR, 0x600, 4, 1), -1);
    bus_destroy(&b);
}

Test(bus, ranges_move_and_go_away)
{
    struct bus b;
    bus_init(&b, "MMIO", 2);
    cr_assert_eq(bus_add(&b, 0x1000, 0x100, &ops, (void *)(uintptr_t)0xa000, "bar"), KVMC_OK);
    cr_assert_eq(bus_add(&b, 0x2000, 0x100, &ops, (void *)(uintptr_t)0xb000, "other"),
                 KVMC_OK);
    uint64_t v;
    /* A BAR moved: the old place is unmapped, the new one reaches the
     * same device at the same offsets. */
    cr_assert_eq(bus_move(&b, 0x1000, 0x8000), KVMC_OK);
    cr_assert_eq(bus_read(&b, 0, 0x1010, 4, &v), -1);
    cr_assert_eq(bus_read(&b, 1, 0x8010, 4, &v), 0);
    cr_assert_eq(v, 0xa010);
    /* Onto another range, or wrapping: refused, nothing changes. */
    cr_assert_eq(bus_move(&b, 0x8000, 0x1f80), KVMC_EBUSY);
    cr_assert_eq(bus_move(&b, 0x8000, UINT64_MAX - 0x10), KVMC_EINVAL);
    cr_assert_eq(bus_move(&b, 0x8001, 0x9000), KVMC_EINVAL);
    cr_assert_eq(bus_read(&b, 0, 0x8010, 4, &v), 0);
    /* Overlapping its own old place is fine. */
    cr_assert_eq(bus_move(&b, 0x8000, 0x8080), KVMC_OK);
    cr_assert_eq(bus_read(&b, 0, 0x8100, 4, &v), 0);
    cr_assert_eq(v, 0xa080);
    cr_assert_eq(bus_remove(&b, 0x8080), KVMC_OK);
    cr_assert_eq(bus_remove(&b, 0x8080), KVMC_EINVAL);
    cr_assert_eq(bus_read(&b, 0, 0x8100, 4, &v), -1);
    cr_assert_eq(bus_count(&b), 1);
    bus_destroy(&b);
}

Test(bus, a_reader_keeps_its_map_while_a_writer_replaces_it)
{
    struct bus b;
    bus_init(&b, "MMIO", 1);
    bus_add(&b, 0x1000, 0x100, &ops, (void *)(uintptr_t)0xa000, "bar");
    const struct bus_map *m = bus_enter(&b, 0);
    /* What a vCPU moving a BAR from inside a dispatch does. */
    for (unsigned i = 0; i < 100; i++)
        cr_assert_eq(bus_move(&b, 0x1000 + i * 0x1000, 0x2000 + i * 0x1000), KVMC_OK);
    uint64_t v;
    cr_assert_eq(bus_map_read(m, 0x1010, 4, &v), 0); /* still the old map, still valid */
    cr_assert_eq(v, 0xa010);
    bus_leave(&b, 0);
    cr_assert_eq(bus_read(&b, 0, 0x65010, 4, &v), 0);
    /* Maps nobody uses are freed as soon as a writer sees that. */
    bus_add(&b, 0x100000, 0x10, &ops, NULL, "x");
    unsigned retired = 0;
    for (struct bus_map *r = b.retired; r; r = r->next_retired)
        retired++;
    cr_assert_eq(retired, 0);
    bus_destroy(&b);
}

/* vCPUs dispatching while another moves a range back and forth: every access
 * lands on the device at one of its two places, never on freed memory
 * (ASan and valgrind runs check that) and never half-way. */
#define HAMMER_READERS 3
#define HAMMER_ROUNDS 20000

struct hammer {
    struct bus *bus;
    unsigned reader;
    unsigned hits, misses;
    bool bad;
};

static void *hammer_reader(void *arg)
{
    struct hammer *h = arg;
    for (unsigned i = 0; i < HAMMER_ROUNDS * 4; i++) {
        uint64_t v;
        int rc = bus_read(h->bus, h->reader, 0x10008, 4, &v);
        if (rc == 0 && v == 0xa008)
            h->hits++;
        else if (rc == 0 && v != 0xa008)
            h->bad = true;
        if (bus_read(h->bus, h->reader, 0x20008, 4, &v) == 0)
            h->hits += v == 0xa008, h->bad |= v != 0xa008;
        else
            h->misses++;
    }
    return NULL;
}

Test(bus, concurrent_readers_see_whole_maps)
{
    struct bus b;
    bus_init(&b, "MMIO", HAMMER_READERS);
    bus_add(&b, 0x10000, 0x100, &ops, (void *)(uintptr_t)0xa000, "moving");
    for (unsigned i = 0; i < 8; i++)
        bus_add(&b, 0x40000 + i * 0x1000, 0x100, &ops, NULL, "still");
    pthread_t t[HAMMER_READERS];
    struct hammer h[HAMMER_READERS];
    for (unsigned i = 0; i < HAMMER_READERS; i++) {
        h[i] = (struct hammer){.bus = &b, .reader = i};
        pthread_create(&t[i], NULL, hammer_reader, &h[i]);
    }
    for (unsigned i = 0; i < HAMMER_ROUNDS; i++) {
        cr_assert_eq(bus_move(&b, 0x10000, 0x20000), KVMC_OK);
        cr_assert_eq(bus_move(&b, 0x20000, 0x10000), KVMC_OK);
    }
    unsigned hits = 0;
    for (unsigned i = 0; i < HAMMER_READERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_not(h[i].bad, "reader %u saw a wrong value", i);
        hits += h[i].hits;
    }
    cr_assert_gt(hits, 0);
    unsigned retired = 0;
    for (struct bus_map *r = b.retired; r; r = r->next_retired)
        retired++;
    cr_assert_leq(retired, HAMMER_READERS, "at most one kept map per reader");
    bus_destroy(&b);
}
