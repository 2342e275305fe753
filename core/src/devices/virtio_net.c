/* virtio-net: one receive and one transmit queue, a MAC address and a link
 * that is always up; no offloads, so every frame is plain Ethernet behind a
 * 12-byte virtio_net_hdr_v1 whose fields we neither trust nor need. The host
 * side is a backend (net/): libslirp or tap.
 *
 * Snapshots: the MAC address is saved and restored (the guest's driver read
 * it at probe); a receive buffer held for the next frame is taken again
 * (see virtio_dev_save). The backend's state is the host's: libslirp's
 * connections are not saved, so TCP connections through user networking
 * end with a restore (the guest's next segment gets a reset), and frames
 * in flight are lost as on a real wire. */
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <stdlib.h>
#include <string.h>

#include "../config.h"
#include "../error.h"
#include "../net/backend.h"
#include "../snapshot/format.h"
#include "../virtio/chain.h"
#include "../iothread.h"
#include "../virtio/virtio.h"
#include "virtio_net.h"

#define NET_RX 0
#define NET_TX 1
#define NET_MAX_FRAME 65536 /* largest frame we pass either way (no TSO: 1514) */
#define NET_TX_MAX_IOV 64   /* Linux sends a frame in at most MAX_SKB_FRAGS + 2 */

struct vnet {
    struct virtio_dev *dev;
    struct virtio_net_config config;
    const struct net_backend_ops *be_ops;
    void *be;
    struct virtq_chain tx_chain;
    struct virtio_held rx;
    uint64_t rx_dropped; /* frames with no receive buffer to go into */
};

/* A receive buffer with no room past the header can take no frame: it goes
 * back to the driver empty (Linux counts it as a length error), so it never
 * blocks the queue, and a backend is never told there is room (and left
 * polling a readable host socket it cannot read from). At most a ring's
 * worth per call. */
bool virtio_net_can_receive(struct vnet *n)
{
    for (unsigned i = 0; i < VIRTQ_MAX_SIZE; i++) {
        if (!virtio_hold(n->dev, NET_RX, &n->rx))
            return false;
        if (n->rx.chain.writable > sizeof(struct virtio_net_hdr_v1))
            return true;
        virtio_release(n->dev, NET_RX, &n->rx, 0);
    }
    return false;
}

unsigned virtio_net_rx_buffers(struct vnet *n, struct iovec *iov, unsigned max)
{
    struct virtio_net_hdr_v1 hdr = {.num_buffers = 1};
    struct chain_cursor cur = {.chain = &n->rx.chain};
    size_t room;
    if (!n->rx.held || chain_write(&cur, &hdr, sizeof(hdr)) != sizeof(hdr))
        return 0; /* virtio_net_can_receive() holds only buffers with room */
    return chain_iov(&cur, true, iov, max, NET_MAX_FRAME, &room);
}

void virtio_net_rx_done(struct vnet *n, size_t len)
{
    stats_add(n->dev->stats, STAT_NET_RX_PACKETS, 1);
    stats_add(n->dev->stats, STAT_NET_RX_BYTES, len);
    virtio_release(n->dev, NET_RX, &n->rx, (uint32_t)(sizeof(struct virtio_net_hdr_v1) + len));
}

bool virtio_net_receive(struct vnet *n, const uint8_t *frame, size_t len)
{
    struct iovec iov[16];
    unsigned niov = virtio_net_can_receive(n) ? virtio_net_rx_buffers(n, iov, 16) : 0;
    if (!niov) {
        n->rx_dropped++;
        stats_add(n->dev->stats, STAT_NET_RX_DROPPED, 1);
        return false;
    }
    size_t done = 0;
    for (unsigned i = 0; i < niov && done < len; i++) { /* a too-small buffer truncates */
        size_t part = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
        memcpy(iov[i].iov_base, frame + done, part);
        done += part;
    }
    virtio_net_rx_done(n, done);
    return true;
}

/* Hands each frame to the backend straight from guest memory. */
static void process_tx(struct vnet *n)
{
    struct virtio_ticket t;
    while (virtio_pop(n->dev, NET_TX, &n->tx_chain, &t)) {
        struct chain_cursor cur = {.chain = &n->tx_chain};
        struct iovec iov[NET_TX_MAX_IOV];
        size_t len;
        if (chain_skip(&cur, false, sizeof(struct virtio_net_hdr_v1)) ==
            sizeof(struct virtio_net_hdr_v1)) {
            unsigned niov = chain_iov(&cur, false, iov, NET_TX_MAX_IOV, NET_MAX_FRAME, &len);
            /* At least an Ethernet header, and all of the frame: a frame in
             * more pieces than we take, or over the limit, is dropped. */
            uint64_t whole = n->tx_chain.readable - sizeof(struct virtio_net_hdr_v1);
            if (len >= 14 && len == whole) {
                n->be_ops->send(n->be, iov, niov, len);
                stats_add(n->dev->stats, STAT_NET_TX_PACKETS, 1);
                stats_add(n->dev->stats, STAT_NET_TX_BYTES, len);
            }
        }
        virtio_complete(n->dev, NET_TX, &t, 0);
    }
}

