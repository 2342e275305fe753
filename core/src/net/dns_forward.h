/* DNS for user networking, answered by kvmc instead of libslirp.
 *
 * libslirp forwards queries to its virtual nameserver (10.0.2.3) to the
 * first server in /etc/resolv.conf, which it re-reads (stat, then open) on
 * the I/O thread while the guest runs: under kvmc's seccomp lists that is a
 * system call the I/O thread may not make (the process died of SIGSYS on a
 * guest's first DNS query), and under --jail the file is not there at all.
 * So kvmc turns slirp's DNS off (SlirpConfig.disable_dns), reads the
 * server once when the VM is created, and forwards the guest's UDP queries
 * to 10.0.2.3:53 itself: one connected UDP socket per query in flight (at
 * most DNS_MAX_PENDING, 5 s each), the reply sent back to the guest as if
 * from 10.0.2.3. Everything in a guest frame is checked before use.
 *
 * Not forwarded: DNS over TCP (a guest resolver falls back to it only for
 * answers that do not fit UDP), and queries in IP fragments. Other traffic
 * to 10.0.2.3 is dropped rather than sent to that address on the host's
 * network. */
#ifndef KVMC_NET_DNS_FORWARD_H
#define KVMC_NET_DNS_FORWARD_H

#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNS_MAX_PENDING 16
#define DNS_TIMEOUT_MS 5000
#define DNS_MAX_MESSAGE 65507 /* the largest UDP payload over IPv4 */
#define DNS_RESOLV_CONF "/etc/resolv.conf"

struct dns_query {
    int fd;                  /* -1: slot free */
    int64_t deadline_ms;
    uint16_t id;             /* the DNS message ID: replies must carry it */
    uint8_t guest_mac[6];    /* the query's source */
    uint8_t our_mac[6];      /* the query's destination: the reply's source */
    uint8_t guest_ip[4];
    uint16_t guest_port;     /* host order */
};

/* Called with each frame that answers the guest (on the I/O thread). */
typedef void (*dns_deliver_fn)(void *opaque, const uint8_t *frame, size_t len);

struct dns_forward {
    struct sockaddr_storage server;
    socklen_t server_len;    /* 0: no server known, queries go unanswered */
    uint8_t vaddr[4];        /* the guest-visible nameserver, 10.0.2.3 */
    dns_deliver_fn deliver;
    void *opaque;
    struct dns_query q[DNS_MAX_PENDING];
    struct pollfd *polled[DNS_MAX_PENDING];
    uint16_t ip_id;
    bool warned;
    uint8_t buf[14 + 20 + 8 + DNS_MAX_MESSAGE]; /* a reply, then its frames */
};

/* server: "IPV4[:PORT]" to use, or NULL for the first nameserver of
 * resolv_conf (NULL: /etc/resolv.conf); an unusable file leaves no server
 * (said once on stderr, at the first query). */
int dns_forward_init(struct dns_forward *d, const char *server, const char *resolv_conf,
                     const uint8_t vaddr[4], dns_deliver_fn deliver, void *opaque);
void dns_forward_close(struct dns_forward *d);

/* Looks at a frame from the guest. Returns false if it is not for the
 * nameserver address (the caller hands it to slirp); true if it was, and
 * was forwarded or dropped. */
bool dns_forward_input(struct dns_forward *d, const uint8_t *frame, size_t len);

/* I/O thread source hooks for the sockets of the queries in flight. */
unsigned dns_forward_prepare(struct dns_forward *d, struct pollfd *fds, unsigned max,
                             int *timeout_ms);
void dns_forward_dispatch(struct dns_forward *d, struct pollfd *fds, unsigned n);

/* Parses "IPV4[:PORT]" (port 53 by default); false if it is not that. */
bool dns_parse_server(const char *s, uint32_t *addr, uint16_t *port);

#endif
