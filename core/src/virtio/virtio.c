#include "virtio.h"

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <string.h>

void virtio_dev_init(struct virtio_dev *dev, const struct virtio_device_ops *ops,
                     void *impl, const struct guest_memory *mem)
{
    memset(dev, 0, sizeof(*dev));
    dev->ops = ops;
    dev->impl = impl;
    dev->mem = mem;
    pthread_mutex_init(&dev->lock, NULL);
}

void virtio_dev_destroy(struct virtio_dev *dev)
{
    if (dev->ops && dev->ops->destroy)
        dev->ops->destroy(dev);
    pthread_mutex_destroy(&dev->lock);
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
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        virtq_reset(&dev->queues[i]);
}

/* Broken queue: tell the driver (NEEDS_RESET + config interrupt), log once. */
static void report_broken_locked(struct virtio_dev *dev, unsigned qi)
{
    if (dev->reported_broken)
        return;
    dev->reported_broken = true;
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
