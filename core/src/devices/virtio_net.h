/* virtio-net on a backend (net/backend.h): libslirp or a tap device. */
#ifndef KVMC_VIRTIO_NET_H
#define KVMC_VIRTIO_NET_H

#include "../virtio/virtio.h"

struct net_config;

extern const struct virtio_device_type virtio_net_device;

/* Network device `index` (its MAC address's last byte is offset by it). */
int virtio_net_open(const struct net_config *cfg, unsigned index,
                    const struct virtio_device_ops **ops, void **impl);

#endif
