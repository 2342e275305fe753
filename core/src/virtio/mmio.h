/* virtio-mmio (version 2) transport. */
#ifndef KVMC_VIRTIO_MMIO_H
#define KVMC_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio.h"

struct vm_services;

#define VIRTIO_MMIO_SIZE 0x1000

struct virtio_mmio;
struct virtio_mmio_notify {
    struct virtio_mmio *self;
    unsigned qi;
};

struct virtio_mmio {
    struct virtio_dev dev;
    const struct vm_services *svc;     /* NULL when detached */
    uint64_t base;
    unsigned gsi;
    uint32_t device_features_sel, driver_features_sel, queue_sel;
    int irq_fd;                        /* irqfd, or -1 (KVM_IRQ_LINE pulses) */
    int notify_fd[VIRTIO_MAX_QUEUES];  /* ioeventfd per queue */
    bool kernel_notify;                /* KVM delivers QueueNotify itself */
    struct virtio_mmio_notify notify_ctx[VIRTIO_MAX_QUEUES];
};

/* Creates the transport for a device, at base with interrupt gsi: puts it
 * on svc's MMIO bus, registers its queue notifications (ioeventfds, watched
 * by svc's I/O thread) and its irqfd. Takes over the device (its
 * ops->destroy runs on failure too). The device manager calls this. */
int virtio_mmio_create(const struct vm_services *svc, uint64_t base, unsigned gsi,
                       const struct virtio_device_ops *ops, void *impl,
                       struct virtio_mmio **out);
void virtio_mmio_destroy(struct virtio_mmio *m);

/* Snapshots: the transport's registers and the device (virtio_dev_save and
 * the device's own ops->save) into one section, and back. Restore needs
 * the device to have ops->restore if it has ops->save. */
int virtio_mmio_save(struct virtio_mmio *m, struct snapshot_writer *w);
int virtio_mmio_restore(struct virtio_mmio *m, struct snapshot_reader *r);
/* Has the I/O thread look at every ready queue once (after a restore, a
 * notification the guest made before the snapshot may not have been
 * served yet). */
void virtio_mmio_kick(struct virtio_mmio *m);

/* For unit tests and fuzzing: the same transport with no VM behind it (no
 * bus, ioeventfd or irqfd). Registers are reached through
 * virtio_mmio_access; a QueueNotify write does nothing, so the caller runs
 * ops->process_queue itself. Takes over the device like virtio_mmio_create. */
int virtio_mmio_create_detached(const struct guest_memory *mem,
                                const struct virtio_device_ops *ops, void *impl,
                                struct virtio_mmio **out);
/* One guest access to offset within the register window: returns what a
 * read gives (0 for writes). */
uint64_t virtio_mmio_access(struct virtio_mmio *m, uint64_t offset, unsigned size,
                            bool is_write, uint64_t value);

#endif
