/* kvmc's DNS forwarder for user networking (net/dns_forward.c): which
 * server it takes from a resolv.conf, what it does with the guest's queries
 * (well-formed or not), and the frames it answers with. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmc/kvmc.h"
#include "net/dns_forward.h"

static const uint8_t nameserver[4] = {10, 0, 2, 3};
static const uint8_t guest_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
static const uint8_t slirp_mac[6] = {0x52, 0x55, 0x0a, 0x00, 0x02, 0x03};
static const uint8_t guest_ip[4] = {10, 0, 2, 15};

static struct dns_forward d;
static int server = -1;
static unsigned server_port;
static uint8_t frames[8][2048];
static size_t frame_len[8];
static unsigned nframes;

static void deliver(void *opaque, const uint8_t *frame, size_t len)
{
    (void)opaque;
    cr_assert_lt(nframes, 8u);
    cr_assert_leq(len, 1514u, "a frame longer than the MTU allows");
    memcpy(frames[nframes], frame, len);
    frame_len[nframes++] = len;
}

static void setup(void)
{
    server = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(server, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(server, (struct sockaddr *)&sa, &len);
    server_port = ntohs(sa.sin_port);
    char spec[32];
    snprintf(spec, sizeof(spec), "127.0.0.1:%u", server_port);
    cr_assert_eq(dns_forward_init(&d, spec, NULL, nameserver, deliver, NULL), KVMC_OK);
    nframes = 0;
}

static void teardown(void)
{
    dns_forward_close(&d);
    close(server);
}

TestSuite(dns_forward, .init = setup, .fini = teardown, .timeout = 10);

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint16_t checksum(uint32_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += be16(p + i);
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* An Ethernet/IPv4/UDP frame from the guest to dst:dport carrying msg. */
static size_t query_frame(uint8_t *f, const uint8_t dst[4], uint16_t dport, const void *msg,
                          size_t len)
{
    memset(f, 0, 42);
    memcpy(f, slirp_mac, 6);
    memcpy(f + 6, guest_mac, 6);
    f[12] = 0x08;
    uint8_t *ip = f + 14, *udp = ip + 20;
    ip[0] = 0x45;
    ip[2] = (uint8_t)((20 + 8 + len) >> 8);
    ip[3] = (uint8_t)(20 + 8 + len);
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, guest_ip, 4);
    memcpy(ip + 16, dst, 4);
    udp[0] = 0x9c; /* port 40000 */
    udp[1] = 0x40;
    udp[2] = (uint8_t)(dport >> 8);
    udp[3] = (uint8_t)dport;
    udp[4] = (uint8_t)((8 + len) >> 8);
    udp[5] = (uint8_t)(8 + len);
    memcpy(udp + 8, msg, len);
    return 42 + len;
}

static unsigned pending(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++)
        n += d.q[i].fd >= 0;
    return n;
}

/* The server answers the one query it got with reply (its first two bytes
 * replaced by the query's ID unless keep_id). */
