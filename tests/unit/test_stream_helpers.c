/* The pieces the stream devices are built from: the byte FIFO that bounds
 * per-connection buffering, the chain cursor that parses headers split
 * across descriptors, and the network description parser. */
#include <criterion/criterion.h>
#include <string.h>

#include "bytering.h"
#include "kvmc/kvmc.h"
#include "net_spec.h"
#include "virtio/chain.h"

Test(bytering, never_takes_more_than_its_capacity)
{
    struct bytering r;
    cr_assert_eq(bytering_init(&r, 8), KVMC_OK);
    cr_assert_eq(bytering_push(&r, "abcdefghij", 10), 8);
    cr_assert_eq(bytering_space(&r), 0);
    char out[16] = {0};
    cr_assert_eq(bytering_pop(&r, out, 3), 3);
    cr_assert_str_eq(out, "abc");
    /* Wraps around: the free run is split, push still takes all 3. */
    cr_assert_eq(bytering_push(&r, "XYZ", 3), 3);
    memset(out, 0, sizeof(out));
    cr_assert_eq(bytering_pop(&r, out, sizeof(out)), 8);
    cr_assert_str_eq(out, "defghXYZ");
    cr_assert_eq(r.len, 0);
    bytering_free(&r);
}

Test(bytering, free_run_and_commit_for_direct_reads)
{
    struct bytering r;
    cr_assert_eq(bytering_init(&r, 4), KVMC_OK);
    uint8_t *p;
    cr_assert_eq(bytering_free_run(&r, &p), 4);
    memcpy(p, "wxyz", 4);
    bytering_commit(&r, 4);
    cr_assert_eq(bytering_free_run(&r, &p), 0);
    const uint8_t *q;
    cr_assert_eq(bytering_peek(&r, &q), 4);
    cr_assert(!memcmp(q, "wxyz", 4));
    bytering_drop(&r, 100); /* more than held: drops what is there */
    cr_assert_eq(r.len, 0);
    bytering_free(&r);
}

static uint8_t b0[3], b1[5], w0[4], w1[4];

static struct virtq_chain make_chain(void)
{
    struct virtq_chain c = {.count = 4, .readable = 8, .writable = 8};
    memcpy(b0, "abc", 3);
    memcpy(b1, "defgh", 5);
    c.bufs[0] = (struct virtq_buf){b0, 3, false};
    c.bufs[1] = (struct virtq_buf){b1, 5, false};
    c.bufs[2] = (struct virtq_buf){w0, 4, true};
    c.bufs[3] = (struct virtq_buf){w1, 4, true};
    return c;
}

Test(chain, reads_across_buffers_and_stops_at_writable)
{
    struct virtq_chain c = make_chain();
    struct chain_cursor cur = {.chain = &c};
    char out[16] = {0};
    cr_assert_eq(chain_read(&cur, out, 4), 4);
    cr_assert_str_eq(out, "abcd");
    cr_assert_eq(chain_read(&cur, out, 16), 4, "only readable bytes, never writable ones");
    cr_assert(!memcmp(out, "efgh", 4));
}

Test(chain, writes_only_writable_buffers_and_never_past_them)
{
    struct virtq_chain c = make_chain();
    struct chain_cursor cur = {.chain = &c};
    cr_assert_eq(chain_write(&cur, "0123456789", 10), 8);
    cr_assert(!memcmp(w0, "0123", 4) && !memcmp(w1, "4567", 4));
    cr_assert(!memcmp(b0, "abc", 3), "readable buffers untouched");
}

Test(chain, iov_limits_bytes_and_entries)
{
    struct virtq_chain c = make_chain();
    struct chain_cursor cur = {.chain = &c};
    chain_write(&cur, "xx", 2);
    struct iovec iov[4];
    size_t bytes;
    cr_assert_eq(chain_iov(&cur, true, iov, 4, 5, &bytes), 2);
    cr_assert_eq(bytes, 5);
    cr_assert_eq(iov[0].iov_base, w0 + 2);
    cr_assert_eq(iov[0].iov_len, 2);
    cr_assert_eq(iov[1].iov_len, 3);
    cr_assert_eq(chain_iov(&cur, true, iov, 1, 100, &bytes), 1);
    cr_assert_eq(bytes, 2);
}

Test(net_spec, user_with_mac_and_forwards)
{
    struct net_config n;
    cr_assert_eq(net_spec_parse("user,mac=52:54:00:01:02:03,hostfwd=tcp::2222-:22,"
                                "hostfwd=udp:127.0.0.2:5353-10.0.2.16:53", &n), KVMC_OK);
    cr_assert(!n.tap && n.has_mac && n.mac[5] == 3);
    cr_assert_eq(n.nforwards, 2);
    cr_assert(!n.forwards[0].udp && n.forwards[0].host_port == 2222 &&
              n.forwards[0].guest_port == 22 && n.forwards[0].host_addr == 0);
    cr_assert(n.forwards[1].udp && n.forwards[1].host_port == 5353 &&
              n.forwards[1].guest_port == 53 && n.forwards[1].guest_addr != 0);
}

Test(net_spec, tap_and_limits)
{
    struct net_config n;
    cr_assert_eq(net_spec_parse("tap=tap0", &n), KVMC_OK);
    cr_assert(n.tap);
    cr_assert_str_eq(n.ifname, "tap0");
    cr_assert_eq(net_spec_parse("tap=abcdefghijklmnop", &n), KVMC_EINVAL, "16 chars is too long");
    char many[1024] = "user";
    for (int i = 0; i < 9; i++)
        strcat(many, ",hostfwd=tcp::1-:1");
    cr_assert_eq(net_spec_parse(many, &n), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "at most 8"));
    char huge[2048];
    memset(huge, 'u', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = 0;
    cr_assert_eq(net_spec_parse(huge, &n), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "longer than"));
    cr_assert_eq(net_spec_parse(NULL, &n), KVMC_EINVAL);
    cr_assert_eq(net_spec_parse("user,,mac=52:54:00:01:02:03", &n), KVMC_OK,
                 "empty parts are skipped");
}
