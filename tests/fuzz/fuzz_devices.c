#include "fuzz_devices.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "net/backend.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "devices/virtio_vsock.h"

static void sink(void *opaque, const uint8_t *data, size_t len)
{
    (void)opaque;
    volatile uint8_t x = 0;
    for (size_t i = 0; i < len; i++) /* touch it all: ASan checks the bounds */
        x ^= data[i];
}

/* The null network backend: reads every frame, holds no file descriptors. */
static void null_send(void *be, const struct iovec *iov, unsigned niov, size_t len)
{
    (void)be, (void)len;
    for (unsigned i = 0; i < niov; i++)
        sink(NULL, iov[i].iov_base, iov[i].iov_len);
}
static unsigned null_prepare(void *be, struct pollfd *fds, unsigned max, int *timeout)
{
    (void)be, (void)fds, (void)max, (void)timeout;
    return 0;
}
static void null_dispatch(void *be, struct pollfd *fds, unsigned n)
{
    (void)be, (void)fds, (void)n;
}
static void null_destroy(void *be) { (void)be; }
static int null_open(const struct net_config *cfg, struct vnet *dev,
                     const struct net_backend_ops **ops, void **be)
{
    static const struct net_backend_ops null_ops = {
        .name = "null", .send = null_send, .prepare = null_prepare,
        .dispatch = null_dispatch, .destroy = null_destroy};
    (void)cfg;
    *ops = &null_ops;
    *be = dev;
    return 0;
}

int fuzz_open_virtio(unsigned which, const struct virtio_device_ops **ops, void **impl)
{
    static char disk[64];
    if (!disk[0]) {
        int fd = memfd_create("kvmc-fuzz-disk", 0);
        if (fd < 0 || ftruncate(fd, 64 << 10) < 0)
            return -1;
        snprintf(disk, sizeof(disk), "/proc/self/fd/%d", fd);
    }
    switch (which % FUZZ_VIRTIO_KINDS) {
    case FUZZ_VIRTIO_BLK:
        return virtio_blk_open(disk, KVMC_DISK_NO_LOCK, "fuzz", ops, impl);
    case FUZZ_VIRTIO_RNG:
        virtio_rng_device.open(NULL, 0, ops, impl);
        *impl = NULL;
        return 0;
    case FUZZ_VIRTIO_CONSOLE: {
        struct vconsole_config c = {.enabled = true, .fn = sink};
        return virtio_console_open(&c, ops, impl);
    }
    case FUZZ_VIRTIO_NET: {
        struct net_config c = {0};
        return virtio_net_open_on(&c, null_open, ops, impl);
    }
    default: { /* FUZZ_VIRTIO_VSOCK */
        /* Guest connections go to <dir>/v_<port>, where nothing listens. */
        static char dir[] = "/tmp/kvmc-fuzz-XXXXXX", path[64];
        if (!path[0]) {
            if (!mkdtemp(dir))
                return -1;
            snprintf(path, sizeof(path), "%s/v", dir);
        }
        struct vsock_config c = {.enabled = true, .cid = 3, .path = path};
        return virtio_vsock_open(&c, ops, impl);
    }
    }
}
