#include "virtio_pci.h"

#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../error.h"
#include "../iothread.h"
#include "../pci/host.h"
#include "../services.h"
#include "../snapshot/format.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040 /* + the virtio device ID: modern only */
#define VIRTIO_PCI_REVISION 1
#define VIRTIO_BAR 0
#define MSIX_BAR 2

/* virtio_pci_cap.cfg_type */
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4
#define CAP_PCI_CFG 5
#define CAP_LEN 16
#define NOTIFY_CAP_LEN 20
#define PCI_CFG_CAP_LEN 20

/* struct virtio_pci_common_cfg */
enum {
    CC_DFSELECT = 0x00, CC_DF = 0x04, CC_GFSELECT = 0x08, CC_GF = 0x0c,
    CC_MSIX_CONFIG = 0x10, CC_NUM_QUEUES = 0x12, CC_STATUS = 0x14, CC_CFG_GENERATION = 0x15,
    CC_Q_SELECT = 0x16, CC_Q_SIZE = 0x18, CC_Q_MSIX = 0x1a, CC_Q_ENABLE = 0x1c,
    CC_Q_NOFF = 0x1e, CC_Q_DESC_LO = 0x20, CC_Q_DESC_HI = 0x24, CC_Q_AVAIL_LO = 0x28,
    CC_Q_AVAIL_HI = 0x2c, CC_Q_USED_LO = 0x30, CC_Q_USED_HI = 0x34, CC_SIZE = 0x38,
};

static uint32_t class_of(uint32_t device_id)
{
    switch (device_id) {
    case VIRTIO_ID_NET: return 0x020000;     /* network, Ethernet */
    case VIRTIO_ID_BLOCK: return 0x010000;   /* storage, SCSI (what QEMU says) */
    case VIRTIO_ID_CONSOLE: return 0x078000; /* communication, other */
    case VIRTIO_ID_VSOCK: return 0x078000;
    default: return 0xff0000;                /* unassigned */
    }
}

/* ------------------------------------------------------------ interrupts */

static void pci_notify_irq(struct virtio_dev *dev, enum virtio_irq kind, unsigned queue)
{
    struct virtio_pci *p = dev->transport;
    uint16_t vector = kind == VIRTIO_IRQ_CONFIG
                          ? __atomic_load_n(&p->config_vector, __ATOMIC_RELAXED)
                          : __atomic_load_n(&p->queue_vector[queue], __ATOMIC_RELAXED);
    if (vector != VIRTIO_PCI_NO_VECTOR)
        pci_msix_notify(&p->msix, vector);
}

/* A vector the device does not have reads back as NO_VECTOR: the driver
 * sees that its choice failed. */
static uint16_t checked_vector(const struct virtio_pci *p, uint32_t v)
{
    return v < p->msix.nvectors ? (uint16_t)v : VIRTIO_PCI_NO_VECTOR;
}

static void reset_transport_locked(struct virtio_pci *p)
{
    p->device_features_sel = p->driver_features_sel = 0;
    p->queue_sel = 0;
    __atomic_store_n(&p->config_vector, VIRTIO_PCI_NO_VECTOR, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
        __atomic_store_n(&p->queue_vector[i], VIRTIO_PCI_NO_VECTOR, __ATOMIC_RELAXED);
        p->dev.queues[i].size = i < p->dev.ops->num_queues ? p->dev.ops->queue_max : 0;
    }
}

/* ------------------------------------------------------ common config */

static struct virtq *selected(struct virtio_pci *p)
{
    return p->queue_sel < p->dev.ops->num_queues ? &p->dev.queues[p->queue_sel] : NULL;
}

static unsigned width_of(unsigned reg)
{
    switch (reg) {
    case CC_MSIX_CONFIG: case CC_NUM_QUEUES: case CC_Q_SELECT: case CC_Q_SIZE:
    case CC_Q_MSIX: case CC_Q_ENABLE: case CC_Q_NOFF:
        return 2;
    case CC_STATUS: case CC_CFG_GENERATION:
        return 1;
    default:
        return reg < CC_SIZE && !(reg & 3) ? 4 : 0;
    }
}

