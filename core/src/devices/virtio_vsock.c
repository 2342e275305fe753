/* virtio-vsock (stream sockets) with Firecracker's host convention:
 *  - host to guest: a host program connects to the Unix socket `path` and
 *    writes "CONNECT <port>\n"; once the guest accepts, it reads
 *    "OK <host port>\n" and the socket carries the stream;
 *  - guest to host: a guest connection to CID 2, port P is connected to the
 *    Unix socket "<path>_<P>", or refused (RST) if nothing listens there.
 *
 * Flow control is virtio's credit scheme: we tell the guest how much we can
 * buffer per connection (buf_alloc) and how much we forwarded (fwd_cnt), so
 * a guest that respects it never overruns the per-connection buffer, and one
 * that does not gets its connection reset. Host data goes to the guest only
 * while the guest has credit and receive buffers; otherwise the socket is
 * not read, and back-pressure reaches the host program.
 *
 * Everything runs on the VM's I/O thread: queue notifications and socket
 * readiness (an iothread source). The number of connections is capped.
 *
 * Snapshots (as Firecracker does): the guest CID is saved, connections are
 * not (their other ends are host sockets). A restore, or a reset to a
 * snapshot, closes every connection (host peers see the end of the stream)
 * and sends the guest a transport reset event: its connected sockets fail
 * with ECONNRESET, its listening ones keep listening, and it reads its CID
 * again, so a restore may give the guest another CID. */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_vsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../bytering.h"
#include "../config.h"
#include "../error.h"
#include "../seccomp.h"
#include "../snapshot/format.h"
#include "../unix_socket.h"
#include "../virtio/chain.h"
#include "../iothread.h"
#include "../virtio/virtio.h"
#include "virtio_vsock.h"

#define VSOCK_RX 0
#define VSOCK_TX 1
#define VSOCK_EVENT 2
#define VSOCK_HOST_CID 2
#define VSOCK_MAX_CONNS 64
#define VSOCK_BUF_ALLOC (256u * 1024) /* per connection, guest to host */
#define VSOCK_MAX_PAYLOAD 65536u      /* one packet to the guest */
#define VSOCK_HANDSHAKE_MAX 32        /* "CONNECT 4294967295\n" fits */
#define VSOCK_MAX_RST_BACKLOG 16
#define VSOCK_FIRST_LOCAL_PORT (1u << 30)

enum conn_state {
    CONN_FREE,
    CONN_HANDSHAKE,   /* host connected, reading "CONNECT <port>\n" */
    CONN_REQUESTING,  /* REQUEST sent or pending, waiting for the guest */
    CONN_ESTABLISHED,
    CONN_CLOSING,     /* RST pending; freed once it is sent */
};

/* Control packets owed to the guest, one bit each. */
#define PEND_REQUEST 0x1u
#define PEND_RESPONSE 0x2u
#define PEND_RST 0x4u
#define PEND_CREDIT 0x8u
#define PEND_SHUTDOWN 0x10u

struct vconn {
    enum conn_state state;
    int fd;
    uint32_t local_port, peer_port; /* ours (CID 2) and the guest's */
    unsigned pending;
    /* Credit: the guest's buffer and progress, and ours. */
    uint32_t peer_buf_alloc, peer_fwd_cnt, rx_cnt;
    uint32_t fwd_cnt, fwd_cnt_told;
    struct bytering to_host; /* guest data the socket did not take yet */
    bool guest_done_sending, host_eof, host_shut;
    bool close_when_flushed; /* the guest closed; deliver what it sent first */
    char line[VSOCK_HANDSHAKE_MAX];
    unsigned line_len;
};

struct rst_target {
    uint32_t src_port, dst_port; /* as the guest sent them */
};

