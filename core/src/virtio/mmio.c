#include "mmio.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../bus.h"
#include "../error.h"
#include "../snapshot/format.h"
#include "../iothread.h"
#include "../services.h"

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VERSION_2 2
#define VIRTIO_MMIO_VENDOR 0x434d564b /* "KVMC" */
#define VIRTIO_MMIO_CONFIG 0x100

/* One line for both kinds: the driver reads which from InterruptStatus. */
static void mmio_notify_irq(struct virtio_dev *dev, enum virtio_irq kind, unsigned queue)
{
    struct virtio_mmio *m = dev->transport;
    uint64_t one = 1;
    (void)kind, (void)queue;
    if (m->irq_fd >= 0 && write(m->irq_fd, &one, sizeof(one)) == sizeof(one))
        return;
    m->svc->pulse_irq(m->svc->ctx, m->gsi); /* kvmc's I/O APIC, or no irqfd */
}

static struct virtq *selected_queue(struct virtio_mmio *m)
{
    return m->queue_sel < m->dev.ops->num_queues ? &m->dev.queues[m->queue_sel] : NULL;
}

static uint32_t read_register(struct virtio_mmio *m, uint64_t offset)
{
    struct virtio_dev *d = &m->dev;
    struct virtq *q = selected_queue(m);
    switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
    case VIRTIO_MMIO_VERSION: return VIRTIO_MMIO_VERSION_2;
    case VIRTIO_MMIO_DEVICE_ID: return d->ops->device_id;
    case VIRTIO_MMIO_VENDOR_ID: return VIRTIO_MMIO_VENDOR;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        return virtio_device_features_word(d, m->device_features_sel);
    case VIRTIO_MMIO_QUEUE_NUM_MAX: return q ? d->ops->queue_max : 0;
    case VIRTIO_MMIO_QUEUE_READY: return q ? q->ready : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS: return d->interrupt_status;
    case VIRTIO_MMIO_STATUS: return d->status;
    case VIRTIO_MMIO_CONFIG_GENERATION: return 0; /* config never changes */
    default: return 0;
    }
}

static void set_u64_half(uint64_t *field, bool high, uint32_t value)
{
    *field = high ? (*field & 0xffffffffull) | ((uint64_t)value << 32)
                  : (*field & ~0xffffffffull) | value;
}

static void write_queue_register(struct virtio_mmio *m, uint64_t offset, uint32_t v)
{
    struct virtq *q = selected_queue(m);
    if (!q || q->ready) /* queue registers are frozen once it is live */
        return;
    switch (offset) {
    case VIRTIO_MMIO_QUEUE_NUM: q->size = (uint16_t)(v <= 0xffff ? v : 0); break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW: set_u64_half(&q->desc_gpa, false, v); break;
    case VIRTIO_MMIO_QUEUE_DESC_HIGH: set_u64_half(&q->desc_gpa, true, v); break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW: set_u64_half(&q->avail_gpa, false, v); break;
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: set_u64_half(&q->avail_gpa, true, v); break;
    case VIRTIO_MMIO_QUEUE_USED_LOW: set_u64_half(&q->used_gpa, false, v); break;
    case VIRTIO_MMIO_QUEUE_USED_HIGH: set_u64_half(&q->used_gpa, true, v); break;
    }
}

static void write_status(struct virtio_mmio *m, uint32_t v)
{
    if (virtio_write_status_locked(&m->dev, v))
        m->device_features_sel = m->driver_features_sel = m->queue_sel = 0;
}

