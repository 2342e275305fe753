/* User-mode networking with libslirp: the guest gets 10.0.2.15 by DHCP,
 * 10.0.2.2 is the host (its loopback), 10.0.2.3 answers DNS, and outbound
 * TCP/UDP becomes ordinary host sockets. No root, no set-up. Port forwards
 * are listening sockets opened at creation. libslirp is not thread-safe;
 * every call into it happens on the VM's I/O thread after creation.
 *
 * DNS to 10.0.2.3 is kvmc's own forwarder (dns_forward.h), not slirp's,
 * which reads /etc/resolv.conf as the guest runs. And a guest cannot make
 * slirp open host sockets without bound: past SLIRP_MAX_SOCKETS, guest
 * packets that would open another one (UDP, TCP SYN, ICMP echo) are
 * dropped until some expire, so one VM cannot exhaust the process's file
 * descriptors (every VM's, and every device's, in a library process).
 *
 * libslirp (and the glib it drags in) is loaded with dlopen only when a VM
 * asks for user networking: linked in, it cost every kvmc process about
 * 1.3 MiB of resident memory, network or not (measured under issue 6). */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <slirp/libslirp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../error.h"
#include "../seccomp.h"
#include "backend.h"
#include "dns_forward.h"

#define SLIRP_MAX_TIMERS 4
#define SLIRP_MAX_SOCKETS 128

struct slirp_timer {
    bool used, armed;
    SlirpTimerId id;
    void *cb_opaque;
    int64_t expire_ms;
};

#define SLIRP_LIBRARY "libslirp.so.0"

/* The libslirp calls we make, resolved from the library at open. */
#define SLIRP_FUNCTIONS(X)                                                              \
    X(slirp_new) X(slirp_cleanup) X(slirp_input) X(slirp_pollfds_fill)                  \
    X(slirp_pollfds_poll) X(slirp_handle_timer) X(slirp_add_hostfwd)

struct slirp_lib {
    void *handle;
#define SLIRP_POINTER(name) __typeof__(name) *name;
    SLIRP_FUNCTIONS(SLIRP_POINTER)
#undef SLIRP_POINTER
};

struct net_slirp {
    struct slirp_lib lib;
    Slirp *slirp;
    struct vnet *dev;
    struct slirp_timer timers[SLIRP_MAX_TIMERS];
    /* The poll slice of the current iteration. */
    struct pollfd *fds;
    unsigned nfds, max;
    bool reported_error;
    unsigned sockets;     /* host sockets slirp polls: about all it has */
    bool warned_sockets;
    struct dns_forward dns;
    uint8_t frame[65536]; /* a guest frame in pieces, made contiguous */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
    struct net_slirp *s = opaque;
    virtio_net_receive(s->dev, buf, len); /* no buffer: dropped, TCP retransmits */
    return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
    struct net_slirp *s = opaque;
    if (!s->reported_error)
        fprintf(stderr, "kvmc: virtio-net (user): guest error: %s\n", msg);
    s->reported_error = true;
}

static int64_t cb_clock_get_ns(void *opaque)
{
    (void)opaque;
    return now_ns();
}

static void *cb_timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque)
{
    struct net_slirp *s = opaque;
    for (unsigned i = 0; i < SLIRP_MAX_TIMERS; i++)
        if (!s->timers[i].used) {
            s->timers[i] = (struct slirp_timer){.used = true, .id = id, .cb_opaque = cb_opaque};
            return &s->timers[i];
        }
    return NULL;
}

static void cb_timer_free(void *timer, void *opaque)
{
    (void)opaque;
    if (timer)
        *(struct slirp_timer *)timer = (struct slirp_timer){0};
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
    (void)opaque;
    struct slirp_timer *t = timer;
    if (t) {
        t->armed = true;
        t->expire_ms = expire_ms;
    }
}

static void cb_register_poll_fd(int fd, void *opaque) { (void)fd, (void)opaque; }
static void cb_unregister_poll_fd(int fd, void *opaque) { (void)fd, (void)opaque; }
static void cb_notify(void *opaque) { (void)opaque; } /* we poll every iteration */

static const SlirpCb callbacks = {
    .send_packet = cb_send_packet,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock_get_ns,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_register_poll_fd,
    .unregister_poll_fd = cb_unregister_poll_fd,
    .notify = cb_notify,
    .timer_new_opaque = cb_timer_new_opaque,
};

/* Whether an IPv4 frame from the guest would make slirp open a host socket:
 * UDP (a socket per guest port), a TCP SYN, an ICMP echo request. */