struct vsock {
    struct virtio_dev *dev;
    uint64_t guest_cid;
    struct unix_listener listener;
    uint32_t next_local_port;
    struct vconn conns[VSOCK_MAX_CONNS];
    struct rst_target rsts[VSOCK_MAX_RST_BACKLOG]; /* for unknown connections */
    unsigned nrsts;
    bool rx_starved;                 /* no receive buffer last time we looked */
    bool rx_too_small;               /* the held buffer has no room past a header */
    struct virtq_chain tx_chain;
    struct virtio_held rx;           /* the next packet to the guest goes here */
    struct pollfd *polled[VSOCK_MAX_CONNS];
    uint32_t generation;             /* the driver's, when we last looked */
    kvmc_vsock_connect_fn connect;   /* NULL: unix_connect("<path>_<port>") */
    void *connect_opaque;
    bool reset_event_owed;           /* restored: tell the guest its connections are gone */
};

static uint32_t peer_credit(const struct vconn *c)
{
    uint32_t in_flight = c->rx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static struct vconn *find_conn(struct vsock *v, uint32_t local, uint32_t peer)
{
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct vconn *c = &v->conns[i];
        if (c->state != CONN_FREE && c->local_port == local && c->peer_port == peer)
            return c;
    }
    return NULL;
}

static struct vm_stats *vsock_stats(const struct vsock *v)
{
    return v->dev ? v->dev->stats : NULL;
}

static struct vconn *new_conn(struct vsock *v, int fd, enum conn_state state)
{
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct vconn *c = &v->conns[i];
        if (c->state != CONN_FREE)
            continue;
        *c = (struct vconn){.state = state, .fd = fd};
        if (bytering_init(&c->to_host, VSOCK_BUF_ALLOC)) {
            c->state = CONN_FREE;
            return NULL;
        }
        stats_add(vsock_stats(v), STAT_VSOCK_CONNS_OPENED, 1);
        return c;
    }
    return NULL;
}

static void free_conn(struct vsock *v, struct vconn *c)
{
    if (c->state != CONN_FREE)
        stats_add(vsock_stats(v), STAT_VSOCK_CONNS_CLOSED, 1);
    if (c->fd >= 0)
        close(c->fd);
    bytering_free(&c->to_host);
    *c = (struct vconn){.state = CONN_FREE, .fd = -1};
}

/* Ends a connection: the socket closes now, the guest gets an RST. */
static void reset_conn(struct vconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSING;
    c->pending = PEND_RST;
}

static void queue_rst(struct vsock *v, const struct virtio_vsock_hdr *h)
{
    if (h->op == VIRTIO_VSOCK_OP_RST || v->nrsts == VSOCK_MAX_RST_BACKLOG)
        return; /* never answer an RST; a full backlog drops (the guest times out) */
    v->rsts[v->nrsts++] = (struct rst_target){h->src_port, h->dst_port};
}

/* ---------------------------------------------------------- to the guest */

/* Makes sure a receive chain is in hand; false if the guest has none. */
static bool hold_rx_chain(struct vsock *v)
{
    v->rx_starved = !virtio_hold(v->dev, VSOCK_RX, &v->rx);
    return !v->rx_starved;
}

static void fill_header(const struct vsock *v, const struct vconn *c, uint16_t op,
                        struct virtio_vsock_hdr *h)
{
    *h = (struct virtio_vsock_hdr){
        .src_cid = VSOCK_HOST_CID, .dst_cid = v->guest_cid,
        .src_port = c->local_port, .dst_port = c->peer_port,
        .type = VIRTIO_VSOCK_TYPE_STREAM, .op = op,
        .buf_alloc = VSOCK_BUF_ALLOC, .fwd_cnt = c->fwd_cnt,
    };
}

/* Sends a header-only packet on the held chain. */
static void send_control(struct vsock *v, struct virtio_vsock_hdr *h)
{
    struct chain_cursor cur = {.chain = &v->rx.chain};
    size_t n = chain_write(&cur, h, sizeof(*h));
    virtio_release(v->dev, VSOCK_RX, &v->rx, (uint32_t)n);
    v->rx_too_small = false; /* the next buffer may be bigger */
}

