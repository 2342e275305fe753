/* virtio-vsock against named hostile packets, through the real transport
 * with no VM: each gets a reset or is ignored, the device never needs a
 * reset, and a well-behaved connection still works afterwards. The rings:
 * RX (queue 0) and TX (queue 1), 8 entries each, in a 16 MiB fake guest. */
#include <criterion/criterion.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <linux/virtio_vsock.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mmio_driver.h"
#include "snapshot_fixture.h"
#include "unix_socket.h"
#include "virtq_fixture.h"
#include "iothread.h"
#include "virtio/mmio.h"
#include "config.h"
#include "devices/virtio_vsock.h"

#define QSIZE FQ_SIZE /* fq_offer_at assumes it */
#define GUEST_CID 3
#define MEM FQ_MEM
#define RX_BUF 0x100000ull /* QSIZE receive buffers of 4 KiB */
#define TX_BUF 0x200000ull /* one packet: header, then payload */
#define LISTEN_PORT 5000

struct ring { uint64_t desc, avail, used; uint16_t avail_idx, used_seen; };

static struct guest_memory gm;
static struct iothread io;
static struct virtio_mmio *m;
static struct ring rx = {0x1000, 0x2000, 0x3000, 0, 0}, tx = {0x4000, 0x5000, 0x6000, 0, 0};
static char dir[] = "/tmp/kvmc-vsock-XXXXXX";
static char base_path[96], listen_path[128];
static int listener = -1;

static uint32_t rd(unsigned reg) { return md_rd(m, reg); }

static void setup(void)
{
    cr_assert(mkdtemp(dir));
    snprintf(base_path, sizeof(base_path), "%s/v", dir);
    snprintf(listen_path, sizeof(listen_path), "%s_%u", base_path, LISTEN_PORT);
    listener = unix_listen(listen_path, "test listener");
    cr_assert_geq(listener, 0);
    gm_init(&gm, MEM, 0);
    const struct virtio_device_ops *ops;
    void *impl;
    struct vsock_config cfg = {.enabled = true, .cid = GUEST_CID, .path = base_path};
    cr_assert_eq(virtio_vsock_open(&cfg, &ops, &impl), KVMC_OK);
    cr_assert_eq(virtio_mmio_create_detached(&gm, ops, impl, &m), KVMC_OK);
    cr_assert_eq(iothread_init(&io), KVMC_OK);
    cr_assert_eq(ops->attach(&m->dev, &io), KVMC_OK);
    const struct md_queue queues[] = {{0, rx.desc, rx.avail, rx.used},
                                      {1, tx.desc, tx.avail, tx.used}};
    cr_assert(md_bring_up(m, queues, 2) & VIRTIO_CONFIG_S_DRIVER_OK);
    rx.avail_idx = rx.used_seen = tx.avail_idx = tx.used_seen = 0;
}

static void teardown(void)
{
    iothread_destroy(&io);
    virtio_mmio_destroy(m);
    gm_destroy(&gm);
    close(listener);
    unlink(listen_path);
    rmdir(dir);
}

TestSuite(vsock, .init = setup, .fini = teardown, .timeout = 10);

/* Gives the device n receive buffers of 4 KiB. */
static void post_rx(unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned slot = rx.avail_idx % QSIZE;
        fq_desc(&gm, rx.desc, slot, RX_BUF + 4096ull * slot, 4096, VRING_DESC_F_WRITE, 0);
        fq_offer_at(&gm, rx.avail, &rx.avail_idx, (uint16_t)slot);
    }
    m->dev.ops->process_queue(&m->dev, 0);
}

static struct virtio_vsock_hdr packet(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
    return (struct virtio_vsock_hdr){.src_cid = GUEST_CID, .dst_cid = 2, .src_port = src_port,
                                     .dst_port = dst_port, .type = VIRTIO_VSOCK_TYPE_STREAM,
                                     .op = op, .buf_alloc = 65536};
}

/* Sends header (hdr_bytes of it) plus payload_len bytes as one chain. */
static void send_packet(const struct virtio_vsock_hdr *h, size_t hdr_bytes, uint32_t payload_len)
{
    gm_write(&gm, TX_BUF, h, hdr_bytes);
    fq_desc(&gm, tx.desc, 0, TX_BUF, (uint32_t)hdr_bytes, payload_len ? VRING_DESC_F_NEXT : 0, 1);
    fq_desc(&gm, tx.desc, 1, TX_BUF + 4096, payload_len, 0, 0);
    fq_offer_at(&gm, tx.avail, &tx.avail_idx, 0);
    m->dev.ops->process_queue(&m->dev, 1);
}