static void server_answers(const void *reply, size_t len, bool use_query_id)
{
    uint8_t q[512], r[8192];
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(server, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
    cr_assert_geq(n, 12, "the server got no query");
    memcpy(r, reply, len);
    if (use_query_id)
        memcpy(r, q, 2);
    cr_assert_eq(sendto(server, r, len, 0, (struct sockaddr *)&from, fl), (ssize_t)len);
}

static void run_io(void)
{
    for (unsigned round = 0; round < 3; round++) {
        struct pollfd fds[DNS_MAX_PENDING];
        int timeout = -1;
        unsigned n = dns_forward_prepare(&d, fds, DNS_MAX_PENDING, &timeout);
        poll(fds, n, 200);
        dns_forward_dispatch(&d, fds, n);
    }
}

Test(dns_forward, a_query_is_answered_as_if_from_the_nameserver)
{
    uint8_t f[600];
    const char query[] = "\x12\x34 a dns query";
    size_t len = query_frame(f, nameserver, 53, query, sizeof(query) - 1);
    cr_assert(dns_forward_input(&d, f, len));
    cr_assert_eq(pending(), 1u);
    const char reply[] = "\x12\x34 the answer";
    server_answers(reply, sizeof(reply) - 1, false);
    run_io();
    cr_assert_eq(nframes, 1u);
    cr_assert_eq(pending(), 0u, "an answered query's socket is closed");
    const uint8_t *e = frames[0], *ip = e + 14, *udp = ip + 20;
    cr_assert_eq(memcmp(e, guest_mac, 6), 0);
    cr_assert_eq(memcmp(e + 6, slirp_mac, 6), 0);
    cr_assert_eq(checksum(0, ip, 20), 0, "IP header checksum");
    cr_assert_eq(memcmp(ip + 12, nameserver, 4), 0);
    cr_assert_eq(memcmp(ip + 16, guest_ip, 4), 0);
    cr_assert_eq(be16(udp), 53);
    cr_assert_eq(be16(udp + 2), 40000);
    size_t ulen = be16(udp + 4);
    cr_assert_eq(ulen, 8 + sizeof(reply) - 1);
    uint8_t pseudo[12] = {10, 0, 2, 3, 10, 0, 2, 15, 0, 17, 0, (uint8_t)ulen};
    uint32_t sum = 0;
    for (unsigned i = 0; i < 12; i += 2)
        sum += be16(pseudo + i);
    cr_assert_eq(checksum(sum, udp, ulen), 0, "UDP checksum");
    cr_assert_eq(memcmp(udp + 8, reply, sizeof(reply) - 1), 0);
}

Test(dns_forward, a_large_answer_comes_in_ip_fragments)
{
    uint8_t f[600];
    const char query[] = "\xab\xcd big answer please";
    cr_assert(dns_forward_input(&d, f, query_frame(f, nameserver, 53, query, sizeof(query) - 1)));
    static uint8_t reply[3000];
    for (unsigned i = 0; i < sizeof(reply); i++)
        reply[i] = (uint8_t)(i * 7);
    reply[0] = 0xab;
    reply[1] = 0xcd;
    server_answers(reply, sizeof(reply), false);
    run_io();
    cr_assert_eq(nframes, 3u, "3008 bytes of UDP in 1480-byte fragments");
    static uint8_t whole[3008];
    size_t got = 0;
    uint16_t id = be16(frames[0] + 14 + 4);
    for (unsigned i = 0; i < nframes; i++) {
        const uint8_t *ip = frames[i] + 14;
        cr_assert_eq(checksum(0, ip, 20), 0);
        cr_assert_eq(be16(ip + 4), id, "one IP ID for all fragments");
        uint16_t frag = be16(ip + 6);
        cr_assert_eq((frag & 0x1fff) * 8u, got, "fragment %u offset", i);
        cr_assert_eq((frag & 0x2000) != 0, i + 1 < nframes, "MF on all but the last");
        size_t n = be16(ip + 2) - 20u;
        memcpy(whole + got, ip + 20, n);
        got += n;
    }
    cr_assert_eq(got, 8 + sizeof(reply));
    cr_assert_eq(memcmp(whole + 8, reply, sizeof(reply)), 0);
}

Test(dns_forward, an_answer_with_another_id_is_ignored)
{
    uint8_t f[600];
    const char query[] = "\x00\x01 the query";
    cr_assert(dns_forward_input(&d, f, query_frame(f, nameserver, 53, query, sizeof(query) - 1)));
    server_answers("\x00\x02 spoofed!", 11, false);
    run_io();
    cr_assert_eq(nframes, 0u);
    cr_assert_eq(pending(), 1u, "still waiting for the real answer");
}

Test(dns_forward, what_is_not_a_query_for_the_nameserver)
{
    uint8_t f[600];
    const char msg[] = "\x00\x01 not for us";
    size_t len = query_frame(f, (const uint8_t[4]){10, 0, 2, 2}, 53, msg, 12);
    cr_assert_not(dns_forward_input(&d, f, len), "to the host address: slirp's");
    len = query_frame(f, nameserver, 53, msg, 12);
    f[12] = 0x86; /* IPv6 ethertype */
    cr_assert_not(dns_forward_input(&d, f, len));
    cr_assert_not(dns_forward_input(&d, f, 20), "shorter than Ethernet + IP");
    cr_assert_eq(pending(), 0u);
}

/* Everything else to 10.0.2.3 is consumed and dropped: never forwarded,
 * never handed to slirp (which would send it to 10.0.2.3 on the host's
 * network). */
Test(dns_forward, hostile_or_other_traffic_to_the_nameserver_is_dropped)
{
    uint8_t f[600];
    const char msg[] = "\x00\x01 hostile";
    struct {
        const char *what;
        void (*mangle)(uint8_t *f, size_t *len);
    } cases[] = {
        {"TCP", NULL}, {"an IP fragment", NULL}, {"another port", NULL},
        {"a UDP length past the packet", NULL}, {"an IP length past the frame", NULL},
        {"an IP header length of 3 words", NULL}, {"a message shorter than a header", NULL},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = query_frame(f, nameserver, i == 2 ? 5353 : 53, msg, i == 6 ? 4 : 10);
        uint8_t *ip = f + 14;
        switch (i) {
        case 0: ip[9] = 6; break;
        case 1: ip[6] = 0x20; break; /* MF */
        case 3: ip[20 + 5] = 200; break;
        case 4: ip[3] = 250; break;
        case 5: ip[0] = 0x43; break;
        default: break;
        }
        cr_assert(dns_forward_input(&d, f, len), "%s: handed on", cases[i].what);
        cr_assert_eq(pending(), 0u, "%s: forwarded", cases[i].what);
    }
}

Test(dns_forward, a_flood_of_queries_holds_a_bounded_number_of_sockets)
{
    uint8_t f[600];
    for (unsigned i = 0; i < 200; i++) {
        uint8_t msg[12] = {(uint8_t)(i >> 8), (uint8_t)i};
        cr_assert(dns_forward_input(&d, f, query_frame(f, nameserver, 53, msg, sizeof(msg))));
    }
    cr_assert_eq(pending(), (unsigned)DNS_MAX_PENDING);
}

Test(dns_forward, an_unanswered_query_expires)
{
    uint8_t f[600];
    cr_assert(dns_forward_input(&d, f, query_frame(f, nameserver, 53, "\x00\x07 lost query", 13)));
    cr_assert_eq(pending(), 1u);
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++)
        if (d.q[i].fd >= 0)
            d.q[i].deadline_ms -= DNS_TIMEOUT_MS + 1; /* as if 5 s had passed */
    struct pollfd fds[DNS_MAX_PENDING];
    int timeout = -1;
    cr_assert_eq(dns_forward_prepare(&d, fds, DNS_MAX_PENDING, &timeout), 0u);
    cr_assert_eq(pending(), 0u);
}