static void send_conn_control(struct vsock *v, struct vconn *c)
{
    struct virtio_vsock_hdr h;
    unsigned bit = c->pending & -c->pending; /* lowest first: REQUEST..SHUTDOWN */
    static const uint16_t ops[] = {VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_OP_RESPONSE,
                                   VIRTIO_VSOCK_OP_RST, VIRTIO_VSOCK_OP_CREDIT_UPDATE,
                                   VIRTIO_VSOCK_OP_SHUTDOWN};
    fill_header(v, c, ops[__builtin_ctz(bit)], &h);
    if (bit == PEND_SHUTDOWN) /* the host sends no more; it may still receive */
        h.flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
    c->pending &= ~bit;
    if (bit == PEND_CREDIT || bit == PEND_RESPONSE || bit == PEND_REQUEST)
        c->fwd_cnt_told = c->fwd_cnt;
    send_control(v, &h);
    if (bit == PEND_RST)
        free_conn(v, c);
}

/* Reads from the host socket straight into the held chain, behind the
 * header. Returns false if nothing was sent. */
static bool send_data(struct vsock *v, struct vconn *c)
{
    struct chain_cursor cur = {.chain = &v->rx.chain};
    struct virtio_vsock_hdr h;
    if (v->rx.chain.writable <= sizeof(h)) {
        /* Fit for control packets only. Until the driver offers buffers
         * again, reading sockets would be for nothing: stop polling them
         * (a readable socket would wake the I/O thread in a loop). */
        v->rx_too_small = true;
        return false;
    }
    struct chain_cursor payload = cur; /* the header is written last, at cur */
    chain_skip(&payload, true, sizeof(h));
    uint32_t limit = peer_credit(c);
    if (limit > VSOCK_MAX_PAYLOAD)
        limit = VSOCK_MAX_PAYLOAD;
    struct iovec iov[16];
    size_t room;
    unsigned niov = chain_iov(&payload, true, iov, 16, limit, &room);
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = niov};
    ssize_t n = niov ? recvmsg(c->fd, &msg, MSG_DONTWAIT) : -1;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n <= 0) { /* end of stream or error: tell the guest we are done */
        c->host_eof = true;
        c->pending |= PEND_SHUTDOWN;
        return false;
    }
    fill_header(v, c, VIRTIO_VSOCK_OP_RW, &h);
    stats_add(vsock_stats(v), STAT_VSOCK_RX_BYTES, (uint64_t)n);
    h.len = (uint32_t)n;
    c->rx_cnt += (uint32_t)n;
    c->fwd_cnt_told = c->fwd_cnt;
    chain_write(&cur, &h, sizeof(h));
    virtio_release(v->dev, VSOCK_RX, &v->rx, (uint32_t)(sizeof(h) + n));
    return true;
}

static void send_backlogged_rsts(struct vsock *v)
{
    while (v->nrsts && hold_rx_chain(v)) {
        struct rst_target t = v->rsts[--v->nrsts];
        struct virtio_vsock_hdr h = {
            .src_cid = VSOCK_HOST_CID, .dst_cid = v->guest_cid, .src_port = t.dst_port,
            .dst_port = t.src_port, .type = VIRTIO_VSOCK_TYPE_STREAM,
            .op = VIRTIO_VSOCK_OP_RST,
        };
        send_control(v, &h);
    }
}

/* The transport reset event after a restore, once the driver offers an
 * event buffer (Linux keeps some posted). */
static void send_reset_event(struct vsock *v)
{
    struct virtio_ticket t;
    if (!v->reset_event_owed || !virtio_pop(v->dev, VSOCK_EVENT, &v->tx_chain, &t))
        return;
    struct virtio_vsock_event e = {.id = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET};
    struct chain_cursor cur = {.chain = &v->tx_chain};
    size_t n = chain_write(&cur, &e, sizeof(e));
    virtio_complete(v->dev, VSOCK_EVENT, &t, (uint32_t)n);
    v->reset_event_owed = false;
}