static uint32_t common_read(struct virtio_pci *p, unsigned reg)
{
    struct virtio_dev *d = &p->dev;
    struct virtq *q = selected(p);
    switch (reg) {
    case CC_DFSELECT: return p->device_features_sel;
    case CC_DF: return virtio_device_features_word(d, p->device_features_sel);
    case CC_GFSELECT: return p->driver_features_sel;
    case CC_GF:
        return p->driver_features_sel < 2
                   ? (uint32_t)(d->driver_features >> (32 * p->driver_features_sel)) : 0;
    case CC_MSIX_CONFIG: return p->config_vector;
    case CC_NUM_QUEUES: return d->ops->num_queues;
    case CC_STATUS: return d->status;
    case CC_CFG_GENERATION: return 0; /* config never changes */
    case CC_Q_SELECT: return p->queue_sel;
    case CC_Q_SIZE: return q ? q->size : 0;
    case CC_Q_MSIX: return q ? p->queue_vector[p->queue_sel] : VIRTIO_PCI_NO_VECTOR;
    case CC_Q_ENABLE: return q ? q->ready : 0;
    case CC_Q_NOFF: return q ? p->queue_sel : 0;
    case CC_Q_DESC_LO: return q ? (uint32_t)q->desc_gpa : 0;
    case CC_Q_DESC_HI: return q ? (uint32_t)(q->desc_gpa >> 32) : 0;
    case CC_Q_AVAIL_LO: return q ? (uint32_t)q->avail_gpa : 0;
    case CC_Q_AVAIL_HI: return q ? (uint32_t)(q->avail_gpa >> 32) : 0;
    case CC_Q_USED_LO: return q ? (uint32_t)q->used_gpa : 0;
    case CC_Q_USED_HI: return q ? (uint32_t)(q->used_gpa >> 32) : 0;
    default: return 0;
    }
}

static void set_half(uint64_t *field, bool high, uint32_t v)
{
    *field = high ? (*field & 0xffffffffull) | ((uint64_t)v << 32)
                  : (*field & ~0xffffffffull) | v;
}

/* Queue registers are frozen once the queue is enabled. */
static void queue_write(struct virtio_pci *p, unsigned reg, uint32_t v)
{
    struct virtq *q = selected(p);
    if (!q || q->ready)
        return;
    switch (reg) {
    case CC_Q_SIZE: q->size = (uint16_t)v; break;
    case CC_Q_DESC_LO: set_half(&q->desc_gpa, false, v); break;
    case CC_Q_DESC_HI: set_half(&q->desc_gpa, true, v); break;
    case CC_Q_AVAIL_LO: set_half(&q->avail_gpa, false, v); break;
    case CC_Q_AVAIL_HI: set_half(&q->avail_gpa, true, v); break;
    case CC_Q_USED_LO: set_half(&q->used_gpa, false, v); break;
    case CC_Q_USED_HI: set_half(&q->used_gpa, true, v); break;
    case CC_Q_ENABLE:
        if (v == 1)
            virtio_enable_queue_locked(&p->dev, p->queue_sel);
        break;
    }
}

static void common_write(struct virtio_pci *p, unsigned reg, uint32_t v)
{
    struct virtio_dev *d = &p->dev;
    switch (reg) {
    case CC_DFSELECT: p->device_features_sel = v; break;
    case CC_GFSELECT: p->driver_features_sel = v; break;
    case CC_GF: virtio_set_driver_features_locked(d, p->driver_features_sel, v); break;
    case CC_MSIX_CONFIG:
        __atomic_store_n(&p->config_vector, checked_vector(p, v), __ATOMIC_RELAXED);
        break;
    case CC_STATUS:
        if (virtio_write_status_locked(d, v & 0xff))
            reset_transport_locked(p);
        break;
    case CC_Q_SELECT: p->queue_sel = (uint16_t)v; break;
    case CC_Q_MSIX:
        if (selected(p))
            __atomic_store_n(&p->queue_vector[p->queue_sel], checked_vector(p, v),
                             __ATOMIC_RELAXED);
        break;
    default: queue_write(p, reg, v); break;
    }
}

/* --------------------------------------------------------------- BAR 0 */

