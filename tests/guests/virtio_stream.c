/* Guest sides of the stream devices, polling at CPL3 like virtio.c:
 * virtio-console, virtio-vsock and virtio-net. Each talks to a peer the
 * integration test runs on the host and prints one result line, a contract
 * with tests/integration/test_virtio_stream.c. */
#include <stdbool.h>
#include <stdint.h>

#include "guest.h"

static struct vq_ring rings[3] __attribute__((aligned(4096)));
static struct vq qs[3];

static void copy(void *dst, const void *src, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        ((uint8_t *)dst)[i] = ((const uint8_t *)src)[i];
}

static bool same(const void *a, const void *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (((const uint8_t *)a)[i] != ((const uint8_t *)b)[i])
            return false;
    return true;
}

static unsigned length(const char *s)
{
    unsigned n = 0;
    while (s[n])
        n++;
    return n;
}

/* Puts buffer `buf` of `len` bytes in descriptor d and offers it. */
static void offer(struct vq *q, uint16_t d, void *buf, uint32_t len, bool writable)
{
    q->ring->desc[d] = (struct vq_desc){(uint64_t)buf, len, writable ? VQ_F_WRITE : 0, 0};
    vq_offer(q, d);
}

/* Sends one buffer on a transmit queue (descriptor 0) and waits for it. */
static bool transmit(struct vq *q, void *buf, uint32_t len)
{
    uint32_t id, used;
    offer(q, 0, buf, len, false);
    return vq_take(q, &id, &used, 10);
}

/* ------------------------------------------------------ virtio-console */

void test_virtio_console(void)
{
    uint64_t base = virtio_find(3);
    if (!base || !virtio_setup(base, 0, qs, rings, 2)) {
        puts_serial("virtio-console: setup FAILED\n");
        return;
    }
    static char in[128], out[160];
    offer(&qs[0], 0, in, sizeof(in) - 1, true);
    static const char hello[] = "hello from hvc0\n";
    copy(out, hello, sizeof(hello) - 1);
    if (!transmit(&qs[1], out, sizeof(hello) - 1)) {
        puts_serial("virtio-console: transmit FAILED\n");
        return;
    }
    /* The host answers with a line; gather until the newline. */
    unsigned got = 0;
    static char line[128];
    while (got < sizeof(line) - 1 && (!got || line[got - 1] != '\n')) {
        uint32_t id, len;
        if (!vq_take(&qs[0], &id, &len, 10)) {
            puts_serial("virtio-console: no input from the host\n");
            return;
        }
        for (uint32_t i = 0; i < len && got < sizeof(line) - 1; i++)
            line[got++] = in[i];
        offer(&qs[0], 0, in, sizeof(in) - 1, true);
    }
    line[got ? got - 1 : 0] = 0;
    static const char echo[] = "echo: ";
    copy(out, echo, 6);
    copy(out + 6, line, length(line));
    out[6 + length(line)] = '\n';
    transmit(&qs[1], out, 7 + length(line));
    puts_serial("virtio-console: received '");
    puts_serial(line);
    puts_serial("'\n");
}

/* ------------------------------------------------------ virtio-vsock */

struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE };

#define VSOCK_RXBUF 300
static uint8_t vs_rx[4][VSOCK_RXBUF];
static uint8_t vs_tx[VSOCK_RXBUF];
static uint64_t vs_cid;
static uint32_t vs_fwd_cnt;

static void vs_send(uint32_t src, uint32_t dst, uint16_t op, uint32_t flags, const void *data,
                    uint32_t len)
{
    struct vsock_hdr h = {
        .src_cid = vs_cid, .dst_cid = 2, .src_port = src, .dst_port = dst, .len = len,
        .type = 1, .op = op, .flags = flags, .buf_alloc = 4096, .fwd_cnt = vs_fwd_cnt,
    };
    copy(vs_tx, &h, sizeof(h));
    copy(vs_tx + sizeof(h), data, len);
    transmit(&qs[1], vs_tx, (uint32_t)sizeof(h) + len);
}

