/* The host side of a virtio-net device: user-mode networking (libslirp) or
 * a tap interface. A backend runs on the VM's I/O thread; it gets the
 * guest's frames through send() and hands host frames to the device with
 * virtio_net_receive() while virtio_net_can_receive() says there is room. */
#ifndef KVMC_NET_BACKEND_H
#define KVMC_NET_BACKEND_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../net_spec.h"

struct vnet;
struct iothread;
struct virtio_device_ops;

struct net_backend_ops {
    const char *name;
    /* One Ethernet frame from the guest, in guest memory (len bytes). */
    void (*send)(void *be, const struct iovec *iov, unsigned niov, size_t len);
    /* iothread source hooks (see iothread.h). */
    unsigned (*prepare)(void *be, struct pollfd *fds, unsigned max, int *timeout_ms);
    void (*dispatch)(void *be, struct pollfd *fds, unsigned n);
    void (*destroy)(void *be);
    unsigned seccomp_extras; /* SECCOMP_IO_* the backend needs */
};

/* Both open on the creating thread (ports, the tap device) and fail with a
 * message naming what went wrong. */
/* Opens a backend for device dev: 0, or a kvmc_error with a message. */
typedef int (*net_backend_open_fn)(const struct net_config *cfg, struct vnet *dev,
                                   const struct net_backend_ops **ops, void **be);

int net_slirp_open(const struct net_config *cfg, struct vnet *dev,
                   const struct net_backend_ops **ops, void **be);
int net_tap_open(const struct net_config *cfg, struct vnet *dev,
                 const struct net_backend_ops **ops, void **be);

/* A virtio-net device on a backend of the caller's (the fuzzer's, which
 * must not reach a real network); impl is the device's struct vnet. */
int virtio_net_open_on(const struct net_config *cfg, net_backend_open_fn open_be,
                       const struct virtio_device_ops **ops, void **impl);

/* For backends: deliver a frame to the guest. Returns false (and drops it)
 * if the guest has no receive buffer posted. */
bool virtio_net_receive(struct vnet *dev, const uint8_t *frame, size_t len);
/* Whether the guest has a receive buffer posted right now (it is held). */
bool virtio_net_can_receive(struct vnet *dev);
/* Zero-copy receive, after virtio_net_can_receive(): the held buffer's
 * frame area as iovecs (0 if it cannot take a frame), then its length. */
unsigned virtio_net_rx_buffers(struct vnet *dev, struct iovec *iov, unsigned max);
void virtio_net_rx_done(struct vnet *dev, size_t len);

#endif
