/* The split virtqueue against a guest that lies: every case that must be
 * accepted is checked for what it yields, every hostile one for marking the
 * queue broken without reading or writing outside guest RAM. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "virtq_fixture.h"

static struct guest_memory gm;
static struct virtq q;
static struct virtq_chain *chain;
static uint16_t avail_idx;

static void setup(void)
{
    fq_setup(&gm, &q);
    chain = malloc(sizeof(*chain));
    avail_idx = 0;
    cr_assert(q.ready, "fixture ring is valid: %s", q.broken_reason);
}
static void teardown(void)
{
    free(chain);
    gm_destroy(&gm);
}
TestSuite(virtqueue, .init = setup, .fini = teardown);

/* A fresh ring within one test. */
static void reset_fixture(void)
{
    teardown();
    setup();
}

static void assert_broken(const char *why)
{
    cr_assert_eq(virtq_pop(&q, &gm, chain), -1, "%s: queue should be broken", why);
    cr_assert(q.broken);
    cr_assert_eq(virtq_pop(&q, &gm, chain), -1, "a broken queue stays broken");
}

Test(virtqueue, chain_of_readable_then_writable_buffers)
{
    fq_desc(&gm, FQ_DESC, 0, FQ_DATA, 16, VRING_DESC_F_NEXT, 1);
    fq_desc(&gm, FQ_DESC, 1, FQ_DATA + 0x100, 512, VRING_DESC_F_NEXT, 5);
    fq_desc(&gm, FQ_DESC, 5, FQ_DATA + 0x400, 1, VRING_DESC_F_WRITE, 0);
    fq_offer(&gm, &avail_idx, 0);
    cr_assert_eq(virtq_pop(&q, &gm, chain), 1);
    cr_assert_eq(chain->head, 0);
    cr_assert_eq(chain->count, 3);
    cr_assert_eq(chain->readable, 528);
    cr_assert_eq(chain->writable, 1);
    cr_assert_eq(chain->bufs[1].host, (uint8_t *)gm_ptr(&gm, FQ_DATA + 0x100, 1));
    cr_assert(chain->bufs[2].writable);
    cr_assert_eq(virtq_pop(&q, &gm, chain), 0, "nothing more available");
    virtq_push(&q, &gm, chain->head, 1);
    cr_assert_eq(fq_used_idx(&gm), 1);
    cr_assert_eq(fq_used(&gm, 0).id, 0);
    cr_assert_eq(fq_used(&gm, 0).len, 1);
}

Test(virtqueue, zero_length_buffers_are_harmless)
{
    fq_desc(&gm, FQ_DESC, 0, 0xdeadbeef000ull, 0, VRING_DESC_F_NEXT, 1);
    fq_desc(&gm, FQ_DESC, 1, FQ_DATA, 0, VRING_DESC_F_WRITE, 0);
    fq_offer(&gm, &avail_idx, 0);
    cr_assert_eq(virtq_pop(&q, &gm, chain), 1);
    cr_assert_eq(chain->count, 2);
    cr_assert_eq(chain->readable + chain->writable, 0);
}

Test(virtqueue, index_wrap_around)
{
    q.last_avail = 0xfffe;
    q.used_idx = 0xfffe;
    avail_idx = 0xfffe;
    for (int i = 0; i < 4; i++) {
        fq_desc(&gm, FQ_DESC, (unsigned)i, FQ_DATA, 8, 0, 0);
        fq_offer(&gm, &avail_idx, (uint16_t)i);
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(virtq_pop(&q, &gm, chain), 1, "chain %d across the wrap", i);
        cr_assert_eq(chain->head, i);
        virtq_push(&q, &gm, chain->head, 0);
    }
    cr_assert_eq(virtq_pop(&q, &gm, chain), 0);
    cr_assert_eq(fq_used_idx(&gm), 2, "0xfffe + 4 wraps to 2");
}