/* The next packet the device put in a receive buffer; false if none. */
static bool received(struct virtio_vsock_hdr *h)
{
    uint16_t used_idx;
    gm_read(&gm, rx.used + 2, &used_idx, 2);
    if (used_idx == rx.used_seen)
        return false;
    struct vring_used_elem e;
    gm_read(&gm, rx.used + 4 + 8 * (rx.used_seen % QSIZE), &e, sizeof(e));
    rx.used_seen++;
    cr_assert_geq(e.len, sizeof(*h));
    gm_read(&gm, RX_BUF + 4096ull * e.id, h, sizeof(*h));
    return true;
}

static void expect(uint16_t op, uint32_t to_port, const char *why)
{
    struct virtio_vsock_hdr h;
    cr_assert(received(&h), "%s: nothing came back", why);
    cr_assert_eq(h.op, op, "%s: op %u", why, h.op);
    cr_assert_eq(h.dst_port, to_port, "%s: to port %u", why, h.dst_port);
    cr_assert_eq(h.dst_cid, GUEST_CID);
}

static void expect_nothing(const char *why)
{
    struct virtio_vsock_hdr h;
    cr_assert_not(received(&h), "%s: got op %u", why, h.op);
}

static void expect_device_healthy(void)
{
    cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* A well-behaved connection still works. */
    struct virtio_vsock_hdr req = packet(VIRTIO_VSOCK_OP_REQUEST, 7777, LISTEN_PORT);
    send_packet(&req, sizeof(req), 0);
    expect(VIRTIO_VSOCK_OP_RESPONSE, 7777, "a good request afterwards");
}

Test(vsock, a_length_past_the_buffers_gets_a_reset)
{
    post_rx(QSIZE);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 1001, LISTEN_PORT);
    h.len = 4096; /* no payload follows */
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RST, 1001, "len > payload");
    expect_device_healthy();
}

Test(vsock, a_non_stream_type_gets_a_reset)
{
    post_rx(QSIZE);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 1002, LISTEN_PORT);
    h.type = 2; /* SEQPACKET: not offered */
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RST, 1002, "seqpacket");
    expect_device_healthy();
}

Test(vsock, a_spoofed_source_or_foreign_destination_is_ignored)
{
    post_rx(QSIZE);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 1003, LISTEN_PORT);
    h.src_cid = 99; /* not the guest's CID */
    send_packet(&h, sizeof(h), 0);
    h = packet(VIRTIO_VSOCK_OP_REQUEST, 1003, LISTEN_PORT);
    h.dst_cid = 7; /* another VM */
    send_packet(&h, sizeof(h), 0);
    expect_nothing("spoofed CIDs");
    expect_device_healthy();
}

Test(vsock, a_truncated_header_is_ignored)
{
    post_rx(QSIZE);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 1004, LISTEN_PORT);
    send_packet(&h, 20, 0);
    expect_nothing("20-byte header");
    expect_device_healthy();
}

Test(vsock, an_unknown_op_or_data_for_no_connection_gets_a_reset)
{
    post_rx(QSIZE);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_RW, 1005, 4444);
    h.len = 16;
    send_packet(&h, sizeof(h), 16);
    expect(VIRTIO_VSOCK_OP_RST, 1005, "data on no connection");
    h = packet(0x7777, 1006, 4444);
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RST, 1006, "unknown op");
    h = packet(VIRTIO_VSOCK_OP_RST, 1007, 4444);
    send_packet(&h, sizeof(h), 0);
    expect_nothing("an RST is never answered");
    expect_device_healthy();
}

Test(vsock, data_past_the_credit_resets_the_connection)
{
    post_rx(QSIZE);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 1008, LISTEN_PORT);
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RESPONSE, 1008, "request");
    h = packet(VIRTIO_VSOCK_OP_RW, 1008, LISTEN_PORT);
    h.len = 256 * 1024 + 1; /* one byte past the buf_alloc we advertised */
    send_packet(&h, sizeof(h), h.len);
    expect(VIRTIO_VSOCK_OP_RST, 1008, "past the credit");
    expect_device_healthy();
}

Test(vsock, a_second_request_on_an_open_connection_resets_it)
{
    post_rx(QSIZE);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 1009, LISTEN_PORT);
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RESPONSE, 1009, "request");
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RST, 1009, "second request");
    expect_device_healthy();
}

