/* virtio-vsock, Firecracker's host side: guest connections go to Unix
 * sockets "<path>_<port>", host connections come in on <path>. */
#ifndef KVMC_VIRTIO_VSOCK_H
#define KVMC_VIRTIO_VSOCK_H

#include "../virtio/virtio.h"

struct vsock_config;

extern const struct virtio_device_type virtio_vsock_device;

int virtio_vsock_open(const struct vsock_config *cfg, const struct virtio_device_ops **ops,
                      void **impl);

#endif