/* Next packet from the host into *h and payload (up to cap bytes). */
static bool vs_receive(struct vsock_hdr *h, char *payload, unsigned cap, unsigned seconds)
{
    uint32_t id, len;
    if (!vq_take(&qs[0], &id, &len, seconds) || id >= 4 || len < sizeof(*h))
        return false;
    copy(h, vs_rx[id], sizeof(*h));
    unsigned n = h->len < cap - 1 ? h->len : cap - 1;
    copy(payload, vs_rx[id] + sizeof(*h), n);
    payload[n] = 0;
    vs_fwd_cnt += h->len;
    offer(&qs[0], (uint16_t)id, vs_rx[id], VSOCK_RXBUF, true);
    return true;
}

/* The host's connection request may come at any time: kept for step 3. */
static bool vs_host_requested;
static uint32_t vs_host_port;

/* Skips credit updates, which the host may send at any time. */
static bool vs_expect(uint16_t op, struct vsock_hdr *h, char *payload, unsigned cap)
{
    while (vs_receive(h, payload, cap, 10)) {
        if (h->op == OP_REQUEST && h->dst_port == 6000) {
            vs_host_requested = true;
            vs_host_port = h->src_port;
            if (op == OP_REQUEST)
                return true;
        } else if (h->op != OP_CREDIT_UPDATE) {
            if (h->op != op) {
                puts_serial(" [unexpected op ");
                put_dec(h->op);
                puts_serial("]");
            }
            return h->op == op;
        }
    }
    return false;
}

void test_virtio_vsock(void)
{
    uint64_t base = virtio_find(19);
    if (!base || !virtio_setup(base, 0, qs, rings, 3)) {
        puts_serial("virtio-vsock: setup FAILED\n");
        return;
    }
    vs_cid = virtio_config8(base, 0) | ((uint64_t)virtio_config8(base, 1) << 8);
    for (uint16_t i = 0; i < 4; i++)
        offer(&qs[0], i, vs_rx[i], VSOCK_RXBUF, true);
    struct vsock_hdr h;
    static char data[256];

    puts_serial("virtio-vsock: cid ");
    put_dec(vs_cid);
    /* 1. Nothing listens on port 5001: refused. */
    vs_send(1001, 5001, OP_REQUEST, 0, 0, 0);
    bool refused = vs_expect(OP_RST, &h, data, sizeof(data)) && h.dst_port == 1001;
    puts_serial(refused ? ", refused ok" : ", refused FAILED");

    /* 2. Guest to host: the host echoes in capitals. */
    vs_fwd_cnt = 0;
    vs_send(1000, 5000, OP_REQUEST, 0, 0, 0);
    bool connected = vs_expect(OP_RESPONSE, &h, data, sizeof(data));
    vs_send(1000, 5000, OP_RW, 0, "hello vsock", 11);
    if (connected && vs_expect(OP_RW, &h, data, sizeof(data))) {
        puts_serial(", guest->host reply '");
        puts_serial(data);
        puts_serial("'");
    } else {
        puts_serial(", guest->host FAILED");
    }
    vs_send(1000, 5000, OP_SHUTDOWN, 3, 0, 0);
    puts_serial(vs_expect(OP_RST, &h, data, sizeof(data)) ? ", close ok" : ", close FAILED");

    /* 3. Host to guest: the host connected with "CONNECT 6000". */
    bool requested = vs_host_requested || vs_expect(OP_REQUEST, &h, data, sizeof(data));
    uint32_t host_port = vs_host_port;
    if (requested) {
        vs_fwd_cnt = 0; /* credit counts are per connection */
        vs_send(6000, host_port, OP_RESPONSE, 0, 0, 0);
        if (vs_expect(OP_RW, &h, data, sizeof(data))) {
            puts_serial(", host->guest got '");
            puts_serial(data);
            puts_serial("'");
            vs_send(6000, host_port, OP_RW, 0, "pong", 4);
        }
        /* The host closes after reading "pong". */
        puts_serial(vs_expect(OP_SHUTDOWN, &h, data, sizeof(data)) ? ", host closed"
                                                                   : ", host close FAILED");
        vs_send(6000, host_port, OP_SHUTDOWN, 3, 0, 0);
    } else {
        puts_serial(", host->guest FAILED");
    }
    puts_serial("\n");
}

