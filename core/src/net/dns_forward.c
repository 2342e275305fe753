/* DNS forwarding for user networking; see dns_forward.h. */
#include "dns_forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../error.h"

#define ETH_HDR 14
#define IP_HDR 20
#define UDP_HDR 8
#define MTU 1500
#define DNS_PORT 53

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

bool dns_parse_server(const char *s, uint32_t *addr, uint16_t *port)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strchr(s, ':');
    size_t hlen = colon ? (size_t)(colon - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof(host))
        return false;
    memcpy(host, s, hlen);
    host[hlen] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1)
        return false;
    unsigned long p = DNS_PORT;
    if (colon) {
        char *end;
        if (colon[1] < '0' || colon[1] > '9')
            return false;
        p = strtoul(colon + 1, &end, 10);
        if (*end || p == 0 || p > 65535)
            return false;
    }
    *addr = a.s_addr;
    *port = (uint16_t)p;
    return true;
}

/* The first "nameserver ADDR" of a resolv.conf that inet_pton takes (an
 * IPv6 one may carry a %interface scope). */
static bool read_resolv_conf(const char *path, struct sockaddr_storage *ss, socklen_t *len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[512], addr[256];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        if (sscanf(line, " nameserver %255s", addr) != 1)
            continue;
        char *scope = strchr(addr, '%');
        if (scope)
            *scope++ = 0;
        struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
        memset(ss, 0, sizeof(*ss));
        if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(DNS_PORT);
            *len = sizeof(*v4);
            found = true;
        } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(DNS_PORT);
            v6->sin6_scope_id = scope ? if_nametoindex(scope) : 0;
            *len = sizeof(*v6);
            found = true;
        }
    }
    fclose(f);
    return found;
}

int dns_forward_init(struct dns_forward *d, const char *server, const char *resolv_conf,
                     const uint8_t vaddr[4], dns_deliver_fn deliver, void *opaque)
{
    memset(d, 0, offsetof(struct dns_forward, buf));
    memcpy(d->vaddr, vaddr, 4);
    d->deliver = deliver;
    d->opaque = opaque;
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++)
        d->q[i].fd = -1;
    if (server) {
        uint32_t a;
        uint16_t port;
        if (!dns_parse_server(server, &a, &port))
            return kvmc_fail(KVMC_EINVAL, "net: dns-server '%s' is not IPV4[:PORT]", server);
        struct sockaddr_in *v4 = (struct sockaddr_in *)&d->server;
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = a;
        v4->sin_port = htons(port);
        d->server_len = sizeof(*v4);
        return KVMC_OK;
    }
    if (!read_resolv_conf(resolv_conf ? resolv_conf : DNS_RESOLV_CONF, &d->server,
                          &d->server_len))
        d->server_len = 0; /* said at the first query */
    return KVMC_OK;
}

static void end_query(struct dns_query *q)
{
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
}

void dns_forward_close(struct dns_forward *d)
{
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++)
        end_query(&d->q[i]);
}

/* A free slot, or the oldest query's (a flood of queries holds at most
 * DNS_MAX_PENDING sockets). */
static struct dns_query *take_slot(struct dns_forward *d)
{
    struct dns_query *oldest = &d->q[0];
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++) {
        if (d->q[i].fd < 0)
            return &d->q[i];
        if (d->q[i].deadline_ms < oldest->deadline_ms)
            oldest = &d->q[i];
    }
    end_query(oldest);
    return oldest;
}