static void net_process(struct virtio_dev *dev, unsigned qi)
{
    struct vnet *n = dev->impl;
    if (qi == NET_TX)
        process_tx(n);
    /* New receive buffers: the backend's next dispatch can deliver. */
}

static void net_read_config(struct virtio_dev *dev, uint32_t offset, void *data, unsigned len)
{
    struct vnet *n = dev->impl;
    memcpy(data, (uint8_t *)&n->config + offset, len);
}

static unsigned net_prepare(void *opaque, struct pollfd *fds, unsigned max, int *timeout)
{
    struct vnet *n = opaque;
    return n->be_ops->prepare(n->be, fds, max, timeout);
}

static void net_dispatch(void *opaque, struct pollfd *fds, unsigned count)
{
    struct vnet *n = opaque;
    n->be_ops->dispatch(n->be, fds, count);
}

static int net_attach(struct virtio_dev *dev, struct iothread *io)
{
    struct vnet *n = dev->impl;
    n->dev = dev;
    io->seccomp_extras |= n->be_ops->seccomp_extras;
    struct iothread_source src = {net_prepare, net_dispatch, n};
    return iothread_add_source(io, &src);
}

static void net_destroy(struct virtio_dev *dev)
{
    struct vnet *n = dev->impl;
    if (!n)
        return;
    if (n->be)
        n->be_ops->destroy(n->be);
    free(n);
}

#define NET_STATE_VERSION 1u

static int net_save(struct virtio_dev *dev, struct snapshot_writer *w)
{
    struct vnet *n = dev->impl;
    snapshot_put_u32(w, NET_STATE_VERSION);
    snapshot_put(w, n->config.mac, sizeof(n->config.mac));
    return w->err;
}

static int net_restore(struct virtio_dev *dev, struct snapshot_reader *r)
{
    struct vnet *n = dev->impl;
    uint32_t version;
    uint8_t mac[sizeof(n->config.mac)];
    if (snapshot_get_u32(r, &version) || snapshot_get(r, mac, sizeof(mac)))
        return KVMC_EFORMAT;
    if (version != NET_STATE_VERSION)
        return kvmc_fail(KVMC_EFORMAT, "virtio-net state version %u", version);
    memcpy(n->config.mac, mac, sizeof(mac));
    n->rx.held = false;
    return KVMC_OK;
}

static const struct virtio_device_ops net_ops = {
    .name = "virtio-net",
    .device_id = VIRTIO_ID_NET,
    .features = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS),
    .num_queues = 2,
    .queue_max = VIRTQ_MAX_SIZE,
    .config_size = offsetof(struct virtio_net_config, max_virtqueue_pairs),
    .read_config = net_read_config,
    .process_queue = net_process,
    .attach = net_attach,
    .save = net_save,
    .restore = net_restore,
    .destroy = net_destroy,
};

static int open_device(const struct net_config *cfg, unsigned index, net_backend_open_fn open_be,
                       const struct virtio_device_ops **ops, void **impl)
{
    struct vnet *n = calloc(1, sizeof(*n));
    if (!n)
        return kvmc_fail(KVMC_ENOMEM, "allocating virtio-net");
    static const uint8_t default_mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    memcpy(n->config.mac, cfg->has_mac ? cfg->mac : default_mac, 6);
    if (!cfg->has_mac)
        n->config.mac[5] = (uint8_t)(n->config.mac[5] + index);
    n->config.status = VIRTIO_NET_S_LINK_UP;
    int err = open_be(cfg, n, &n->be_ops, &n->be);
    if (err) {
        free(n);
        return err;
    }
    *ops = &net_ops;
    *impl = n;
    return KVMC_OK;
}

int virtio_net_open(const struct net_config *cfg, unsigned index,
                    const struct virtio_device_ops **ops, void **impl)
{
    return open_device(cfg, index, cfg->tap ? net_tap_open : net_slirp_open, ops, impl);
}

int virtio_net_open_on(const struct net_config *cfg, net_backend_open_fn open_be,
                       const struct virtio_device_ops **ops, void **impl)
{
    return open_device(cfg, 0, open_be, ops, impl);
}

static unsigned net_count(const kvmc_config *cfg) { return cfg->nnets; }

static int net_open_nth(const kvmc_config *cfg, unsigned i, const struct virtio_device_ops **ops,
                        void **impl)
{
    return virtio_net_open(&cfg->nets[i], i, ops, impl);
}

const struct virtio_device_type virtio_net_device = {
    .name = "virtio-net", .count = net_count, .open = net_open_nth};