Test(virtqueue, descriptor_loop)
{
    fq_desc(&gm, FQ_DESC, 0, FQ_DATA, 8, VRING_DESC_F_NEXT, 1);
    fq_desc(&gm, FQ_DESC, 1, FQ_DATA, 8, VRING_DESC_F_NEXT, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("a loop");
    cr_assert(strstr(q.broken_reason, "loops"), "%s", q.broken_reason);
}

Test(virtqueue, self_loop)
{
    fq_desc(&gm, FQ_DESC, 3, FQ_DATA, 8, VRING_DESC_F_NEXT, 3);
    fq_offer(&gm, &avail_idx, 3);
    assert_broken("a descriptor pointing at itself");
}

Test(virtqueue, next_index_out_of_table)
{
    fq_desc(&gm, FQ_DESC, 0, FQ_DATA, 8, VRING_DESC_F_NEXT, 200);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("next beyond the table");
}

Test(virtqueue, head_index_out_of_table)
{
    fq_offer(&gm, &avail_idx, FQ_SIZE);
    assert_broken("head index = queue size");
}

Test(virtqueue, buffer_outside_guest_memory)
{
    fq_desc(&gm, FQ_DESC, 0, FQ_MEM - 4, 8, 0, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("buffer past the end of RAM");
    cr_assert(strstr(q.broken_reason, "outside guest RAM"), "%s", q.broken_reason);
}

Test(virtqueue, buffer_address_overflow)
{
    fq_desc(&gm, FQ_DESC, 0, UINT64_MAX - 8, 0xffffffff, 0, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("address + length wraps");
}

Test(virtqueue, readable_after_writable)
{
    fq_desc(&gm, FQ_DESC, 0, FQ_DATA, 8, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    fq_desc(&gm, FQ_DESC, 1, FQ_DATA, 8, 0, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("device-readable after device-writable");
}

Test(virtqueue, avail_index_jump)
{
    uint16_t idx = FQ_SIZE + 1; /* more than the ring can hold */
    gm_write(&gm, FQ_AVAIL + 2, &idx, 2);
    assert_broken("avail idx moved by more than the queue size");
    cr_assert(strstr(q.broken_reason, "jumped"), "%s", q.broken_reason);
}

Test(virtqueue, indirect_table)
{
    const uint64_t table = 0x5000;
    fq_desc(&gm, table, 0, FQ_DATA, 16, VRING_DESC_F_NEXT, 1);
    fq_desc(&gm, table, 1, FQ_DATA + 16, 4096, VRING_DESC_F_NEXT, 2);
    fq_desc(&gm, table, 2, FQ_DATA + 8192, 1, VRING_DESC_F_WRITE, 0);
    fq_desc(&gm, FQ_DESC, 0, table, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    fq_offer(&gm, &avail_idx, 0);
    cr_assert_eq(virtq_pop(&q, &gm, chain), 1, "%s", q.broken_reason);
    cr_assert_eq(chain->count, 3);
    cr_assert_eq(chain->readable, 4112);
    cr_assert_eq(chain->writable, 1);
}

Test(virtqueue, indirect_inside_indirect)
{
    const uint64_t table = 0x5000;
    fq_desc(&gm, table, 0, 0x6000, 16, VRING_DESC_F_INDIRECT, 0);
    fq_desc(&gm, FQ_DESC, 0, table, 16, VRING_DESC_F_INDIRECT, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("nested indirect table");
    cr_assert(strstr(q.broken_reason, "inside an indirect"), "%s", q.broken_reason);
}

Test(virtqueue, indirect_table_shapes)
{
    const uint64_t table = 0x5000;
    fq_desc(&gm, FQ_DESC, 0, table, 24, VRING_DESC_F_INDIRECT, 0); /* not 16-aligned */
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("indirect length not a multiple of 16");

    reset_fixture();
    fq_desc(&gm, FQ_DESC, 0, table, 16 * (VIRTQ_MAX_INDIRECT + 1), VRING_DESC_F_INDIRECT, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("indirect table too large");

    reset_fixture();
    fq_desc(&gm, FQ_DESC, 0, table, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("INDIRECT together with NEXT");

    reset_fixture();
    fq_desc(&gm, table, 0, FQ_DATA, 8, VRING_DESC_F_NEXT, 0); /* loops inside the table */
    fq_desc(&gm, FQ_DESC, 0, table, 16, VRING_DESC_F_INDIRECT, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("loop inside an indirect table");

    reset_fixture();
    fq_desc(&gm, FQ_DESC, 0, FQ_MEM - 8, 16, VRING_DESC_F_INDIRECT, 0);
    fq_offer(&gm, &avail_idx, 0);
    assert_broken("indirect table outside RAM");
}

Test(virtqueue, validation_of_ring_layout)
{
    struct virtq v = q;
    v.size = 6;
    cr_assert_not(virtq_validate(&v, &gm), "size not a power of two");
    v = q;
    v.size = 512;
    cr_assert_not(virtq_validate(&v, &gm), "size above the maximum");
    v = q;
    v.desc_gpa = FQ_DESC + 8;
    cr_assert_not(virtq_validate(&v, &gm), "misaligned descriptor table");
    v = q;
    v.used_gpa = FQ_MEM - 8;
    cr_assert_not(virtq_validate(&v, &gm), "used ring past the end of RAM");
    v = q;
    v.avail_gpa = 0xd0000000;
    cr_assert_not(virtq_validate(&v, &gm), "avail ring in the MMIO hole");
}

Test(virtqueue, interrupt_suppression)
{
    cr_assert_not(virtq_interrupt_suppressed(&q, &gm));
    uint16_t flags = VRING_AVAIL_F_NO_INTERRUPT;
    gm_write(&gm, FQ_AVAIL, &flags, 2);
    cr_assert(virtq_interrupt_suppressed(&q, &gm));
}

Test(virtqueue, longest_legal_chain)
{
    for (unsigned i = 0; i < FQ_SIZE; i++)
        fq_desc(&gm, FQ_DESC, i, FQ_DATA + 64 * i, 64,
                i + 1 < FQ_SIZE ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    fq_offer(&gm, &avail_idx, 0);
    cr_assert_eq(virtq_pop(&q, &gm, chain), 1);
    cr_assert_eq(chain->count, FQ_SIZE);
}

/* The device tells the driver not to notify while it is consuming, turns
 * notifications back on when it finds the ring empty, and starts every
 * queue with them on, whatever an earlier life of the ring left there. */
Test(virtqueue, notification_suppression)
{
    uint16_t flags;
    fq_desc(&gm, FQ_DESC, 0, FQ_DATA, 16, 0, 0);
    fq_desc(&gm, FQ_DESC, 1, FQ_DATA, 16, 0, 0);
    fq_offer(&gm, &avail_idx, 0);
    fq_offer(&gm, &avail_idx, 1);
    cr_assert_eq(virtq_pop(&q, &gm, chain), 1);
    gm_read(&gm, FQ_USED, &flags, 2);
    cr_assert_eq(flags, VRING_USED_F_NO_NOTIFY, "consuming: no notifies needed");
    cr_assert_eq(virtq_pop(&q, &gm, chain), 1);
    cr_assert_eq(virtq_pop(&q, &gm, chain), 0);
    gm_read(&gm, FQ_USED, &flags, 2);
    cr_assert_eq(flags, 0, "empty: the driver must notify again");

    flags = VRING_USED_F_NO_NOTIFY; /* left over from before a reset */
    gm_write(&gm, FQ_USED, &flags, 2);
    virtq_reset(&q);
    q.size = FQ_SIZE;
    q.desc_gpa = FQ_DESC;
    q.avail_gpa = FQ_AVAIL;
    q.used_gpa = FQ_USED;
    cr_assert(virtq_validate(&q, &gm));
    gm_read(&gm, FQ_USED, &flags, 2);
    cr_assert_eq(flags, 0, "a queue starts with notifications on");
}
