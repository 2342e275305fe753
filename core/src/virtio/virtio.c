#include "virtio.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../error.h"
#include "../iothread.h"
#include "../snapshot/format.h"

void virtio_dev_init(struct virtio_dev *dev, const struct virtio_device_ops *ops,
                     void *impl, const struct guest_memory *mem)
{
    memset(dev, 0, sizeof(*dev));
    dev->ops = ops;
    dev->impl = impl;
    dev->mem = mem;
    dev->reset_fd = -1;
    pthread_mutex_init(&dev->lock, NULL);
}

void virtio_dev_destroy(struct virtio_dev *dev)
{
    if (dev->ops && dev->ops->destroy)
        dev->ops->destroy(dev);
    if (dev->reset_fd >= 0)
        close(dev->reset_fd);
    pthread_mutex_destroy(&dev->lock);
}

static void on_reset(void *opaque)
{
    struct virtio_dev *dev = opaque;
    dev->ops->reset(dev);
}

int virtio_dev_watch_reset(struct virtio_dev *dev, struct iothread *io)
{
    if (!dev->ops->reset)
        return KVMC_OK;
    dev->reset_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (dev->reset_fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "eventfd for %s", dev->ops->name);
    return iothread_watch(io, dev->reset_fd, on_reset, dev);
}

bool virtio_write_status_locked(struct virtio_dev *dev, uint32_t v)
{
    if (v == 0) {
        virtio_dev_reset_locked(dev);
        if (dev->ops->reset) {
            uint64_t one = 1;
            if (dev->reset_fd < 0 || write(dev->reset_fd, &one, sizeof(one)) != sizeof(one))
                dev->reset_pending = true;
        }
        return true;
    }
    /* FEATURES_OK only sticks if the driver took nothing we did not offer. */
    if ((v & VIRTIO_CONFIG_S_FEATURES_OK) &&
        ((dev->driver_features & ~virtio_offered_features(dev)) ||
         !(dev->driver_features & (1ull << VIRTIO_F_VERSION_1))))
        v &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    dev->status = v | (dev->status & VIRTIO_CONFIG_S_NEEDS_RESET);
    return false;
}

void virtio_run_pending_reset(struct virtio_dev *dev)
{
    pthread_mutex_lock(&dev->lock);
    bool reset = dev->reset_pending;
    dev->reset_pending = false;
    pthread_mutex_unlock(&dev->lock);
    if (reset) /* detached (tests, fuzzing): this thread stands for the I/O thread */
        dev->ops->reset(dev);
}

void virtio_set_driver_features_locked(struct virtio_dev *dev, unsigned select, uint32_t v)
{
    if (select < 2 && !(dev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
        unsigned shift = 32 * select;
        dev->driver_features = (dev->driver_features & ~(0xffffffffull << shift)) |
                               ((uint64_t)v << shift);
    }
}

uint32_t virtio_device_features_word(const struct virtio_dev *dev, unsigned select)
{
    return select < 2 ? (uint32_t)(virtio_offered_features(dev) >> (32 * select)) : 0;
}

bool virtio_enable_queue_locked(struct virtio_dev *dev, unsigned qi)
{
    struct virtq *q = &dev->queues[qi];
    if (q->ready)
        return true;
    if (q->size > dev->ops->queue_max)
        q->size = 0;
    q->ready = virtq_validate(q, dev->mem);
    return q->ready;
}

uint64_t virtio_offered_features(const struct virtio_dev *dev)
{
    return dev->ops->features | (1ull << VIRTIO_F_VERSION_1);
}

void virtio_dev_reset_locked(struct virtio_dev *dev)
{
    dev->status = 0;
    dev->driver_features = 0;
    dev->interrupt_status = 0;
    dev->reported_broken = false;
    dev->generation++;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        virtq_reset(&dev->queues[i]);
        dev->in_flight[i] = 0;
    }
}

