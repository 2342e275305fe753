/* The fuzz targets' virtio devices, each with a host side that reaches
 * nothing real: virtio-blk on a 64 KiB memfd, virtio-console to a sink,
 * virtio-net on a null backend (frames sent are only read), virtio-vsock
 * whose guest connections go where nothing listens. */
#ifndef KVMC_FUZZ_DEVICES_H
#define KVMC_FUZZ_DEVICES_H

struct virtio_device_ops;

enum {
    FUZZ_VIRTIO_BLK,
    FUZZ_VIRTIO_RNG,
    FUZZ_VIRTIO_CONSOLE,
    FUZZ_VIRTIO_VSOCK,
    FUZZ_VIRTIO_NET,
    FUZZ_VIRTIO_KINDS
};

/* Opens device `which % FUZZ_VIRTIO_KINDS`: 0, or nonzero on failure. */
int fuzz_open_virtio(unsigned which, const struct virtio_device_ops **ops, void **impl);

#endif