static uint64_t bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct virtio_pci *p = opaque;
    uint64_t value = 0;
    pthread_mutex_lock(&p->dev.lock);
    if (offset < CC_SIZE) {
        if (width_of((unsigned)offset) == size)
            value = common_read(p, (unsigned)offset);
    } else if (offset == VIRTIO_PCI_ISR && size == 1) {
        value = p->dev.interrupt_status; /* read to clear */
        p->dev.interrupt_status = 0;
    } else if (offset >= VIRTIO_PCI_DEVICE && offset < VIRTIO_PCI_NOTIFY) {
        uint64_t off = offset - VIRTIO_PCI_DEVICE;
        if (size <= 8 && off + size <= p->dev.ops->config_size && p->dev.ops->read_config)
            p->dev.ops->read_config(&p->dev, (uint32_t)off, &value, size);
    }
    pthread_mutex_unlock(&p->dev.lock);
    return value;
}

static void bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct virtio_pci *p = opaque;
    if (offset >= VIRTIO_PCI_NOTIFY) {
        /* Reached only without an ioeventfd: hand it to the I/O thread. */
        uint64_t qi = (offset - VIRTIO_PCI_NOTIFY) / VIRTIO_PCI_NOTIFY_MULTIPLIER;
        uint64_t one = 1;
        if (qi < p->dev.ops->num_queues && p->notify_fd[qi] >= 0 &&
            write(p->notify_fd[qi], &one, sizeof(one)) != sizeof(one)) {
            /* counter overflow is impossible at one per exit */
        }
        return;
    }
    if (offset >= CC_SIZE || width_of((unsigned)offset) != size)
        return; /* ISR and device config are read-only */
    pthread_mutex_lock(&p->dev.lock);
    common_write(p, (unsigned)offset, (uint32_t)value);
    pthread_mutex_unlock(&p->dev.lock);
    virtio_run_pending_reset(&p->dev);
}

/* ------------------------------------------- notifications and moves */

static void assign_notify(struct virtio_pci *p, bool assign)
{
    if (p->notify_assigned == assign)
        return;
    for (unsigned qi = 0; qi < p->dev.ops->num_queues; qi++)
        p->svc->ioeventfd(p->svc->ctx,
                          p->notify_at + VIRTIO_PCI_NOTIFY + qi * VIRTIO_PCI_NOTIFY_MULTIPLIER,
                          0, SVC_ANY_DATA, p->notify_fd[qi], assign);
    p->notify_assigned = assign;
}

static void bar_moved(struct pci_device *d, unsigned bar, bool mapped, uint64_t at)
{
    struct virtio_pci *p = d->opaque;
    if (bar != VIRTIO_BAR)
        return;
    assign_notify(p, false);
    if (mapped) {
        p->notify_at = at;
        assign_notify(p, true);
    }
}

/* VIRTIO_PCI_CAP_PCI_CFG: a window into the BARs through config space, for
 * drivers that cannot map them (the spec requires one; Linux does not use
 * it). Whether a config access at [offset, offset+size) touches the
 * window's data register, and where in BAR 0 (the only BAR it reaches) the
 * window points. */
static bool cfg_window(struct virtio_pci *p, unsigned offset, unsigned size, uint64_t *bar_off,
                       unsigned *len)
{
    const struct pci_device *d = &p->pci;
    unsigned c = p->cfg_cap, data = c + 16;
    if (offset >= data + 4 || data >= offset + size)
        return false;
    *bar_off = pci_cfg32(d, c + 8);
    *len = pci_cfg32(d, c + 12);
    return d->cfg[c + 4] == VIRTIO_BAR && (*len == 1 || *len == 2 || *len == 4) &&
           !(*bar_off & (*len - 1)) && *bar_off + *len <= VIRTIO_PCI_BAR_SIZE;
}

static void config_written(struct pci_device *d, unsigned offset, unsigned size)
{
    struct virtio_pci *p = d->opaque;
    uint64_t off;
    unsigned len;
    if (cfg_window(p, offset, size, &off, &len))
        bar_write(p, off, len, pci_cfg32(d, p->cfg_cap + 16) &
                                   (len == 4 ? ~0u : (1u << (8 * len)) - 1));
}

static void config_reading(struct pci_device *d, unsigned offset, unsigned size)
{
    struct virtio_pci *p = d->opaque;
    uint64_t off;
    unsigned len;
    if (cfg_window(p, offset, size, &off, &len))
        pci_set32(d, p->cfg_cap + 16, (uint32_t)bar_read(p, off, len));
}