/* ------------------------------------- virtio-vsock in kvmc.test=disk-count */

/* disk-count's vsock part: each line makes one connection to the host's
 * port 5000 (the host answers in capitals) and checks the reply. A
 * transport reset event (a restore ended every connection) makes it start
 * that line's exchange again on a new connection, as a Linux guest's
 * sockets fail with ECONNRESET and its programs reconnect. */
static uint8_t vs_event[8];
static unsigned vs_resets;

enum vs_wait { VS_GOT, VS_EVENT, VS_TIMEOUT };

/* The next packet to our port (a packet of an earlier connection, one that
 * came in just before a reset event, is let go), or the event queue's news. */
static enum vs_wait vs_wait(uint32_t port, struct vsock_hdr *h, char *payload, unsigned cap)
{
    uint64_t start = rdtsc_now();
    while (rdtsc_now() - start < 10 * 3000000000ull) {
        if (__atomic_load_n(&qs[2].ring->used.idx, __ATOMIC_ACQUIRE) != qs[2].seen) {
            uint32_t id, len;
            vq_take(&qs[2], &id, &len, 0);
            vs_resets++;
            offer(&qs[2], 0, vs_event, sizeof(vs_event), true);
            return VS_EVENT;
        }
        if (__atomic_load_n(&qs[0].ring->used.idx, __ATOMIC_ACQUIRE) != qs[0].seen) {
            if (!vs_receive(h, payload, cap, 0))
                return VS_TIMEOUT;
            if (h->op == OP_CREDIT_UPDATE)
                continue;
            if (h->dst_port != port) { /* as Linux does: no such socket */
                vs_fwd_cnt -= h->len; /* credit counts are per connection */
                if (h->op != OP_RST)
                    vs_send(h->dst_port, h->src_port, OP_RST, 0, 0, 0);
                continue;
            }
            return VS_GOT;
        }
        __asm__ volatile("pause");
    }
    return VS_TIMEOUT;
}

bool vsock_count_open(void)
{
    uint64_t base = virtio_find(19);
    if (!base || !virtio_setup(base, 0, qs, rings, 3))
        return false;
    vs_cid = virtio_config8(base, 0) | ((uint64_t)virtio_config8(base, 1) << 8);
    for (uint16_t i = 0; i < 4; i++)
        offer(&qs[0], i, vs_rx[i], VSOCK_RXBUF, true);
    offer(&qs[2], 0, vs_event, sizeof(vs_event), true);
    return true;
}

static unsigned put_number(char *p, uint64_t v)
{
    char tmp[20];
    unsigned n = 0, k = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10));
    while (n)
        p[k++] = tmp[--n];
    return k;
}

/* One exchange; false if it failed, *again if a reset event cut it short. */
static bool vs_exchange(uint32_t port, uint64_t i, bool *again)
{
    static char msg[32], want[32], got[64];
    struct vsock_hdr h;
    unsigned n = put_number(msg + 6, i) + 6;
    copy(msg, "count ", 6);
    copy(want, "COUNT ", 6);
    copy(want + 6, msg + 6, n - 6);
    vs_fwd_cnt = 0;
    *again = false;
    vs_send(port, 5000, OP_REQUEST, 0, 0, 0);
    enum vs_wait w = vs_wait(port, &h, got, sizeof(got));
    if (w != VS_GOT || h.op != OP_RESPONSE) {
        *again = w == VS_EVENT;
        return false;
    }
    vs_send(port, 5000, OP_RW, 0, msg, n);
    w = vs_wait(port, &h, got, sizeof(got));
    bool ok = w == VS_GOT && h.op == OP_RW && h.len == n && same(got, want, n);
    if (w == VS_EVENT) {
        *again = true;
        return false;
    }
    vs_send(port, 5000, OP_SHUTDOWN, 3, 0, 0);
    do /* the host may close its side first: its SHUTDOWN, then the RST */
        w = vs_wait(port, &h, got, sizeof(got));
    while (w == VS_GOT && h.op == OP_SHUTDOWN);
    *again = w == VS_EVENT;
    return ok && (w == VS_EVENT || (w == VS_GOT && h.op == OP_RST));
}