/* The reset event first (it ends the guest's old connections), control
 * packets next (they unblock the guest), then data from sockets that
 * poll() found readable. */
static void flush_to_guest(struct vsock *v, const bool *readable)
{
    send_reset_event(v);
    send_backlogged_rsts(v);
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct vconn *c = &v->conns[i];
        while (c->state != CONN_FREE && c->pending && hold_rx_chain(v))
            send_conn_control(v, c);
    }
    if (!readable)
        return;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct vconn *c = &v->conns[i];
        if (readable[i] && c->state == CONN_ESTABLISHED && !c->host_eof &&
            peer_credit(c) && hold_rx_chain(v))
            send_data(v, c);
        while (c->state != CONN_FREE && c->pending && hold_rx_chain(v))
            send_conn_control(v, c);
    }
}

/* ---------------------------------------------------------- from the guest */

/* Writes buffered guest data to the host socket. */
static void flush_to_host(struct vconn *c)
{
    while (c->to_host.len && c->fd >= 0) {
        const uint8_t *p;
        size_t run = bytering_peek(&c->to_host, &p);
        ssize_t n = send(c->fd, p, run, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            reset_conn(c);
            return;
        }
        bytering_drop(&c->to_host, (size_t)n);
        c->fwd_cnt += (uint32_t)n;
    }
    if (c->close_when_flushed && !c->to_host.len) {
        reset_conn(c);
        return;
    }
    if (c->fwd_cnt - c->fwd_cnt_told >= VSOCK_BUF_ALLOC / 4)
        c->pending |= PEND_CREDIT;
    if (!c->to_host.len && c->guest_done_sending && !c->host_shut && c->fd >= 0) {
        shutdown(c->fd, SHUT_WR);
        c->host_shut = true;
    }
}

static void guest_request(struct vsock *v, const struct virtio_vsock_hdr *h)
{
    char path[128]; /* the config checked that "<path>_<port>" fits a Unix address */
    int fd = -1;
    if (v->connect) {
        fd = v->connect(v->connect_opaque, h->dst_port);
        if (fd >= 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
            close(fd);
            fd = -1;
        }
    } else if (snprintf(path, sizeof(path), "%s_%u", v->listener.path, h->dst_port) <
               (int)sizeof(path)) {
        fd = unix_connect(path);
    }
    struct vconn *c = fd >= 0 ? new_conn(v, fd, CONN_ESTABLISHED) : NULL;
    if (!c) {
        if (fd >= 0)
            close(fd);
        queue_rst(v, h);
        return;
    }
    c->local_port = h->dst_port;
    c->peer_port = h->src_port;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    c->pending = PEND_RESPONSE;
}

/* Takes the guest's bytes for the host socket; returns how many. */
static size_t guest_rw(struct vconn *c, struct chain_cursor *cur, uint32_t len)
{
    size_t taken = 0;
    if (len > bytering_space(&c->to_host)) { /* beyond the credit we gave */
        reset_conn(c);
        return 0;
    }
    while (len) {
        uint8_t *p;
        size_t run = bytering_free_run(&c->to_host, &p);
        if (run > len)
            run = len;
        size_t got = chain_read(cur, p, run);
        bytering_commit(&c->to_host, got);
        taken += got;
        len -= (uint32_t)got;
        if (got < run || run == 0) /* the chain ended, or no room after all */
            break;
    }
    flush_to_host(c);
    return taken;
}

static void host_accepted(struct vconn *c)
{
    char ok[32];
    int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
    c->state = CONN_ESTABLISHED;
    if (send(c->fd, ok, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) != n)
        reset_conn(c);
}