/* Broken queue: tell the driver (NEEDS_RESET + config interrupt), log once. */
static void report_broken_locked(struct virtio_dev *dev, unsigned qi)
{
    if (dev->reported_broken)
        return;
    dev->reported_broken = true;
    stats_add(dev->stats, STAT_VIRTIO_ERRORS, 1);
    dev->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    dev->interrupt_status |= VIRTIO_MMIO_INT_CONFIG;
    fprintf(stderr, "kvmc: %s queue %u broken by the guest (%s); device needs reset\n",
            dev->ops->name, qi, dev->queues[qi].broken_reason);
    if (dev->notify)
        dev->notify(dev, VIRTIO_IRQ_CONFIG, qi);
}

bool virtio_pop(struct virtio_dev *dev, unsigned qi, struct virtq_chain *chain,
                struct virtio_ticket *ticket)
{
    bool got = false;
    pthread_mutex_lock(&dev->lock);
    struct virtq *q = &dev->queues[qi];
    if (qi < dev->ops->num_queues && (dev->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
        !(dev->status & VIRTIO_CONFIG_S_NEEDS_RESET) && q->ready) {
        int r = virtq_pop(q, dev->mem, chain);
        if (r < 0)
            report_broken_locked(dev, qi);
        got = r > 0;
        dev->in_flight[qi] += got;
        ticket->generation = dev->generation;
        ticket->head = chain->head;
    }
    pthread_mutex_unlock(&dev->lock);
    return got;
}

void virtio_complete(struct virtio_dev *dev, unsigned qi, const struct virtio_ticket *t,
                     uint32_t written)
{
    bool interrupt = false;
    pthread_mutex_lock(&dev->lock);
    struct virtq *q = &dev->queues[qi];
    if (t->generation == dev->generation && dev->in_flight[qi])
        dev->in_flight[qi]--;
    if (t->generation == dev->generation && q->ready && !q->broken) {
        virtq_push(q, dev->mem, t->head, written);
        if (!virtq_interrupt_suppressed(q, dev->mem)) {
            dev->interrupt_status |= VIRTIO_MMIO_INT_VRING;
            interrupt = true;
        }
    }
    pthread_mutex_unlock(&dev->lock);
    if (interrupt && dev->notify)
        dev->notify(dev, VIRTIO_IRQ_VRING, qi);
}

bool virtio_hold(struct virtio_dev *dev, unsigned qi, struct virtio_held *h)
{
    if (h->held) {
        pthread_mutex_lock(&dev->lock);
        h->held = h->ticket.generation == dev->generation; /* else: reset since */
        pthread_mutex_unlock(&dev->lock);
    }
    if (!h->held)
        h->fresh = h->held = virtio_pop(dev, qi, &h->chain, &h->ticket);
    return h->held;
}

void virtio_release(struct virtio_dev *dev, unsigned qi, struct virtio_held *h,
                    uint32_t written)
{
    h->held = false;
    virtio_complete(dev, qi, &h->ticket, written);
}

/* ------------------------------------------------------------ snapshots */

#define VIRTIO_STATE_VERSION 1u

int virtio_state_transport_check(const char *name, uint32_t version, uint32_t mine)
{
    if (version == mine)
        return KVMC_OK;
    if (version == VIRTIO_MMIO_STATE_VERSION || version == VIRTIO_PCI_STATE_VERSION)
        return kvmc_fail(KVMC_EINVAL, "restore: the snapshot's %s was on %s; this VM's is on "
                         "%s (--transport)", name,
                         version == VIRTIO_PCI_STATE_VERSION ? "virtio-pci" : "virtio-mmio",
                         mine == VIRTIO_PCI_STATE_VERSION ? "virtio-pci" : "virtio-mmio");
    return kvmc_fail(KVMC_EFORMAT, "%s: transport state version 0x%x", name, version);
}

int virtio_dev_save(struct virtio_dev *dev, struct snapshot_writer *w)
{
    pthread_mutex_lock(&dev->lock);
    snapshot_put_u32(w, VIRTIO_STATE_VERSION);
    snapshot_put_u32(w, dev->status);
    snapshot_put_u64(w, dev->driver_features);
    snapshot_put_u32(w, dev->interrupt_status);
    snapshot_put_u32(w, dev->ops->num_queues);
    for (unsigned i = 0; i < dev->ops->num_queues; i++) {
        const struct virtq *q = &dev->queues[i];
        snapshot_put_u32(w, (uint32_t)q->size | (uint32_t)q->ready << 16 |
                                (uint32_t)q->broken << 17);
        snapshot_put_u64(w, q->desc_gpa);
        snapshot_put_u64(w, q->avail_gpa);
        snapshot_put_u64(w, q->used_gpa);
        uint16_t not_taken = (uint16_t)(q->last_avail - dev->in_flight[i]);
        snapshot_put_u32(w, (uint32_t)not_taken | (uint32_t)q->used_idx << 16);
    }
    pthread_mutex_unlock(&dev->lock);
    return w->err;
}

int virtio_dev_restore(struct virtio_dev *dev, struct snapshot_reader *r)
{
    uint32_t version, status, isr, nq;
    uint64_t features;
    if (snapshot_get_u32(r, &version) || snapshot_get_u32(r, &status) ||
        snapshot_get_u64(r, &features) || snapshot_get_u32(r, &isr) ||
        snapshot_get_u32(r, &nq))
        return KVMC_EFORMAT;
    const char *name = dev->ops->name;
    /* Until FEATURES_OK the driver's feature bits may be anything it wrote. */
    bool features_ok = status & VIRTIO_CONFIG_S_FEATURES_OK;
    if (version != VIRTIO_STATE_VERSION || nq != dev->ops->num_queues ||
        (features_ok && (features & ~virtio_offered_features(dev))) || status > 0xff || isr > 3)
        return kvmc_fail(KVMC_EFORMAT, "%s state: version %u, %u queues, features 0x%llx, "
                         "status 0x%x: not a state this device can be in", name, version, nq,
                         (unsigned long long)features, status);
    struct virtq queues[VIRTIO_MAX_QUEUES];
    memset(queues, 0, sizeof(queues));
    for (unsigned i = 0; i < nq; i++) {
        struct virtq *q = &queues[i];
        uint32_t flags, idx;
        if (snapshot_get_u32(r, &flags) || snapshot_get_u64(r, &q->desc_gpa) ||
            snapshot_get_u64(r, &q->avail_gpa) || snapshot_get_u64(r, &q->used_gpa) ||
            snapshot_get_u32(r, &idx))
            return KVMC_EFORMAT;
        q->size = (uint16_t)flags;
        q->ready = flags >> 16 & 1;
        q->broken = flags >> 17 & 1;
        q->last_avail = (uint16_t)idx;
        q->used_idx = (uint16_t)(idx >> 16);
        /* A queue not enabled yet may hold any size the driver wrote: it
         * is checked when the driver enables it. */
        if (flags >> 18 || (q->ready && q->size > dev->ops->queue_max))
            return kvmc_fail(KVMC_EFORMAT, "%s state: queue %u of size %u (at most %u)", name,
                             i, q->size, dev->ops->queue_max);
        if (q->broken)
            snprintf(q->broken_reason, sizeof(q->broken_reason), "broken when saved");
        else if (q->ready && !virtq_validate(q, dev->mem))
            return kvmc_fail(KVMC_EFORMAT, "%s state: queue %u: %s", name, i, q->broken_reason);
        q->notify_off = false; /* virtq_validate cleared the used ring's flags */
    }
    pthread_mutex_lock(&dev->lock);
    dev->status = status;
    dev->driver_features = features;
    dev->interrupt_status = isr;
    dev->reported_broken = status & VIRTIO_CONFIG_S_NEEDS_RESET;
    dev->generation++; /* chains popped before this are not ours any more */
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        dev->queues[i] = queues[i];
        dev->in_flight[i] = 0;
    }
    pthread_mutex_unlock(&dev->lock);
    return KVMC_OK;
}

void virtio_kick_ready(struct virtio_dev *dev, const int *notify_fd)
{
    for (unsigned qi = 0; qi < dev->ops->num_queues; qi++) {
        uint64_t one = 1;
        if (notify_fd[qi] >= 0 && dev->queues[qi].ready &&
            write(notify_fd[qi], &one, sizeof(one)) != sizeof(one)) {
            /* an eventfd write fails only on overflow: a kick is pending anyway */
        }
    }
}
