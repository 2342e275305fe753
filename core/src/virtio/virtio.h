/* A virtio device, independent of its transport. The transport (virtio-mmio
 * now, virtio-pci later) decodes registers into these fields and calls the
 * device through struct virtio_device_ops; the device never sees a register.
 *
 * Threads: transport register accesses run on vCPU threads, queue processing
 * on the VM's I/O thread. `lock` guards everything here. A device pops chains
 * and completes them through virtio_pop/virtio_complete, which take the lock;
 * the I/O itself runs unlocked, and a completion for a queue the driver reset
 * in the meantime is dropped (the generation changed). */
#ifndef KVMC_VIRTIO_H
#define KVMC_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../guest_memory.h"
#include "../stats.h"
#include "virtqueue.h"

#define VIRTIO_MAX_QUEUES 4

struct virtio_dev;
struct iothread;
struct kvmc_config;
struct snapshot_writer; /* issue 18: device state save/restore */
struct snapshot_reader;

struct virtio_device_ops {
    const char *name;      /* "virtio-blk", for messages */
    uint32_t device_id;    /* VIRTIO_ID_* */
    uint64_t features;     /* device features; VIRTIO_F_VERSION_1 is added */
    unsigned num_queues;
    uint16_t queue_max;
    /* Config space, bounds already checked against config_size. */
    uint32_t config_size;
    void (*read_config)(struct virtio_dev *dev, uint32_t offset, void *data, unsigned len);
    /* Processes what the driver queued on queue qi (I/O thread). */
    void (*process_queue)(struct virtio_dev *dev, unsigned qi);
    /* Optional: called once the device has its transport, to add its host
     * side (an iothread source) to the VM's I/O thread. */
    int (*attach)(struct virtio_dev *dev, struct iothread *io);
    /* Optional: the driver reset the device (wrote 0 to the status); runs on
     * the I/O thread some time after, without the lock. The device drops
     * its host-side state: connections, held buffers. Chains popped before
     * the reset are dropped by virtio_complete on their own (generation). */
    void (*reset)(struct virtio_dev *dev);
    /* Optional, filled in with snapshots: the device's own state (the
     * queues and features are saved by the transport). A device without
     * save cannot be snapshotted. */
    int (*save)(struct virtio_dev *dev, struct snapshot_writer *w);
    /* Optional: requests in flight finish (their completions are guest
     * state). Called with the I/O thread suspended, before anything of a
     * snapshot is read and before a reset. */
    int (*quiesce)(struct virtio_dev *dev);
    int (*restore)(struct virtio_dev *dev, struct snapshot_reader *r);
    void (*destroy)(struct virtio_dev *dev);
};

/* A kind of virtio device, registered with VIRTIO_DEVICE() in
 * devices/devices.def: the device manager asks each type how many devices
 * the configuration wants and opens them in turn. */
struct virtio_device_type {
    const char *name;
    unsigned (*count)(const struct kvmc_config *cfg);
    /* Opens device `index` (0..count-1) of this type. */
    int (*open)(const struct kvmc_config *cfg, unsigned index,
                const struct virtio_device_ops **ops, void **impl);
};

/* Why the device interrupts: MSI-X gives each its own vector; virtio-mmio
 * and INTx share one line and tell them apart in the interrupt status. */
enum virtio_irq {
    VIRTIO_IRQ_VRING,  /* used buffers on queue `queue` */
    VIRTIO_IRQ_CONFIG, /* the configuration space changed */
};

/* How the transport raises an interrupt. */
typedef void (*virtio_notify_fn)(struct virtio_dev *dev, enum virtio_irq kind,
                                 unsigned queue);

struct virtio_dev {
    const struct virtio_device_ops *ops;
    void *impl;                        /* the device's own state */
    const struct guest_memory *mem;
    pthread_mutex_t lock;
    uint32_t status;                   /* VIRTIO_CONFIG_S_* */
    uint64_t driver_features;
    uint32_t interrupt_status;         /* VIRTIO_MMIO_INT_* bits */
    uint32_t generation;               /* bumped by every reset */
    struct virtq queues[VIRTIO_MAX_QUEUES];
    /* Chains popped and not completed yet, per queue (this generation). */
    uint16_t in_flight[VIRTIO_MAX_QUEUES];
    bool reported_broken;
    virtio_notify_fn notify;           /* set by the transport */
    void *transport;
    int reset_fd;                      /* tells the I/O thread of a driver reset */
    bool reset_pending;                /* detached: run ops->reset after the access */
    struct vm_stats *stats;            /* the VM's counters (may be NULL) */
};