/* With no receive buffers, resets for unknown connections wait in a backlog
 * of 16; the rest are dropped, so a flood costs the host nothing. */
Test(vsock, a_flood_of_bad_packets_is_bounded)
{
    for (uint32_t port = 2000; port < 2100; port++) {
        struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_RW, port, 4444);
        send_packet(&h, sizeof(h), 0);
    }
    unsigned rsts = 0;
    for (unsigned round = 0; round < 3; round++) { /* the third finds none */
        post_rx(QSIZE);
        struct virtio_vsock_hdr h;
        while (received(&h)) {
            cr_assert_eq(h.op, VIRTIO_VSOCK_OP_RST);
            rsts++;
        }
    }
    cr_assert_eq(rsts, 16u, "the backlog holds 16, got %u", rsts);
    expect_device_healthy(); /* on the buffers the third round left */
}

/* Guest connections are capped at 64: the 65th request is refused (the
 * host program accepts every one, so only the cap can refuse it). */
Test(vsock, connections_past_the_cap_are_refused)
{
    int accepted[64];
    for (uint32_t port = 3000; port < 3064; port++) {
        post_rx(1);
        struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, port, LISTEN_PORT);
        send_packet(&h, sizeof(h), 0);
        expect(VIRTIO_VSOCK_OP_RESPONSE, port, "within the cap");
        accepted[port - 3000] = accept(listener, NULL, NULL);
        cr_assert_geq(accepted[port - 3000], 0);
    }
    post_rx(1);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 3064, LISTEN_PORT);
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RST, 3064, "the 65th");
    cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    for (unsigned i = 0; i < 64; i++)
        close(accepted[i]);
}

/* 64 guest connections, each accepted by the host program. */
static void open_64(int accepted[64])
{
    for (uint32_t port = 3000; port < 3064; port++) {
        post_rx(1);
        struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, port, LISTEN_PORT);
        send_packet(&h, sizeof(h), 0);
        expect(VIRTIO_VSOCK_OP_RESPONSE, port, "within the cap");
        accepted[port - 3000] = accept(listener, NULL, NULL);
        cr_assert_geq(accepted[port - 3000], 0);
    }
}

/* A driver reset ends the session: every host peer sees the end of its
 * stream, and all 64 slots are free for the driver that comes back. */
Test(vsock, a_device_reset_closes_every_connection)
{
    int accepted[64];
    open_64(accepted);
    const struct md_queue queues[] = {{0, rx.desc, rx.avail, rx.used},
                                      {1, tx.desc, tx.avail, tx.used}};
    /* The new driver's rings start empty. */
    memset(gm_ptr(&gm, rx.used, 4), 0, 4);
    memset(gm_ptr(&gm, tx.used, 4), 0, 4);
    memset(gm_ptr(&gm, rx.avail, 4), 0, 4);
    memset(gm_ptr(&gm, tx.avail, 4), 0, 4);
    rx.avail_idx = rx.used_seen = tx.avail_idx = tx.used_seen = 0;
    cr_assert(md_bring_up(m, queues, 2) & VIRTIO_CONFIG_S_DRIVER_OK); /* resets first */
    for (unsigned i = 0; i < 64; i++) {
        char c;
        cr_assert_eq(recv(accepted[i], &c, 1, MSG_DONTWAIT), 0,
                     "connection %u: the host peer sees no end of stream", i);
        close(accepted[i]);
    }
    open_64(accepted); /* every slot is free again */
    for (unsigned i = 0; i < 64; i++)
        close(accepted[i]);
}

/* Receive buffers that hold a header and nothing more: host data cannot be
 * delivered, so the device must stop polling the host socket until the
 * driver offers buffers again, not spin on a readable socket. */