static bool opens_a_socket(const uint8_t *f, size_t len)
{
    if (len < 14 + 20 || f[12] != 0x08 || f[13] != 0x00 || (f[14] >> 4) != 4)
        return false;
    const uint8_t *ip = f + 14, *l4 = ip + (ip[0] & 0xf) * 4;
    if ((size_t)(l4 - f) + 14 > len)
        return ip[9] == 17; /* truncated: slirp drops it, but err on the safe side */
    switch (ip[9]) {
    case 17: return true;
    case 6: return (l4[13] & 0x12) == 0x02; /* SYN without ACK */
    case 1: return l4[0] == 8;
    default: return false;
    }
}

static void slirp_send(void *be, const struct iovec *iov, unsigned niov, size_t len)
{
    struct net_slirp *s = be;
    uint8_t *frame = iov[0].iov_base; /* the usual case: one piece, no copy */
    if (niov > 1) {
        size_t done = 0;
        for (unsigned i = 0; i < niov && done + iov[i].iov_len <= sizeof(s->frame); i++) {
            memcpy(s->frame + done, iov[i].iov_base, iov[i].iov_len);
            done += iov[i].iov_len;
        }
        frame = s->frame;
        len = done;
    }
    if (dns_forward_input(&s->dns, frame, len))
        return;
    bool opens = opens_a_socket(frame, len);
    if (opens && s->sockets >= SLIRP_MAX_SOCKETS) {
        if (!s->warned_sockets)
            fprintf(stderr, "kvmc: virtio-net (user): the guest has %u host sockets open; "
                            "new connections wait until some close\n", s->sockets);
        s->warned_sockets = true;
        return;
    }
    /* Counted as a new socket until the next poll round counts slirp's
     * real ones: a burst of frames in one queue run cannot slip past the
     * bound (a frame to a socket that exists only makes the guess high
     * for that long). */
    if (opens)
        s->sockets++;
    s->lib.slirp_input(s->slirp, frame, (int)len);
}

static void deliver_dns(void *opaque, const uint8_t *frame, size_t len)
{
    struct net_slirp *s = opaque;
    virtio_net_receive(s->dev, frame, len);
}

static int add_poll(int fd, int events, void *opaque)
{
    struct net_slirp *s = opaque;
    s->sockets++;
    if (s->nfds == s->max)
        return -1; /* out of room this round; slirp polls it next time */
    short ev = 0;
    if (events & SLIRP_POLL_IN)
        ev |= POLLIN;
    if (events & SLIRP_POLL_OUT)
        ev |= POLLOUT;
    if (events & SLIRP_POLL_PRI)
        ev |= POLLPRI;
    s->fds[s->nfds] = (struct pollfd){.fd = fd, .events = ev};
    return (int)s->nfds++;
}

static int get_revents(int idx, void *opaque)
{
    struct net_slirp *s = opaque;
    if (idx < 0 || (unsigned)idx >= s->nfds)
        return 0;
    short r = s->fds[idx].revents;
    return ((r & POLLIN) ? SLIRP_POLL_IN : 0) | ((r & POLLOUT) ? SLIRP_POLL_OUT : 0) |
           ((r & POLLPRI) ? SLIRP_POLL_PRI : 0) | ((r & POLLERR) ? SLIRP_POLL_ERR : 0) |
           ((r & POLLHUP) ? SLIRP_POLL_HUP : 0);
}

static unsigned slirp_prepare(void *be, struct pollfd *fds, unsigned max, int *timeout)
{
    struct net_slirp *s = be;
    s->fds = fds;
    s->nfds = 0;
    s->max = max;
    s->sockets = 0;
    uint32_t t = *timeout < 0 ? UINT32_MAX : (uint32_t)*timeout;
    s->lib.slirp_pollfds_fill(s->slirp, &t, add_poll, s);
    int64_t now_ms = now_ns() / 1000000;
    for (unsigned i = 0; i < SLIRP_MAX_TIMERS; i++) {
        const struct slirp_timer *tm = &s->timers[i];
        if (tm->used && tm->armed) {
            int64_t wait = tm->expire_ms > now_ms ? tm->expire_ms - now_ms : 0;
            if ((uint64_t)wait < t)
                t = (uint32_t)wait;
        }
    }
    *timeout = t == UINT32_MAX ? -1 : (int)(t > 60000 ? 60000 : t);
    return s->nfds + dns_forward_prepare(&s->dns, fds + s->nfds, max - s->nfds, timeout);
}