static void handle_packet(struct vsock *v, const struct virtio_vsock_hdr *h,
                          struct chain_cursor *payload, uint64_t payload_len)
{
    if (h->src_cid != v->guest_cid || h->dst_cid != VSOCK_HOST_CID)
        return; /* not ours to answer */
    if (h->type != VIRTIO_VSOCK_TYPE_STREAM || h->len > payload_len) {
        queue_rst(v, h);
        return;
    }
    struct vconn *c = find_conn(v, h->dst_port, h->src_port);
    if (!c) {
        if (h->op == VIRTIO_VSOCK_OP_REQUEST)
            guest_request(v, h);
        else
            queue_rst(v, h);
        return;
    }
    if (c->state == CONN_CLOSING)
        return;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    switch (h->op) {
    case VIRTIO_VSOCK_OP_RESPONSE:
        if (c->state == CONN_REQUESTING)
            host_accepted(c);
        else
            reset_conn(c);
        break;
    case VIRTIO_VSOCK_OP_RW:
        if (c->state == CONN_ESTABLISHED && !c->guest_done_sending) {
            stats_add(vsock_stats(v), STAT_VSOCK_TX_BYTES, guest_rw(c, payload, h->len));
        }
        else
            reset_conn(c);
        break;
    case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
        c->pending |= PEND_CREDIT;
        break;
    case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
        break; /* the new credit is already recorded */
    case VIRTIO_VSOCK_OP_SHUTDOWN:
        if (h->flags & VIRTIO_VSOCK_SHUTDOWN_SEND)
            c->guest_done_sending = true;
        /* Fully closed: the guest waits for our RST, which goes once the
         * data it sent before has reached the host socket. */
        if ((h->flags & VIRTIO_VSOCK_SHUTDOWN_RCV) && c->guest_done_sending)
            c->close_when_flushed = true;
        flush_to_host(c);
        break;
    case VIRTIO_VSOCK_OP_RST:
        free_conn(v, c);
        break;
    default: /* a second REQUEST, or an unknown op */
        reset_conn(c);
        break;
    }
}

static void process_tx(struct vsock *v)
{
    struct virtio_ticket t;
    while (virtio_pop(v->dev, VSOCK_TX, &v->tx_chain, &t)) {
        struct chain_cursor cur = {.chain = &v->tx_chain};
        struct virtio_vsock_hdr h;
        if (chain_read(&cur, &h, sizeof(h)) == sizeof(h))
            handle_packet(v, &h, &cur, v->tx_chain.readable - sizeof(h));
        virtio_complete(v->dev, VSOCK_TX, &t, 0);
    }
}

/* After a driver reset nothing of the old session survives: every open
 * connection's host socket is closed (its peer sees the end of the stream)
 * and its slot freed, owed packets are forgotten. A host program still
 * asking to connect is not part of the old session: its request goes to
 * the new driver (a driver resets the device when it starts, too). Called
 * from the reset hook and, because a queue notification of the
 * re-initialised driver may be handled first, whenever the I/O thread
 * finds the generation changed. */
static void drop_old_session(struct vsock *v)
{
    pthread_mutex_lock(&v->dev->lock);
    uint32_t generation = v->dev->generation;
    pthread_mutex_unlock(&v->dev->lock);
    if (generation == v->generation)
        return;
    v->generation = generation;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct vconn *c = &v->conns[i];
        if (c->state == CONN_REQUESTING)
            c->pending = PEND_REQUEST; /* ask the new driver */
        else if (c->state == CONN_ESTABLISHED || c->state == CONN_CLOSING)
            free_conn(v, c);
    }
    v->nrsts = 0;
    v->rx_starved = v->rx_too_small = false;
    v->rx.held = false;
    v->reset_event_owed = false; /* a new driver has no old connections */
}

static void vsock_reset(struct virtio_dev *dev) { drop_old_session(dev->impl); }

/* ------------------------------------------------------------- snapshots */

#define VSOCK_STATE_VERSION 1u

static int vsock_save(struct virtio_dev *dev, struct snapshot_writer *w)
{
    struct vsock *v = dev->impl;
    snapshot_put_u32(w, VSOCK_STATE_VERSION);
    snapshot_put_u64(w, v->guest_cid);
    return w->err;
}

