/* virtio-rng: entropy from getrandom(2). */
#ifndef KVMC_VIRTIO_RNG_H
#define KVMC_VIRTIO_RNG_H

#include "../virtio/virtio.h"

extern const struct virtio_device_type virtio_rng_device;

#endif