static void resolv_conf(const char *text, char *path)
{
    strcpy(path, "/tmp/kvmc-resolv-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

Test(dns_forward, the_first_usable_nameserver_of_resolv_conf_is_the_server)
{
    char path[32];
    struct dns_forward r;
    resolv_conf("# comment\nsearch example.org\nnameserver bogus\n  nameserver 192.0.2.53\n"
                "nameserver 198.51.100.1\n", path);
    cr_assert_eq(dns_forward_init(&r, NULL, path, nameserver, deliver, NULL), KVMC_OK);
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&r.server;
    cr_assert_eq(r.server_len, sizeof(*v4));
    cr_assert_eq(v4->sin_addr.s_addr, inet_addr("192.0.2.53"));
    cr_assert_eq(ntohs(v4->sin_port), 53);
    unlink(path);
    resolv_conf("nameserver fe80::1%lo\n", path);
    cr_assert_eq(dns_forward_init(&r, NULL, path, nameserver, deliver, NULL), KVMC_OK);
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&r.server;
    cr_assert_eq(r.server_len, sizeof(*v6));
    cr_assert_eq(v6->sin6_family, AF_INET6);
    cr_assert_eq(v6->sin6_scope_id, 1u, "scope %%lo is interface 1");
    unlink(path);
    resolv_conf("options edns0\n", path);
    cr_assert_eq(dns_forward_init(&r, NULL, path, nameserver, deliver, NULL), KVMC_OK);
    cr_assert_eq(r.server_len, 0u, "no nameserver: none");
    unlink(path);
    cr_assert_eq(dns_forward_init(&r, NULL, "/nonexistent", nameserver, deliver, NULL), KVMC_OK);
    cr_assert_eq(r.server_len, 0u);
    cr_assert_eq(dns_forward_init(&r, "10.0.0.1:99999", NULL, nameserver, deliver, NULL),
                 KVMC_EINVAL);
    cr_assert_eq(dns_forward_init(&r, "localhost", NULL, nameserver, deliver, NULL), KVMC_EINVAL);
}
