/* virtio-net's receive side against buffers a hostile driver offers: ones
 * that cannot take a frame are handed back, never held while a backend
 * waits for room that will not come. */
#include <criterion/criterion.h>
#include <linux/virtio_net.h>
#include <string.h>

#include "mmio_driver.h"
#include "net/backend.h"
#include "virtio/mmio.h"
#include "config.h"
#include "devices/virtio_net.h"
#include "iothread.h"

#define RX_DESC 0x1000ull
#define RX_AVAIL 0x2000ull
#define RX_USED 0x3000ull
#define TX_DESC 0x4000ull
#define TX_AVAIL 0x5000ull
#define TX_USED 0x6000ull
#define RX_BUF 0x100000ull

static struct guest_memory gm;
static struct virtio_mmio *m;
static struct vnet *net;
static uint16_t avail_idx;

static void null_send(void *be, const struct iovec *iov, unsigned niov, size_t len)
{
    (void)be, (void)iov, (void)niov, (void)len;
}
static unsigned null_prepare(void *be, struct pollfd *fds, unsigned max, int *timeout)
{
    (void)be, (void)fds, (void)max, (void)timeout;
    return 0;
}
static void null_dispatch(void *be, struct pollfd *fds, unsigned n) { (void)be, (void)fds, (void)n; }
static void null_destroy(void *be) { (void)be; }

static int null_open(const struct net_config *cfg, struct vnet *dev,
                     const struct net_backend_ops **ops, void **be)
{
    static const struct net_backend_ops null_ops = {
        .name = "null", .send = null_send, .prepare = null_prepare,
        .dispatch = null_dispatch, .destroy = null_destroy};
    (void)cfg;
    net = dev;
    *ops = &null_ops;
    *be = NULL;
    return KVMC_OK;
}

static void setup(void)
{
    gm_init(&gm, FQ_MEM, 0);
    const struct virtio_device_ops *ops;
    void *impl;
    struct net_config c = {0};
    cr_assert_eq(virtio_net_open_on(&c, null_open, &ops, &impl), KVMC_OK);
    cr_assert_eq(virtio_mmio_create_detached(&gm, ops, impl, &m), KVMC_OK);
    struct iothread io;
    cr_assert_eq(iothread_init(&io), KVMC_OK);
    cr_assert_eq(ops->attach(&m->dev, &io), KVMC_OK); /* sets the device; io unused */
    iothread_destroy(&io);
    const struct md_queue queues[] = {{0, RX_DESC, RX_AVAIL, RX_USED},
                                      {1, TX_DESC, TX_AVAIL, TX_USED}};
    cr_assert(md_bring_up(m, queues, 2) & VIRTIO_CONFIG_S_DRIVER_OK);
    avail_idx = 0;
}

static void teardown(void)
{
    virtio_mmio_destroy(m);
    gm_destroy(&gm);
}

TestSuite(virtio_net, .init = setup, .fini = teardown, .timeout = 10);

static void offer_rx(uint32_t len)
{
    unsigned slot = avail_idx % FQ_SIZE;
    fq_desc(&gm, RX_DESC, slot, RX_BUF + 4096ull * slot, len, VRING_DESC_F_WRITE, 0);
    fq_offer_at(&gm, RX_AVAIL, &avail_idx, (uint16_t)slot);
}

static uint16_t used_idx(void)
{
    uint16_t v;
    gm_read(&gm, RX_USED + 2, &v, 2);
    return v;
}

Test(virtio_net, header_only_buffers_are_returned_not_held)
{
    for (unsigned i = 0; i < 6; i++)
        offer_rx(sizeof(struct virtio_net_hdr_v1)); /* 12 bytes: no frame fits */
    cr_assert_not(virtio_net_can_receive(net), "room claimed where no frame fits");
    cr_assert_eq(used_idx(), 6, "all six went back to the driver");
    cr_assert_not(virtio_net_receive(net, (const uint8_t *)"0123456789abcdef", 16));
    offer_rx(1526);
    cr_assert(virtio_net_can_receive(net));
    uint8_t frame[60];
    memset(frame, 0xab, sizeof(frame));
    cr_assert(virtio_net_receive(net, frame, sizeof(frame)));
    cr_assert_eq(used_idx(), 7);
    struct vring_used_elem e;
    gm_read(&gm, RX_USED + 4 + 8 * 6, &e, sizeof(e));
    cr_assert_eq(e.len, sizeof(struct virtio_net_hdr_v1) + sizeof(frame));
    cr_assert_not(md_rd(m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
}