/* With the I/O thread held. The snapshot's CID is not imposed: the guest
 * reads this device's on the transport reset. */
static int vsock_restore(struct virtio_dev *dev, struct snapshot_reader *r)
{
    struct vsock *v = dev->impl;
    uint32_t version;
    uint64_t cid;
    if (snapshot_get_u32(r, &version) || snapshot_get_u64(r, &cid))
        return KVMC_EFORMAT;
    if (version != VSOCK_STATE_VERSION)
        return kvmc_fail(KVMC_EFORMAT, "virtio-vsock state version %u", version);
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
        if (v->conns[i].state != CONN_FREE && v->conns[i].state != CONN_HANDSHAKE)
            free_conn(v, &v->conns[i]); /* a host program still saying CONNECT stays */
    pthread_mutex_lock(&dev->lock);
    v->generation = dev->generation;
    v->reset_event_owed = (dev->status & VIRTIO_CONFIG_S_DRIVER_OK) != 0;
    pthread_mutex_unlock(&dev->lock);
    v->nrsts = 0;
    v->rx_starved = v->rx_too_small = false;
    v->rx.held = false;
    return KVMC_OK;
}

static void vsock_process(struct virtio_dev *dev, unsigned qi)
{
    struct vsock *v = dev->impl;
    drop_old_session(v);
    if (qi == VSOCK_TX)
        process_tx(v);
    else if (qi == VSOCK_RX)
        v->rx_starved = v->rx_too_small = false; /* new buffers: worth reading sockets */
    flush_to_guest(v, NULL);
}

/* ---------------------------------------------------------- host sockets */

static void accept_host(struct vsock *v)
{
    int fd = unix_listener_accept(&v->listener);
    if (fd < 0)
        return;
    if (!new_conn(v, fd, CONN_HANDSHAKE))
        close(fd); /* too many connections */
}

/* Reads "CONNECT <port>\n" a byte at a time (nothing past the newline may
 * be consumed: it belongs to the stream). */
static void read_handshake(struct vsock *v, struct vconn *c)
{
    char ch;
    ssize_t n;
    while ((n = recv(c->fd, &ch, 1, MSG_DONTWAIT)) == 1) {
        if (ch != '\n') {
            if (c->line_len == VSOCK_HANDSHAKE_MAX - 1)
                break;
            c->line[c->line_len++] = ch;
            continue;
        }
        c->line[c->line_len] = 0;
        unsigned port;
        char tail;
        if (sscanf(c->line, "CONNECT %u%c", &port, &tail) != 1)
            break;
        c->peer_port = port;
        c->local_port = 0;
        for (unsigned tries = 0; tries <= VSOCK_MAX_CONNS && !c->local_port; tries++) {
            uint32_t candidate = v->next_local_port++ | VSOCK_FIRST_LOCAL_PORT;
            if (!find_conn(v, candidate, port))
                c->local_port = candidate;
        }
        c->state = CONN_REQUESTING;
        c->pending = PEND_REQUEST;
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    free_conn(v, c); /* bad line, too long, or closed: Firecracker closes too */
}

static unsigned vsock_prepare(void *opaque, struct pollfd *fds, unsigned max, int *timeout)
{
    struct vsock *v = opaque;
    drop_old_session(v);
    unsigned n = 0;
    if (max) /* fds[0] always stands for the listener, polled or not */
        fds[n++] = (struct pollfd){.fd = unix_listener_pollable(&v->listener, timeout)
                                             ? v->listener.fd : -1,
                                   .events = POLLIN};
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct vconn *c = &v->conns[i];
        v->polled[i] = NULL;
        if (c->state == CONN_FREE || c->fd < 0 || n == max)
            continue;
        short ev = 0;
        if (c->state == CONN_HANDSHAKE)
            ev = POLLIN;
        if (c->state == CONN_ESTABLISHED) {
            if (!c->host_eof && !v->rx_starved && !v->rx_too_small && peer_credit(c))
                ev |= POLLIN;
            if (c->to_host.len)
                ev |= POLLOUT;
        }
        if (!ev)
            continue; /* a hang-up would wake us for nothing */
        fds[n] = (struct pollfd){.fd = c->fd, .events = ev};
        v->polled[i] = &fds[n++];
    }
    return n;
}