static void write_register(struct virtio_mmio *m, uint64_t offset, uint32_t v)
{
    struct virtio_dev *d = &m->dev;
    switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL: m->device_features_sel = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL: m->driver_features_sel = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        virtio_set_driver_features_locked(d, m->driver_features_sel, v);
        break;
    case VIRTIO_MMIO_QUEUE_SEL: m->queue_sel = v; break;
    case VIRTIO_MMIO_QUEUE_READY: {
        struct virtq *q = selected_queue(m);
        if (!q)
            break;
        if (v == 1) {
            virtio_enable_queue_locked(d, m->queue_sel);
        } else if (v == 0) {
            q->ready = false;
        }
        break;
    }
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* Reached only without ioeventfd: hand it to the I/O thread. */
        if (v < d->ops->num_queues && m->notify_fd[v] >= 0) {
            uint64_t one = 1;
            if (write(m->notify_fd[v], &one, sizeof(one)) != sizeof(one)) {
                /* counter overflow is impossible at one per exit */
            }
        }
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK: d->interrupt_status &= ~v; break;
    case VIRTIO_MMIO_STATUS: write_status(m, v); break;
    default: write_queue_register(m, offset, v); break;
    }
}

static uint64_t mmio_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_mmio *m = opaque;
    uint64_t value = 0;
    pthread_mutex_lock(&m->dev.lock);
    if (offset >= VIRTIO_MMIO_CONFIG) {
        uint64_t off = offset - VIRTIO_MMIO_CONFIG;
        if (size <= 8 && off + size <= m->dev.ops->config_size && m->dev.ops->read_config)
            m->dev.ops->read_config(&m->dev, (uint32_t)off, &value, size);
    } else if (size == 4 && !(offset & 3)) {
        value = read_register(m, offset);
    }
    pthread_mutex_unlock(&m->dev.lock);
    return value;
}

static void mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_mmio *m = opaque;
    if (offset >= VIRTIO_MMIO_CONFIG || size != 4 || (offset & 3))
        return; /* config space is read-only for our devices */
    pthread_mutex_lock(&m->dev.lock);
    write_register(m, offset, (uint32_t)value);
    pthread_mutex_unlock(&m->dev.lock);
    virtio_run_pending_reset(&m->dev);
}

static void on_queue_notify(void *opaque)
{
    struct virtio_mmio_notify *n = opaque;
    n->self->dev.ops->process_queue(&n->self->dev, n->qi);
}

/* One eventfd per queue; KVM signals it on a QueueNotify write of that
 * queue's index, so those writes never leave the kernel. */
static int setup_notify(struct virtio_mmio *m)
{
    struct iothread *io = m->svc->io;
    m->kernel_notify = true;
    for (unsigned qi = 0; qi < m->dev.ops->num_queues; qi++) {
        m->notify_fd[qi] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->notify_fd[qi] < 0)
            return kvmc_fail_errno(KVMC_EIO, errno, "eventfd for %s", m->dev.ops->name);
        if (m->svc->ioeventfd(m->svc->ctx, m->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, qi,
                              m->notify_fd[qi], true))
            m->kernel_notify = false; /* the MMIO handler forwards instead */
        m->notify_ctx[qi].self = m;
        m->notify_ctx[qi].qi = qi;
        int err = iothread_watch(io, m->notify_fd[qi], on_queue_notify, &m->notify_ctx[qi]);
        if (err)
            return err;
    }
    return virtio_dev_watch_reset(&m->dev, io);
}

/* An irqfd where the services offer one (the kernel's irqchip); else
 * (kvmc's I/O APIC, the default) pulse_irq, which costs the same one
 * syscall and keeps masking exact. */
static void setup_irq(struct virtio_mmio *m)
{
    m->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->irq_fd >= 0 && m->svc->irqfd(m->svc->ctx, m->irq_fd, m->gsi) != KVMC_OK) {
        close(m->irq_fd);
        m->irq_fd = -1;
    }
}

/* The transport without any host plumbing; NULL (device destroyed) on ENOMEM. */
static struct virtio_mmio *new_transport(const struct guest_memory *mem,
                                         const struct virtio_device_ops *ops, void *impl)
{
    struct virtio_mmio *m = calloc(1, sizeof(*m));
    if (!m) {
        if (ops->destroy) {
            struct virtio_dev tmp = {.ops = ops, .impl = impl};
            ops->destroy(&tmp);
        }
        kvmc_fail(KVMC_ENOMEM, "allocating %s", ops->name);
        return NULL;
    }
    virtio_dev_init(&m->dev, ops, impl, mem);
    m->dev.transport = m;
    m->irq_fd = -1;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        m->notify_fd[i] = -1;
    return m;
}