static const struct pci_device_ops virtio_pci_ops = {
    .config_written = config_written,
    .config_reading = config_reading,
    .bar_moved = bar_moved,
};

/* --------------------------------------------------------------- setup */

static void add_virtio_cap(struct pci_device *d, uint8_t type, uint32_t offset,
                           uint32_t length, unsigned len)
{
    unsigned c = pci_device_add_cap(d, PCI_CAP_ID_VNDR, len);
    d->cfg[c + 2] = (uint8_t)len;
    d->cfg[c + 3] = type;
    d->cfg[c + 4] = VIRTIO_BAR;
    pci_set32(d, c + 8, offset);
    pci_set32(d, c + 12, length);
    if (type == CAP_NOTIFY)
        pci_set32(d, c + 16, VIRTIO_PCI_NOTIFY_MULTIPLIER);
}

static void on_queue_notify(void *opaque)
{
    struct virtio_pci_notify *n = opaque;
    n->self->dev.ops->process_queue(&n->self->dev, n->qi);
}

static int setup(struct virtio_pci *p, struct pci_host *host)
{
    const struct virtio_device_ops *ops = p->dev.ops;
    struct pci_device *d = &p->pci;
    pci_device_init(d, ops->name, VIRTIO_PCI_VENDOR,
                    (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_id),
                    class_of(ops->device_id), VIRTIO_PCI_REVISION);
    pci_device_set_subsystem(d, VIRTIO_PCI_VENDOR, 0x40);
    d->ops = &virtio_pci_ops;
    d->opaque = p;
    static const struct bus_ops bar_ops = {.read = bar_read, .write = bar_write};
    int err = pci_device_add_bar(d, VIRTIO_BAR, PCI_BAR_MEM64, false, VIRTIO_PCI_BAR_SIZE,
                                 &bar_ops, p);
    if (err)
        return err;
    add_virtio_cap(d, CAP_COMMON, VIRTIO_PCI_COMMON, CC_SIZE, CAP_LEN);
    add_virtio_cap(d, CAP_NOTIFY, VIRTIO_PCI_NOTIFY,
                   ops->num_queues * VIRTIO_PCI_NOTIFY_MULTIPLIER, NOTIFY_CAP_LEN);
    add_virtio_cap(d, CAP_ISR, VIRTIO_PCI_ISR, 1, CAP_LEN);
    if (ops->config_size)
        add_virtio_cap(d, CAP_DEVICE, VIRTIO_PCI_DEVICE, ops->config_size, CAP_LEN);
    add_virtio_cap(d, CAP_PCI_CFG, 0, 0, PCI_CFG_CAP_LEN);
    p->cfg_cap = d->last_cap;
    d->wmask[p->cfg_cap + 4] = 0xff; /* bar */
    for (unsigned k = 8; k < 20; k++)
        d->wmask[p->cfg_cap + k] = 0xff; /* offset, length, data */
    if ((err = pci_msix_init(&p->msix, d, ops->num_queues + 1, MSIX_BAR)))
        return err;
    for (unsigned qi = 0; qi < ops->num_queues; qi++) {
        p->notify_fd[qi] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->notify_fd[qi] < 0)
            return kvmc_fail_errno(KVMC_EIO, errno, "eventfd for %s", ops->name);
        p->notify_ctx[qi] = (struct virtio_pci_notify){.self = p, .qi = qi};
        if ((err = iothread_watch(p->svc->io, p->notify_fd[qi], on_queue_notify,
                                  &p->notify_ctx[qi])))
            return err;
    }
    if ((err = virtio_dev_watch_reset(&p->dev, p->svc->io)) ||
        (ops->attach && (err = ops->attach(&p->dev, p->svc->io))))
        return err;
    return pci_host_add(host, d);
}

int virtio_pci_create(const struct vm_services *svc, struct pci_host *host,
                      const struct virtio_device_ops *ops, void *impl,
                      struct virtio_pci **out)
{
    struct virtio_pci *p = calloc(1, sizeof(*p));
    if (!p) {
        if (ops->destroy) {
            struct virtio_dev tmp = {.ops = ops, .impl = impl};
            ops->destroy(&tmp);
        }
        return kvmc_fail(KVMC_ENOMEM, "allocating %s", ops->name);
    }
    virtio_dev_init(&p->dev, ops, impl, svc->mem);
    p->dev.transport = p;
    p->dev.notify = pci_notify_irq;
    p->svc = svc;
    p->dev.stats = svc->stats;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        p->notify_fd[i] = -1;
    reset_transport_locked(p);
    int err = setup(p, host);
    if (err) {
        virtio_pci_destroy(p);
        return err;
    }
    *out = p;
    return KVMC_OK;
}