Test(vsock, header_only_receive_buffers_do_not_make_the_io_thread_spin)
{
    post_rx(1);
    struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, 4000, LISTEN_PORT);
    send_packet(&h, sizeof(h), 0);
    expect(VIRTIO_VSOCK_OP_RESPONSE, 4000, "request");
    int peer = accept(listener, NULL, NULL);
    cr_assert_geq(peer, 0);
    cr_assert_eq(send(peer, "data", 4, 0), 4);
    /* The driver's next buffers are 44 bytes: one header. */
    for (unsigned i = 0; i < 4; i++) {
        unsigned slot = rx.avail_idx % QSIZE;
        fq_desc(&gm, rx.desc, slot, RX_BUF + 4096ull * slot, sizeof(struct virtio_vsock_hdr),
                VRING_DESC_F_WRITE, 0);
        fq_offer_at(&gm, rx.avail, &rx.avail_idx, (uint16_t)slot);
    }
    m->dev.ops->process_queue(&m->dev, 0);
    /* Run the I/O thread's source by hand: poll what it asks for. */
    const struct iothread_source *src = &io.sources[0];
    unsigned wakeups = 0;
    for (unsigned round = 0; round < 50; round++) {
        struct pollfd fds[IOTHREAD_MAX_POLLFDS];
        int timeout = 100;
        unsigned n = src->prepare(src->opaque, fds, IOTHREAD_MAX_POLLFDS, &timeout);
        int ready = poll(fds, n, 0);
        if (ready > 0)
            wakeups++;
        src->dispatch(src->opaque, fds, n);
    }
    cr_assert_leq(wakeups, 2u, "the I/O thread woke %u times in 50 rounds for data it "
                  "cannot deliver", wakeups);
    cr_assert_not(rd(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* Control packets still use them; then real buffers, and the data flows. */
    for (unsigned i = 0; i < 4; i++) {
        h = packet(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 4000, LISTEN_PORT);
        send_packet(&h, sizeof(h), 0);
        expect(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 4000, "a credit update fits a header");
    }
    post_rx(4);
    for (unsigned round = 0; round < 5; round++) {
        struct pollfd fds[IOTHREAD_MAX_POLLFDS];
        int timeout = 100;
        unsigned n = src->prepare(src->opaque, fds, IOTHREAD_MAX_POLLFDS, &timeout);
        poll(fds, n, 0);
        src->dispatch(src->opaque, fds, n);
    }
    struct virtio_vsock_hdr got;
    bool data = false;
    while (!data && received(&got))
        data = got.op == VIRTIO_VSOCK_OP_RW && got.len == 4;
    cr_assert(data, "the 4 bytes never reached the guest");
    close(peer);
}

/* Out of file descriptors (a guest can get there through libslirp's
 * sockets): a host client of the vsock socket cannot be accepted, and the
 * listener stays readable. The I/O thread must not spin on it. */
Test(vsock, a_listener_that_cannot_accept_does_not_make_the_io_thread_spin)
{
    struct vsock_listener_probe { int fd; } client = {unix_connect(base_path)};
    cr_assert_geq(client.fd, 0, "connecting to the vsock socket");
    struct rlimit lim = {256, 256}; /* this test's own process */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    int fds[4096], nfds = 0;
    for (int fd; nfds < 4096 && (fd = dup(0)) >= 0;)
        fds[nfds++] = fd; /* every descriptor up to the limit */
    cr_assert_eq(errno, EMFILE);
    const struct iothread_source *src = &io.sources[0];
    unsigned wakeups = 0;
    for (unsigned round = 0; round < 20; round++) {
        struct pollfd pfds[IOTHREAD_MAX_POLLFDS];
        int timeout = -1;
        unsigned n = src->prepare(src->opaque, pfds, IOTHREAD_MAX_POLLFDS, &timeout);
        if (round > 0) /* the first round's accept found no descriptor */
            cr_assert_neq(timeout, -1, "a paused listener sets a timeout");
        if (poll(pfds, n, 0) > 0)
            wakeups++;
        src->dispatch(src->opaque, pfds, n);
    }
    cr_assert_leq(wakeups, 1u, "woke %u times in 20 rounds for a connection it cannot accept",
                  wakeups);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    /* Descriptors back: after the pause, the client is accepted. */
    usleep((LISTENER_PAUSE_MS + 20) * 1000);
    for (unsigned round = 0; round < 3; round++) {
        struct pollfd pfds[IOTHREAD_MAX_POLLFDS];
        int timeout = -1;
        unsigned n = src->prepare(src->opaque, pfds, IOTHREAD_MAX_POLLFDS, &timeout);
        poll(pfds, n, 0);
        src->dispatch(src->opaque, pfds, n);
    }
    cr_assert_eq(send(client.fd, "CONNECT 5000\n", 13, MSG_NOSIGNAL), 13);
    close(client.fd);
}

/* A host program asking to connect is not part of the session a reset
 * ends: its request reaches the driver that comes back (drivers reset the
 * device when they start, too). */
Test(vsock, a_host_request_outlives_a_device_reset)
{
    int client = unix_connect(base_path);
    cr_assert_geq(client, 0);
    cr_assert_eq(send(client, "CONNECT 6000\n", 13, MSG_NOSIGNAL), 13);
    const struct iothread_source *src = &io.sources[0];
    for (unsigned round = 0; round < 3; round++) { /* accept, read the handshake */
        struct pollfd pfds[IOTHREAD_MAX_POLLFDS];
        int timeout = -1;
        unsigned n = src->prepare(src->opaque, pfds, IOTHREAD_MAX_POLLFDS, &timeout);
        poll(pfds, n, 50);
        src->dispatch(src->opaque, pfds, n);
    }
    const struct md_queue queues[] = {{0, rx.desc, rx.avail, rx.used},
                                      {1, tx.desc, tx.avail, tx.used}};
    cr_assert(md_bring_up(m, queues, 2) & VIRTIO_CONFIG_S_DRIVER_OK); /* resets first */
    post_rx(QSIZE);
    struct virtio_vsock_hdr h;
    cr_assert(received(&h), "the request never reached the new driver");
    cr_assert_eq(h.op, VIRTIO_VSOCK_OP_REQUEST);
    cr_assert_eq(h.dst_port, 6000u);
    char c;
    cr_assert_eq(recv(client, &c, 1, MSG_DONTWAIT), -1, "the host program was hung up on");
    close(client);
}

/* A restore (or a reset to a snapshot) ends the session as Firecracker's
 * does: every host peer sees the end of its stream, the guest gets one
 * transport reset event on the event queue, its old connections get
 * resets, and new ones work. Queue indices come back from the state. */
Test(vsock, a_restore_closes_every_connection_and_sends_a_transport_reset)
{
    const uint64_t ev_desc = 0x7000, ev_avail = 0x8000, ev_used = 0x9000, ev_buf = 0x300000;
    const struct md_queue queues[] = {{0, rx.desc, rx.avail, rx.used},
                                      {1, tx.desc, tx.avail, tx.used},
                                      {2, ev_desc, ev_avail, ev_used}};
    cr_assert(md_bring_up(m, queues, 3) & VIRTIO_CONFIG_S_DRIVER_OK);
    uint16_t ev_idx = 0;
    fq_desc(&gm, ev_desc, 0, ev_buf, 8, VRING_DESC_F_WRITE, 0);
    fq_offer_at(&gm, ev_avail, &ev_idx, 0);
    int accepted[2];
    for (uint32_t port = 3000; port < 3002; port++) {
        post_rx(1);
        struct virtio_vsock_hdr h = packet(VIRTIO_VSOCK_OP_REQUEST, port, LISTEN_PORT);
        send_packet(&h, sizeof(h), 0);
        expect(VIRTIO_VSOCK_OP_RESPONSE, port, "before the snapshot");
        accepted[port - 3000] = accept(listener, NULL, NULL);
        cr_assert_geq(accepted[port - 3000], 0);
    }
    post_rx(1); /* offered before the snapshot, used after */
    struct snapshot_writer w;
    struct snapshot_reader r;
    sf_save(m, &w, &r);
    cr_assert_eq(virtio_mmio_restore(m, &r), KVMC_OK, "%s", kvmc_last_error());
    cr_assert(snapshot_section_done(&r));
    snapshot_writer_free(&w);

    for (unsigned i = 0; i < 2; i++) {
        char c;
        cr_assert_eq(recv(accepted[i], &c, 1, MSG_DONTWAIT), 0,
                     "connection %u: the host peer sees no end of stream", i);
        close(accepted[i]);
    }
    m->dev.ops->process_queue(&m->dev, 2); /* the kick after a restore */
    uint16_t used;
    gm_read(&gm, ev_used + 2, &used, 2);
    cr_assert_eq(used, 1, "no transport reset event");
    struct vring_used_elem e;
    uint32_t id;
    gm_read(&gm, ev_used + 4, &e, sizeof(e));
    gm_read(&gm, ev_buf, &id, 4);
    cr_assert_eq(e.len, 4);
    cr_assert_eq(id, VIRTIO_VSOCK_EVENT_TRANSPORT_RESET);
    m->dev.ops->process_queue(&m->dev, 2);
    gm_read(&gm, ev_used + 2, &used, 2);
    cr_assert_eq(used, 1, "a second event");

    /* The old connection is gone. */
    struct virtio_vsock_hdr rw = packet(VIRTIO_VSOCK_OP_RW, 3000, LISTEN_PORT);
    send_packet(&rw, sizeof(rw), 0);
    expect(VIRTIO_VSOCK_OP_RST, 3000, "data on a connection the restore ended");
    post_rx(1);
    expect_device_healthy();
}
