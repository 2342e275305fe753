/* A host tap interface. The interface is created if it does not exist
 * (that needs CAP_NET_ADMIN); addresses, bridges and the link state are the
 * host's business. Frames are read from the tap only while the guest has a
 * receive buffer, so a busy guest back-pressures the host kernel's queue
 * instead of losing frames here. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../error.h"
#include "backend.h"

struct net_tap {
    int fd;
    struct vnet *dev;
};

static void tap_send(void *be, const struct iovec *iov, unsigned niov, size_t len)
{
    struct net_tap *t = be;
    (void)len;
    /* A full tap queue drops the frame, as a congested wire would. */
    if (writev(t->fd, iov, (int)niov) < 0) {
    }
}

static unsigned tap_prepare(void *be, struct pollfd *fds, unsigned max, int *timeout)
{
    struct net_tap *t = be;
    (void)timeout;
    if (!max || !virtio_net_can_receive(t->dev))
        return 0; /* the guest's next receive-queue notification wakes us */
    fds[0] = (struct pollfd){.fd = t->fd, .events = POLLIN};
    return 1;
}

static void tap_dispatch(void *be, struct pollfd *fds, unsigned n)
{
    struct net_tap *t = be;
    if (!n || !(fds[0].revents & POLLIN))
        return;
    /* Straight into the guest's buffer; a frame larger than it is cut. */
    for (unsigned frames = 0; frames < 64 && virtio_net_can_receive(t->dev); frames++) {
        struct iovec iov[16];
        unsigned niov = virtio_net_rx_buffers(t->dev, iov, 16);
        ssize_t len = niov ? readv(t->fd, iov, (int)niov) : -1;
        if (len <= 0)
            return; /* the buffer stays held for the next frame */
        virtio_net_rx_done(t->dev, (size_t)len);
    }
}

static void tap_destroy(void *be)
{
    struct net_tap *t = be;
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

static const struct net_backend_ops tap_ops = {
    .name = "tap",
    .send = tap_send,
    .prepare = tap_prepare,
    .dispatch = tap_dispatch,
    .destroy = tap_destroy,
};

int net_tap_open(const struct net_config *cfg, struct vnet *dev,
                 const struct net_backend_ops **ops, void **be)
{
    struct net_tap *t = calloc(1, sizeof(*t));
    if (!t)
        return kvmc_fail(KVMC_ENOMEM, "allocating a tap backend");
    t->dev = dev;
    t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (t->fd < 0) {
        int e = errno;
        free(t);
        return kvmc_fail_errno(KVMC_EIO, e, "net: tap=%s: /dev/net/tun", cfg->ifname);
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, cfg->ifname, sizeof(cfg->ifname) < IFNAMSIZ ? sizeof(cfg->ifname)
                                                                     : IFNAMSIZ);
    if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        tap_destroy(t);
        return kvmc_fail_errno(KVMC_EIO, e, "net: tap=%s: attaching (creating a tap "
                               "needs CAP_NET_ADMIN)", cfg->ifname);
    }
    *ops = &tap_ops;
    *be = t;
    return KVMC_OK;
}