bool vsock_count_line(uint64_t i)
{
    bool again = true;
    for (unsigned attempt = 0; again && attempt < 3; attempt++) {
        uint32_t port = 20000 + (uint32_t)((i * 3 + attempt) % 40000);
        if (vs_exchange(port, i, &again))
            return true;
    }
    return false;
}

unsigned vsock_count_resets(void) { return vs_resets; }

/* ------------------------------------------------------ virtio-net */

#define NET_HDR 12
#define NET_BUF 2048
static uint8_t net_rx[4][NET_BUF];
static uint8_t net_tx[NET_BUF];
static uint8_t my_mac[6], peer_mac[6];
static uint8_t my_ip[4], peer_ip[4];

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static void put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static bool parse_ip(const char *s, uint8_t ip[4])
{
    unsigned part = 0, v = 0, digits = 0;
    for (;; s++) {
        if (*s >= '0' && *s <= '9' && digits < 3) {
            v = v * 10 + (unsigned)(*s - '0');
            digits++;
        } else if ((*s == '.' || *s == 0 || *s == ',') && digits && v < 256 && part < 4) {
            ip[part++] = (uint8_t)v;
            v = digits = 0;
            if (*s != '.')
                return part == 4;
        } else {
            return false;
        }
    }
}

static uint16_t ip_checksum(const uint8_t *p, unsigned n)
{
    uint32_t sum = 0;
    for (unsigned i = 0; i + 1 < n; i += 2)
        sum += be16(p + i);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void net_send(unsigned len)
{
    for (unsigned i = 0; i < NET_HDR; i++)
        net_tx[i] = 0;
    transmit(&qs[1], net_tx, NET_HDR + len);
}

static void arp(uint16_t op, const uint8_t *dst_mac, const uint8_t *target_mac,
                const uint8_t *target_ip)
{
    uint8_t *f = net_tx + NET_HDR;
    copy(f, dst_mac, 6);
    copy(f + 6, my_mac, 6);
    put_be16(f + 12, 0x0806);
    uint8_t *a = f + 14;
    put_be16(a, 1);
    put_be16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put_be16(a + 6, op);
    copy(a + 8, my_mac, 6);
    copy(a + 14, my_ip, 4);
    copy(a + 18, target_mac, 6);
    copy(a + 24, target_ip, 4);
    net_send(42);
}

/* Builds an Ethernet+IPv4+UDP frame to the peer after the virtio-net header
 * at buf; returns the length with the header. */
static unsigned build_udp(uint8_t *buf, uint16_t sport, uint16_t dport, const void *payload,
                          unsigned plen)
{
    for (unsigned i = 0; i < NET_HDR; i++)
        buf[i] = 0;
    uint8_t *f = buf + NET_HDR;
    copy(f, peer_mac, 6);
    copy(f + 6, my_mac, 6);
    put_be16(f + 12, 0x0800);
    uint8_t *ip = f + 14;
    for (unsigned i = 0; i < 20; i++)
        ip[i] = 0;
    ip[0] = 0x45;
    put_be16(ip + 2, (uint16_t)(20 + 8 + plen));
    put_be16(ip + 4, 1);
    ip[8] = 64;
    ip[9] = 17;
    copy(ip + 12, my_ip, 4);
    copy(ip + 16, peer_ip, 4);
    put_be16(ip + 10, ip_checksum(ip, 20));
    uint8_t *u = ip + 20;
    put_be16(u, sport);
    put_be16(u + 2, dport);
    put_be16(u + 4, (uint16_t)(8 + plen));
    put_be16(u + 6, 0); /* no checksum: allowed for UDP over IPv4 */
    copy(u + 8, payload, plen);
    return NET_HDR + 14 + 20 + 8 + plen;
}

static void udp(uint16_t sport, uint16_t dport, const char *payload)
{
    transmit(&qs[1], net_tx, build_udp(net_tx, sport, dport, payload, length(payload)));
}

/* Handles one received frame: answers ARP requests for us, learns the
 * peer's MAC from its ARP reply, and returns a UDP payload to port 4000. */
static bool net_poll(unsigned seconds, char *udp_out, unsigned cap)
{
    uint32_t id, len;
    if (!vq_take(&qs[0], &id, &len, seconds) || id >= 4)
        return false;
    uint8_t *f = net_rx[id] + NET_HDR;
    unsigned flen = len > NET_HDR ? len - NET_HDR : 0;
    bool got_udp = false;
    if (flen >= 42 && be16(f + 12) == 0x0806) {
        uint8_t *a = f + 14;
        if (be16(a + 6) == 1 && same(a + 24, my_ip, 4)) {
            uint8_t mac[6], ip[4];
            copy(mac, a + 8, 6);
            copy(ip, a + 14, 4);
            arp(2, mac, mac, ip);
        } else if (be16(a + 6) == 2 && same(a + 14, peer_ip, 4)) {
            copy(peer_mac, a + 8, 6);
        }
    } else if (flen >= 42 && be16(f + 12) == 0x0800 && f[14 + 9] == 17 &&
               be16(f + 14 + 20 + 2) == 4000) {
        unsigned n = be16(f + 14 + 20 + 4) - 8u;
        if (n > cap - 1 || n > flen - 42)
            n = 0;
        copy(udp_out, f + 42, n);
        udp_out[n] = 0;
        got_udp = true;
    }
    offer(&qs[0], (uint16_t)id, net_rx[id], NET_BUF, true);
    return got_udp || true;
}

/* Parses kvmc.net=GUESTIP,PEERIP,PORT (default: user networking, port
 * 7777), brings the device up and resolves the peer's MAC by ARP. Returns
 * the port, or 0 after printing why not. */
static unsigned net_up(const char *cmdline, const char *who)
{
    char spec[64] = "10.0.2.15,10.0.2.2,7777";
    cmdline_get(cmdline, "kvmc.net=", spec, sizeof(spec));
    const char *p2 = spec;
    while (*p2 && *p2 != ',')
        p2++;
    const char *p3 = *p2 ? p2 + 1 : p2;
    while (*p3 && *p3 != ',')
        p3++;
    unsigned port = 0;
    for (const char *d = *p3 ? p3 + 1 : p3; *d >= '0' && *d <= '9' && port < 65536; d++)
        port = port * 10 + (unsigned)(*d - '0');
    uint64_t base = virtio_find(1);
    if (!parse_ip(spec, my_ip) || !*p2 || !parse_ip(p2 + 1, peer_ip) || !port || port > 65535 ||
        !base || !virtio_setup(base, 1u << 5 /* MAC */, qs, rings, 2)) {
        puts_serial(who);
        puts_serial(": setup FAILED\n");
        return 0;
    }
    for (unsigned i = 0; i < 6; i++)
        my_mac[i] = virtio_config8(base, i);
    for (uint16_t i = 0; i < 4; i++)
        offer(&qs[0], i, net_rx[i], NET_BUF, true);
    puts_serial(who);
    puts_serial(": mac ");
    put_hex(my_mac[5], 2);

    static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t zero[6] = {0};
    char ignored[8];
    bool resolved = false;
    for (unsigned tries = 0; tries < 5 && !resolved; tries++) {
        arp(1, broadcast, zero, peer_ip);
        for (unsigned n = 0; n < 8 && !resolved; n++) {
            if (!net_poll(2, ignored, sizeof(ignored)))
                break;
            resolved = !same(peer_mac, zero, 6);
        }
    }
    puts_serial(resolved ? ", arp ok" : ", arp FAILED\n");
    return resolved ? port : 0;
}

void test_virtio_net(const char *cmdline)
{
    unsigned port = net_up(cmdline, "virtio-net");
    if (!port)
        return;
    static char reply[128];
    bool answered = false;
    for (unsigned tries = 0; tries < 5 && !answered; tries++) {
        reply[0] = 0;
        udp(4000, (uint16_t)port, "kvmc-net-ping");
        for (unsigned n = 0; n < 8 && !answered; n++) {
            if (!net_poll(2, reply, sizeof(reply)))
                break;
            answered = reply[0] != 0;
        }
    }
    if (answered) {
        puts_serial(", udp reply '");
        puts_serial(reply);
        puts_serial("'\n");
    } else {
        puts_serial(", udp FAILED\n");
    }
}


/* kvmc.test=net-ports:N: one UDP datagram to the peer from each of N
 * source ports (user networking opens a host socket per guest port), then
 * a ping from port 4000 that must still be answered... or not, when the
 * VMM bounds those sockets; the test reads the line either way. */
void test_virtio_net_ports(const char *cmdline)
{
    char arg[16] = "";
    cmdline_get(cmdline, "kvmc.test=net-ports:", arg, sizeof(arg));
    unsigned count = 0;
    for (const char *p = arg; *p >= '0' && *p <= '9' && count < 60000; p++)
        count = count * 10 + (unsigned)(*p - '0');
    unsigned port = net_up(cmdline, "net-ports");
    if (!port)
        return;
    for (unsigned i = 0; i < count; i++) {
        udp((uint16_t)(5000 + i), (uint16_t)port, "x");
        char ignored[8];
        while (net_poll(0, ignored, sizeof(ignored))) {
        }
    }
    puts_serial(", sent ");
    put_dec(count);
    puts_serial("\n");
}

/* Sends kvmc.netbench=COUNT UDP datagrams of 1400 bytes to the peer, up to
 * 16 in flight, between "netbench: udp start" and "netbench: udp done BYTES
 * TSC" lines; bench/run.py times them and counts what its UDP sink gets. */
#define NETBENCH_DEPTH 16
#define NETBENCH_PAYLOAD 1400

void bench_virtio_net(const char *cmdline)
{
    char arg[16] = "20000";
    cmdline_get(cmdline, "kvmc.netbench=", arg, sizeof(arg));
    unsigned count = 0;
    for (const char *c = arg; *c >= '0' && *c <= '9' && count < 100000000; c++)
        count = count * 10 + (unsigned)(*c - '0');
    unsigned port = net_up(cmdline, "netbench");
    if (!port)
        return;
    puts_serial("\nnetbench: udp start\n");
    static uint8_t payload[NETBENCH_PAYLOAD];
    uint64_t t0 = rdtsc_now();
    unsigned in_flight = 0;
    for (unsigned i = 0; i < count || in_flight; ) {
        uint32_t id, used;
        if (i < count && in_flight < NETBENCH_DEPTH) {
            uint16_t d = (uint16_t)(i % NETBENCH_DEPTH);
            uint8_t *buf = (uint8_t *)(BENCH_SCRATCH + (uint64_t)d * NET_BUF);
            payload[0] = (uint8_t)i;
            offer(&qs[1], d, buf, build_udp(buf, 4000, (uint16_t)port, payload, sizeof(payload)),
                  false);
            i++;
            in_flight++;
        } else if (vq_take(&qs[1], &id, &used, 10)) {
            in_flight--;
        } else {
            puts_serial("netbench: FAILED (transmit stalled)\n");
            return;
        }
    }
    puts_serial("netbench: udp done ");
    put_dec((uint64_t)count * NETBENCH_PAYLOAD);
    puts_serial(" ");
    put_dec(rdtsc_now() - t0);
    puts_serial("\nnetbench: ok\n");
}