static void vsock_dispatch(void *opaque, struct pollfd *fds, unsigned n)
{
    struct vsock *v = opaque;
    bool readable[VSOCK_MAX_CONNS] = {false};
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++) {
        struct vconn *c = &v->conns[i];
        struct pollfd *p = v->polled[i];
        if (!p || !p->revents || p->fd != c->fd)
            continue; /* not polled, or the slot was reused meanwhile */
        if (c->state == CONN_HANDSHAKE)
            read_handshake(v, c);
        else if (c->state == CONN_ESTABLISHED) {
            if (p->revents & POLLOUT)
                flush_to_host(c);
            readable[i] = (p->revents & (POLLIN | POLLHUP | POLLERR)) != 0;
        }
    }
    if (n && (fds[0].revents & POLLIN))
        accept_host(v);
    flush_to_guest(v, readable);
}

static void vsock_read_config(struct virtio_dev *dev, uint32_t offset, void *data,
                              unsigned len)
{
    struct vsock *v = dev->impl;
    struct virtio_vsock_config config = {.guest_cid = v->guest_cid};
    memcpy(data, (uint8_t *)&config + offset, len);
}

static int vsock_attach(struct virtio_dev *dev, struct iothread *io)
{
    struct vsock *v = dev->impl;
    v->dev = dev;
    io->seccomp_extras |= SECCOMP_IO_UNIX;
    struct iothread_source src = {vsock_prepare, vsock_dispatch, v};
    return iothread_add_source(io, &src);
}

static void vsock_destroy(struct virtio_dev *dev)
{
    struct vsock *v = dev->impl;
    if (!v)
        return;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
        if (v->conns[i].state != CONN_FREE)
            free_conn(v, &v->conns[i]);
    unix_listener_close(&v->listener);
    free(v);
}

static const struct virtio_device_ops vsock_ops = {
    .name = "virtio-vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .num_queues = 3,
    .queue_max = VIRTQ_MAX_SIZE,
    .config_size = sizeof(struct virtio_vsock_config),
    .read_config = vsock_read_config,
    .process_queue = vsock_process,
    .attach = vsock_attach,
    .reset = vsock_reset,
    .save = vsock_save,
    .restore = vsock_restore,
    .destroy = vsock_destroy,
};

int virtio_vsock_open(const struct vsock_config *cfg, const struct virtio_device_ops **ops,
                      void **impl)
{
    struct vsock *v = calloc(1, sizeof(*v));
    if (!v)
        return kvmc_fail(KVMC_ENOMEM, "allocating virtio-vsock");
    v->guest_cid = cfg->cid;
    v->connect = cfg->connect;
    v->connect_opaque = cfg->connect_opaque;
    for (unsigned i = 0; i < VSOCK_MAX_CONNS; i++)
        v->conns[i].fd = -1;
    int err = unix_listener_open(&v->listener, cfg->path, "vsock");
    if (err) {
        struct virtio_dev tmp = {.impl = v};
        vsock_destroy(&tmp);
        return err;
    }
    *ops = &vsock_ops;
    *impl = v;
    return KVMC_OK;
}

static unsigned vsock_count(const kvmc_config *cfg) { return cfg->vsock.enabled ? 1 : 0; }

static int vsock_open_nth(const kvmc_config *cfg, unsigned i,
                          const struct virtio_device_ops **ops, void **impl)
{
    (void)i;
    return virtio_vsock_open(&cfg->vsock, ops, impl);
}

const struct virtio_device_type virtio_vsock_device = {
    .name = "virtio-vsock", .count = vsock_count, .open = vsock_open_nth};