void virtio_dev_init(struct virtio_dev *dev, const struct virtio_device_ops *ops,
                     void *impl, const struct guest_memory *mem);
void virtio_dev_destroy(struct virtio_dev *dev);
uint64_t virtio_offered_features(const struct virtio_dev *dev);
/* Called with the lock held when the driver writes 0 to the status. */
void virtio_dev_reset_locked(struct virtio_dev *dev);

/* What both transports do with the common registers (lock held). */
/* The driver wrote the device status: true if it was a reset (0), which
 * also queues ops->reset for the I/O thread (see virtio_dev_watch_reset);
 * the transport then resets its own registers. FEATURES_OK sticks only if
 * the driver took VERSION_1 and nothing that was not offered. */
bool virtio_write_status_locked(struct virtio_dev *dev, uint32_t v);
uint32_t virtio_device_features_word(const struct virtio_dev *dev, unsigned select);
/* Ignored once FEATURES_OK is set, or for select > 1. */
void virtio_set_driver_features_locked(struct virtio_dev *dev, unsigned select, uint32_t v);
/* The driver enabled queue qi: true if its rings are sane (else it stays off). */
bool virtio_enable_queue_locked(struct virtio_dev *dev, unsigned qi);
/* Runs ops->reset on the I/O thread after each driver reset. */
int virtio_dev_watch_reset(struct virtio_dev *dev, struct iothread *io);
/* Without an I/O thread (detached transports in tests and fuzzers): runs a
 * reset the last access queued, on the calling thread, without the lock. */
void virtio_run_pending_reset(struct virtio_dev *dev);

/* The transport-independent state (status, features, interrupt status,
 * every queue's size, addresses and indices) into a snapshot section, and
 * back. The caller keeps queues from being processed meanwhile (the I/O
 * thread suspended). A chain popped and not completed (a receive buffer
 * held for host data, a transmit chain half-written to a slow client) is
 * saved as not taken yet, so the restored device takes it again: such
 * chains are always the last ones popped of their queue, because a device
 * that completes out of order (virtio-blk) finishes its requests in
 * ops->quiesce first. Restore refuses, with
 * KVMC_EFORMAT naming the device, what this device could not have been
 * in: features it does not offer, a queue it does not have or larger
 * than it allows, ready rings outside guest RAM. */
struct snapshot_writer;
struct snapshot_reader;
int virtio_dev_save(struct virtio_dev *dev, struct snapshot_writer *w);
/* A transport's state starts with one of these, so that a device saved on
 * one transport is refused on the other by name. */
#define VIRTIO_MMIO_STATE_VERSION 1u
#define VIRTIO_PCI_STATE_VERSION 0x50430001u
/* The message for a state that starts with the other transport's version. */
int virtio_state_transport_check(const char *name, uint32_t version, uint32_t mine);
/* After a restore or reset: each ready queue is looked at once (a
 * notification made just before the snapshot may not have been served),
 * through the transport's per-queue notification eventfds. */
void virtio_kick_ready(struct virtio_dev *dev, const int *notify_fd);
int virtio_dev_restore(struct virtio_dev *dev, struct snapshot_reader *r);

/* Ticket for a popped chain: completing it after a reset is a no-op. */
struct virtio_ticket {
    uint32_t generation;
    uint16_t head;
};

/* Pops the next chain of queue qi if the device is live (DRIVER_OK, queue
 * ready and not broken). Returns false when there is nothing to do. A broken
 * queue marks the device NEEDS_RESET and logs once. */
bool virtio_pop(struct virtio_dev *dev, unsigned qi, struct virtq_chain *chain,
                struct virtio_ticket *ticket);
/* A chain popped ahead of need, for receive queues whose data comes from
 * the host side whenever it likes: held until there is something to put in
 * it. A chain held across a driver reset is dropped, not written. */
struct virtio_held {
    struct virtq_chain chain;
    struct virtio_ticket ticket;
    bool held;
    bool fresh; /* set when virtio_hold took a new chain; the device clears it */
};
/* Makes sure h holds a chain of queue qi; false if the driver offers none. */
bool virtio_hold(struct virtio_dev *dev, unsigned qi, struct virtio_held *h);
/* Completes the held chain with `written` bytes. */
void virtio_release(struct virtio_dev *dev, unsigned qi, struct virtio_held *h,
                    uint32_t written);
/* Returns the chain with `written` bytes and raises the used-buffer
 * interrupt unless the driver suppressed it. */
void virtio_complete(struct virtio_dev *dev, unsigned qi, const struct virtio_ticket *t,
                     uint32_t written);

#endif