void virtio_pci_destroy(struct virtio_pci *p)
{
    if (!p)
        return;
    pci_device_unmap(&p->pci); /* drops the ioeventfds too (bar_moved) */
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        if (p->notify_fd[i] >= 0)
            close(p->notify_fd[i]);
    pci_msix_destroy(&p->msix);
    virtio_dev_destroy(&p->dev);
    free(p);
}

/* ------------------------------------------------------------ snapshots */

int virtio_pci_save(struct virtio_pci *p, struct snapshot_writer *w)
{
    uint8_t cfg[PCI_CFG_SIZE];
    pthread_mutex_lock(&p->dev.lock);
    snapshot_put_u32(w, VIRTIO_PCI_STATE_VERSION);
    snapshot_put_u32(w, p->device_features_sel);
    snapshot_put_u32(w, p->driver_features_sel);
    snapshot_put_u32(w, p->queue_sel);
    snapshot_put_u32(w, p->config_vector);
    snapshot_put_u32(w, p->dev.ops->num_queues);
    for (unsigned i = 0; i < p->dev.ops->num_queues; i++)
        snapshot_put_u32(w, p->queue_vector[i]);
    pthread_mutex_unlock(&p->dev.lock);
    pci_device_save_config(&p->pci, cfg); /* no config access: the vCPUs are stopped */
    snapshot_put(w, cfg, sizeof(cfg));
    pci_msix_save(&p->msix, w);
    int err = virtio_dev_save(&p->dev, w);
    if (!err && p->dev.ops->save)
        err = p->dev.ops->save(&p->dev, w);
    return err ? err : w->err;
}

int virtio_pci_restore(struct virtio_pci *p, struct snapshot_reader *r)
{
    const char *name = p->dev.ops->name;
    uint32_t version, dfs, gfs, qs, config_vector, nq, vectors[VIRTIO_MAX_QUEUES];
    uint8_t cfg[PCI_CFG_SIZE];
    if (snapshot_get_u32(r, &version))
        return KVMC_EFORMAT;
    int err = virtio_state_transport_check(name, version, VIRTIO_PCI_STATE_VERSION);
    if (err)
        return err;
    if (snapshot_get_u32(r, &dfs) || snapshot_get_u32(r, &gfs) || snapshot_get_u32(r, &qs) ||
        snapshot_get_u32(r, &config_vector) || snapshot_get_u32(r, &nq))
        return KVMC_EFORMAT;
    if (nq != p->dev.ops->num_queues)
        return kvmc_fail(KVMC_EFORMAT, "%s state: %u queues (the device has %u)", name, nq,
                         p->dev.ops->num_queues);
    for (unsigned i = 0; i < nq; i++)
        if (snapshot_get_u32(r, &vectors[i]))
            return KVMC_EFORMAT;
    if (snapshot_get(r, cfg, sizeof(cfg)) || (err = pci_msix_restore(&p->msix, r)) ||
        (err = virtio_dev_restore(&p->dev, r)) ||
        (p->dev.ops->restore && (err = p->dev.ops->restore(&p->dev, r))))
        return err ? err : KVMC_EFORMAT;
    pthread_mutex_lock(&p->dev.lock);
    p->device_features_sel = dfs;
    p->driver_features_sel = gfs;
    p->queue_sel = (uint16_t)qs;
    /* A vector the device lacks is no vector, as when the guest writes it. */
    __atomic_store_n(&p->config_vector, checked_vector(p, config_vector), __ATOMIC_RELAXED);
    for (unsigned i = 0; i < nq; i++)
        __atomic_store_n(&p->queue_vector[i], checked_vector(p, vectors[i]), __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->dev.lock);
    pci_device_restore_config(&p->pci, cfg); /* the BARs go where the guest had them */
    return KVMC_OK;
}

void virtio_pci_kick(struct virtio_pci *p)
{
    virtio_kick_ready(&p->dev, p->notify_fd);
}
