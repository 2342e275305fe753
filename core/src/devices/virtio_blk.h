/* virtio-blk on an image file or block device: one per configured disk. */
#ifndef KVMC_VIRTIO_BLK_H
#define KVMC_VIRTIO_BLK_H

#include "../virtio/virtio.h"

extern const struct virtio_device_type virtio_blk_device;

/* One disk (KVMC_DISK_* flags); tests drive it through a detached transport. */
int virtio_blk_open(const char *path, unsigned flags, const char *serial,
                    const struct virtio_device_ops **ops, void **impl);

#endif
