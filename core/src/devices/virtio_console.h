/* virtio-console: one port, to a callback or a Unix socket; the host's
 * input goes in through virtio_console_write. */
#ifndef KVMC_VIRTIO_CONSOLE_H
#define KVMC_VIRTIO_CONSOLE_H

#include <stddef.h>

#include "../virtio/virtio.h"

struct vconsole_config;

extern const struct virtio_device_type virtio_console_device;

int virtio_console_open(const struct vconsole_config *cfg,
                        const struct virtio_device_ops **ops, void **impl);
/* Queues host input for the guest (any thread): *written = what fit. */
int virtio_console_write(void *impl, const void *data, size_t len, size_t *written);

#endif