static void slirp_dispatch(void *be, struct pollfd *fds, unsigned n)
{
    struct net_slirp *s = be;
    dns_forward_dispatch(&s->dns, fds, n); /* its pollfds follow slirp's */
    s->fds = fds;
    s->lib.slirp_pollfds_poll(s->slirp, 0, get_revents, s);
    int64_t now_ms = now_ns() / 1000000;
    for (unsigned i = 0; i < SLIRP_MAX_TIMERS; i++) {
        struct slirp_timer *tm = &s->timers[i];
        if (tm->used && tm->armed && tm->expire_ms <= now_ms) {
            tm->armed = false;
            s->lib.slirp_handle_timer(s->slirp, tm->id, tm->cb_opaque);
        }
    }
}

static void slirp_destroy(void *be)
{
    struct net_slirp *s = be;
    dns_forward_close(&s->dns);
    if (s->slirp)
        s->lib.slirp_cleanup(s->slirp);
    if (s->lib.handle)
        dlclose(s->lib.handle);
    free(s);
}

static const struct net_backend_ops slirp_ops = {
    .name = "user",
    .send = slirp_send,
    .prepare = slirp_prepare,
    .dispatch = slirp_dispatch,
    .destroy = slirp_destroy,
    .seccomp_extras = SECCOMP_IO_INET,
};

static int add_forwards(struct net_slirp *s, const struct net_config *cfg)
{
    for (unsigned i = 0; i < cfg->nforwards; i++) {
        const struct net_forward *f = &cfg->forwards[i];
        struct in_addr host = {f->host_addr ? f->host_addr : htonl(INADDR_LOOPBACK)};
        struct in_addr guest = {f->guest_addr ? f->guest_addr : inet_addr("10.0.2.15")};
        if (s->lib.slirp_add_hostfwd(s->slirp, f->udp, host, f->host_port, guest,
                                     f->guest_port) < 0) {
            char addr[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &host, addr, sizeof(addr));
            return kvmc_fail_errno(KVMC_EIO, errno, "net: hostfwd %s:%s:%u",
                                   f->udp ? "udp" : "tcp", addr, f->host_port);
        }
    }
    return KVMC_OK;
}

static int load_libslirp(struct slirp_lib *lib)
{
    lib->handle = dlopen(SLIRP_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!lib->handle)
        return kvmc_fail(KVMC_ENOTSUP,
                         "net: user networking needs %s (Debian package libslirp0): %s",
                         SLIRP_LIBRARY, dlerror());
#define SLIRP_RESOLVE(name)                                                             \
    if (!(*(void **)&lib->name = dlsym(lib->handle, #name)))                            \
        return kvmc_fail(KVMC_ENOTSUP, "net: %s has no %s", SLIRP_LIBRARY, #name);
    SLIRP_FUNCTIONS(SLIRP_RESOLVE)
#undef SLIRP_RESOLVE
    return KVMC_OK;
}

int net_slirp_open(const struct net_config *cfg, struct vnet *dev,
                   const struct net_backend_ops **ops, void **be)
{
    struct net_slirp *s = calloc(1, sizeof(*s));
    if (!s)
        return kvmc_fail(KVMC_ENOMEM, "allocating user networking");
    for (unsigned i = 0; i < DNS_MAX_PENDING; i++)
        s->dns.q[i].fd = -1; /* for slirp_destroy on the way out */
    s->dev = dev;
    int err = load_libslirp(&s->lib);
    if (err) {
        slirp_destroy(s);
        return err;
    }
    static const uint8_t nameserver[4] = {10, 0, 2, 3};
    err = dns_forward_init(&s->dns, cfg->has_dns_server ? cfg->dns_server : NULL,
                           cfg->resolv_conf, nameserver, deliver_dns, s);
    if (err) {
        slirp_destroy(s);
        return err;
    }
    SlirpConfig sc = {
        .version = 4,
        .disable_dns = true, /* kvmc forwards DNS itself: see dns_forward.h */
        .in_enabled = true,
        .vnetwork.s_addr = inet_addr("10.0.2.0"),
        .vnetmask.s_addr = inet_addr("255.255.255.0"),
        .vhost.s_addr = inet_addr("10.0.2.2"),
        .vdhcp_start.s_addr = inet_addr("10.0.2.15"),
        .vnameserver.s_addr = inet_addr("10.0.2.3"),
        .vhostname = "kvmc",
    };
    s->slirp = s->lib.slirp_new(&sc, &callbacks, s);
    err = s->slirp ? add_forwards(s, cfg) : kvmc_fail(KVMC_EIO, "net: libslirp could not start");
    if (err) {
        slirp_destroy(s);
        return err;
    }
    *ops = &slirp_ops;
    *be = s;
    return KVMC_OK;
}