static void forward(struct dns_forward *d, const uint8_t *eth, const uint8_t *ip,
                    const uint8_t *udp, const uint8_t *msg, size_t len)
{
    if (!d->server_len) {
        if (!d->warned)
            fprintf(stderr, "kvmc: virtio-net (user): no nameserver in %s; the guest's DNS "
                            "queries go unanswered (set one with dns-server=)\n",
                    DNS_RESOLV_CONF);
        d->warned = true;
        return;
    }
    if (len < 12)
        return; /* not even a DNS header */
    struct dns_query *q = take_slot(d);
    q->fd = socket(d->server.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->fd < 0)
        return; /* out of descriptors: the guest retries */
    if (connect(q->fd, (const struct sockaddr *)&d->server, d->server_len) < 0 ||
        send(q->fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len) {
        end_query(q);
        return;
    }
    q->deadline_ms = now_ms() + DNS_TIMEOUT_MS;
    q->id = be16(msg);
    memcpy(q->guest_mac, eth + 6, 6);
    memcpy(q->our_mac, eth, 6);
    memcpy(q->guest_ip, ip + 12, 4);
    q->guest_port = be16(udp);
}

bool dns_forward_input(struct dns_forward *d, const uint8_t *frame, size_t len)
{
    if (len < ETH_HDR + IP_HDR || be16(frame + 12) != 0x0800)
        return false;
    const uint8_t *ip = frame + ETH_HDR;
    if ((ip[0] >> 4) != 4 || memcmp(ip + 16, d->vaddr, 4) != 0)
        return false;
    /* For the nameserver: from here on it is ours, forwarded or dropped. */
    size_t ihl = (size_t)(ip[0] & 0xf) * 4, total = be16(ip + 2);
    if (ihl < IP_HDR || total < ihl + UDP_HDR || total > len - ETH_HDR)
        return true;
    if ((be16(ip + 6) & 0x3fff) != 0 || ip[9] != 17)
        return true; /* a fragment, or not UDP (TCP DNS is not forwarded) */
    const uint8_t *udp = ip + ihl;
    size_t ulen = be16(udp + 4);
    if (be16(udp + 2) != DNS_PORT || ulen < UDP_HDR || ulen > total - ihl)
        return true;
    forward(d, frame, ip, udp, udp + UDP_HDR, ulen - UDP_HDR);
    return true;
}

static uint32_t sum16(uint32_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += be16(p + i);
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Sends the UDP datagram at udp (udp_len bytes, header included) to the
 * guest, in IP fragments when it does not fit one frame. The datagram sits
 * in d->buf behind room for the Ethernet and IP headers; each later
 * fragment's headers go over the tail of the fragment sent before it. */
static void send_to_guest(struct dns_forward *d, const struct dns_query *q, uint8_t *udp,
                          size_t udp_len)
{
    uint16_t id = d->ip_id++;
    for (size_t off = 0; off < udp_len;) {
        size_t chunk = udp_len - off;
        bool more = chunk > MTU - IP_HDR;
        if (more)
            chunk = (MTU - IP_HDR) & ~(size_t)7; /* fragment offsets count 8 bytes */
        uint8_t *ip = udp + off - IP_HDR, *eth = ip - ETH_HDR;
        memcpy(eth, q->guest_mac, 6);
        memcpy(eth + 6, q->our_mac, 6);
        put16(eth + 12, 0x0800);
        memset(ip, 0, IP_HDR);
        ip[0] = 0x45;
        put16(ip + 2, (uint16_t)(IP_HDR + chunk));
        put16(ip + 4, id);
        put16(ip + 6, (uint16_t)((more ? 0x2000 : 0) | (off / 8)));
        ip[8] = 64;
        ip[9] = 17;
        memcpy(ip + 12, d->vaddr, 4);
        memcpy(ip + 16, q->guest_ip, 4);
        put16(ip + 10, fold(sum16(0, ip, IP_HDR)));
        d->deliver(d->opaque, eth, ETH_HDR + IP_HDR + chunk);
        off += chunk;
    }
}

static void answer(struct dns_forward *d, struct dns_query *q)
{
    uint8_t *udp = d->buf + ETH_HDR + IP_HDR;
    ssize_t n = recv(q->fd, udp + UDP_HDR, DNS_MAX_MESSAGE, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 12 || be16(udp + UDP_HDR) != q->id) {
        if (n < 0)
            end_query(q); /* refused: the guest times out and retries */
        return;             /* not the answer to this query */
    }
    size_t udp_len = UDP_HDR + (size_t)n;
    put16(udp, DNS_PORT);
    put16(udp + 2, q->guest_port);
    put16(udp + 4, (uint16_t)udp_len);
    put16(udp + 6, 0);
    uint8_t pseudo[12] = {0};
    memcpy(pseudo, d->vaddr, 4);
    memcpy(pseudo + 4, q->guest_ip, 4);
    pseudo[9] = 17;
    put16(pseudo + 10, (uint16_t)udp_len);
    uint16_t sum = fold(sum16(sum16(0, pseudo, sizeof(pseudo)), udp, udp_len));
    put16(udp + 6, sum ? sum : 0xffff);
    send_to_guest(d, q, udp, udp_len);
    end_query(q);
}

unsigned dns_forward_prepare(struct dns_forward *d, struct pollfd *fds, unsigned max,
                             int *timeout_ms)
{
    int64_t now = now_ms();
    unsigned n = 0;
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++) {
        struct dns_query *q = &d->q[i];
        d->polled[i] = NULL;
        if (q->fd < 0)
            continue;
        if (q->deadline_ms <= now) {
            end_query(q); /* unanswered: the guest's resolver retries */
            continue;
        }
        if (n == max)
            continue;
        int left = (int)(q->deadline_ms - now);
        if (*timeout_ms < 0 || *timeout_ms > left)
            *timeout_ms = left;
        fds[n] = (struct pollfd){.fd = q->fd, .events = POLLIN};
        d->polled[i] = &fds[n++];
    }
    return n;
}

void dns_forward_dispatch(struct dns_forward *d, struct pollfd *fds, unsigned n)
{
    (void)fds, (void)n;
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++) {
        struct pollfd *p = d->polled[i];
        if (p && p->fd == d->q[i].fd && p->revents)
            answer(d, &d->q[i]);
    }
}