int virtio_mmio_create_detached(const struct guest_memory *mem,
                                const struct virtio_device_ops *ops, void *impl,
                                struct virtio_mmio **out)
{
    *out = new_transport(mem, ops, impl);
    return *out ? KVMC_OK : KVMC_ENOMEM;
}

uint64_t virtio_mmio_access(struct virtio_mmio *m, uint64_t offset, unsigned size,
                            bool is_write, uint64_t value)
{
    if (offset >= VIRTIO_MMIO_SIZE || size == 0 || size > 8)
        return 0;
    if (!is_write)
        return mmio_read(m, offset, size);
    mmio_write(m, offset, size, value);
    return 0;
}

int virtio_mmio_create(const struct vm_services *svc, uint64_t base, unsigned gsi,
                       const struct virtio_device_ops *ops, void *impl,
                       struct virtio_mmio **out)
{
    struct virtio_mmio *m = new_transport(svc->mem, ops, impl);
    if (!m)
        return KVMC_ENOMEM;
    m->dev.notify = mmio_notify_irq;
    m->svc = svc;
    m->dev.stats = svc->stats;
    m->base = base;
    m->gsi = gsi;
    static const struct bus_ops bus_ops = {.read = mmio_read, .write = mmio_write};
    int err = bus_add(svc->mmio, base, VIRTIO_MMIO_SIZE, &bus_ops, m, ops->name);
    if (!err)
        err = setup_notify(m);
    if (!err && ops->attach)
        err = ops->attach(&m->dev, svc->io);
    if (err) {
        virtio_mmio_destroy(m);
        return err;
    }
    setup_irq(m);
    *out = m;
    return KVMC_OK;
}

void virtio_mmio_destroy(struct virtio_mmio *m)
{
    if (!m)
        return;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        if (m->notify_fd[i] >= 0)
            close(m->notify_fd[i]);
    if (m->irq_fd >= 0)
        close(m->irq_fd);
    virtio_dev_destroy(&m->dev);
    free(m);
}

/* ------------------------------------------------------------ snapshots */


int virtio_mmio_save(struct virtio_mmio *m, struct snapshot_writer *w)
{
    pthread_mutex_lock(&m->dev.lock);
    snapshot_put_u32(w, VIRTIO_MMIO_STATE_VERSION);
    snapshot_put_u32(w, m->device_features_sel);
    snapshot_put_u32(w, m->driver_features_sel);
    snapshot_put_u32(w, m->queue_sel);
    pthread_mutex_unlock(&m->dev.lock);
    int err = virtio_dev_save(&m->dev, w);
    if (!err && m->dev.ops->save)
        err = m->dev.ops->save(&m->dev, w);
    return err ? err : w->err;
}

int virtio_mmio_restore(struct virtio_mmio *m, struct snapshot_reader *r)
{
    uint32_t version, dfs, drfs, qs;
    if (snapshot_get_u32(r, &version) || snapshot_get_u32(r, &dfs) ||
        snapshot_get_u32(r, &drfs) || snapshot_get_u32(r, &qs))
        return KVMC_EFORMAT;
    int err = virtio_state_transport_check(m->dev.ops->name, version, VIRTIO_MMIO_STATE_VERSION);
    if (err)
        return err;
    err = virtio_dev_restore(&m->dev, r);
    if (!err && m->dev.ops->restore)
        err = m->dev.ops->restore(&m->dev, r);
    if (err)
        return err;
    pthread_mutex_lock(&m->dev.lock);
    m->device_features_sel = dfs;
    m->driver_features_sel = drfs;
    m->queue_sel = qs;
    pthread_mutex_unlock(&m->dev.lock);
    return KVMC_OK;
}

void virtio_mmio_kick(struct virtio_mmio *m)
{
    virtio_kick_ready(&m->dev, m->notify_fd);
}
