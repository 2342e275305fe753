/* libFuzzer: a hostile driver against the virtio-mmio register window and
 * the queue processing of each device (blk, rng, console, vsock, net), through
 * the real transport code with no VM behind it. virtio-net runs on a null
 * backend defined here: frames the guest sends are only read, and host
 * frames come from the input (no real network is ever reached).
 *
 * Input: byte 0 picks the device; bytes 1-2 give the length L of a guest
 * memory image copied to guest-physical 0 (rings, descriptors, requests);
 * the rest is a list of 8-byte operations:
 *   [op] [offset lo] [offset hi] [size] [value: 4 bytes LE]
 *   op % 4 == 0: register write; 1: register read; 2: process queue value%4;
 *   3: a host frame of value % 2048 bytes for virtio-net's receive queue
 * Sizes 1, 2, 4 and 8 all occur; offsets cover the whole 4 KiB window. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_memory.h"
#include "net/backend.h"
#include "iothread.h"
#include "virtio/mmio.h"
#include "config.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "devices/virtio_vsock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM (4ull << 20)

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

static int open_device(unsigned which, const struct virtio_device_ops **ops, void **impl)
{
    static char disk[64];
    if (!disk[0]) {
        int fd = memfd_create("kvmc-fuzz-disk", 0);
        if (fd < 0 || ftruncate(fd, 64 << 10) < 0)
            return -1;
        snprintf(disk, sizeof(disk), "/proc/self/fd/%d", fd);
    }
    switch (which % 5) {
    case 0:
        return virtio_blk_open(disk, KVMC_DISK_NO_LOCK, "fuzz", ops, impl);
    case 1:
        virtio_rng_device.open(NULL, 0, ops, impl);
        *impl = NULL;
        return 0;
    case 2: {
        struct vconsole_config c = {.enabled = true, .fn = sink};
        return virtio_console_open(&c, ops, impl);
    }
    case 4: {
        struct net_config c = {0};
        return virtio_net_open_on(&c, null_open, ops, impl);
    }
    default: {
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_memory gm;
    static int ready;
    if (!ready) {
        if (gm_init(&gm, MEM, 0))
            return 0;
        ready = 1;
    }
    if (size < 3)
        return 0;
    unsigned which = data[0];
    size_t image = (size_t)(data[1] | data[2] << 8);
    data += 3;
    size -= 3;
    if (image > size)
        image = size;
    memset(gm_ptr(&gm, 0, MEM), 0, 1 << 20);
    memcpy(gm_ptr(&gm, 0, 1), data, image);
    data += image;
    size -= image;

    const struct virtio_device_ops *ops;
    void *impl;
    struct virtio_mmio *m;
    if (open_device(which, &ops, &impl) || virtio_mmio_create_detached(&gm, ops, impl, &m))
        return 0;
    /* Attached to an I/O thread that never starts: the device's host side
     * exists, and its queues run only when an operation says so. */
    struct iothread io;
    if (iothread_init(&io) || (ops->attach && ops->attach(&m->dev, &io))) {
        iothread_destroy(&io);
        virtio_mmio_destroy(m);
        return 0;
    }
    for (; size >= 8; data += 8, size -= 8) {
        uint64_t offset = (uint64_t)(data[1] | data[2] << 8) % VIRTIO_MMIO_SIZE;
        static const unsigned sizes[] = {4, 4, 4, 1, 2, 8};
        unsigned len = sizes[data[3] % 6];
        uint32_t value;
        memcpy(&value, data + 4, 4);
        switch (data[0] % 4) {
        case 0: virtio_mmio_access(m, offset, len, true, value); break;
        case 1: virtio_mmio_access(m, offset, len, false, 0); break;
        case 2:
            if (value % 4 < m->dev.ops->num_queues)
                m->dev.ops->process_queue(&m->dev, value % 4);
            break;
        default:
            if (which % 5 == 4) {
                static uint8_t frame[2048];
                memset(frame, (int)(value >> 16), sizeof(frame));
                virtio_net_receive(impl, frame, value % sizeof(frame));
            }
            break;
        }
    }
    iothread_destroy(&io);
    virtio_mmio_destroy(m);
    return 0;
}
