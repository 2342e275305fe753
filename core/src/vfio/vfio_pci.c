#include "vfio_pci.h"

#include <errno.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../error.h"
#include "../pci/host.h"
#include "../services.h"

#define PAGE 4096ull
#define MAX_CAPS 48 /* a capability list longer than this loops */
#define CFG_HEADER_TYPE_MASK 0x7f

static const struct vfio_region *config_region(const struct vfio_pci *v)
{
    return &v->host.regions[VFIO_REGION_CONFIG];
}

static void warn(struct vfio_pci *v, const char *what)
{
    if (!__atomic_exchange_n(&v->warned, true, __ATOMIC_RELAXED))
        fprintf(stderr, "kvmc: VFIO %s: %s: %s\n", v->host.bdf, what, kvmc_last_error());
}

/* ------------------------------------------------------------- the BARs */

static uint64_t bar_read(void *opaque, uint64_t offset, unsigned size)
{
    struct vfio_pci_bar *b = opaque;
    struct vfio_pci *v = b->dev;
    uint64_t value = 0;
    if (v->has_msix && pci_msix_access(&v->msix, b->index, offset, size, &value, false))
        return value;
    const struct vfio_region *r = &v->host.regions[b->index];
    if (size > 8 || offset >= r->size || r->size - offset < size ||
        pread(v->host.fd, &value, size, (off_t)(r->offset + offset)) != (ssize_t)size)
        return ~0ull >> (64 - 8 * (size > 8 ? 8 : size)); /* as a master abort reads */
    return value;
}

static void bar_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct vfio_pci_bar *b = opaque;
    struct vfio_pci *v = b->dev;
    if (v->has_msix && pci_msix_access(&v->msix, b->index, offset, size, &value, true))
        return;
    const struct vfio_region *r = &v->host.regions[b->index];
    if (size <= 8 && offset < r->size && r->size - offset >= size)
        (void)!pwrite(v->host.fd, &value, size, (off_t)(r->offset + offset));
}

/* The page-aligned ranges of BAR b that are not the MSI-X table's or the
 * PBA's pages: at most three. */
static unsigned direct_ranges(const struct vfio_pci *v, const struct vfio_pci_bar *b,
                              uint64_t start[3], uint64_t end[3])
{
    uint64_t holes[2][2];
    unsigned nholes = 0;
    if (v->has_msix) {
        const struct pci_msix *x = &v->msix;
        if (x->table_bar == b->index) {
            holes[nholes][0] = x->table_offset & ~(PAGE - 1);
            holes[nholes++][1] =
                (x->table_offset + x->nvectors * PCI_MSIX_ENTRY_SIZE + PAGE - 1) & ~(PAGE - 1);
        }
        if (x->pba_bar == b->index) {
            holes[nholes][0] = x->pba_offset & ~(PAGE - 1);
            holes[nholes++][1] =
                (x->pba_offset + 8 * ((x->nvectors + 63) / 64) + PAGE - 1) & ~(PAGE - 1);
        }
    }
    if (nholes == 2 && holes[1][0] < holes[0][0]) {
        uint64_t t0 = holes[0][0], t1 = holes[0][1];
        holes[0][0] = holes[1][0], holes[0][1] = holes[1][1];
        holes[1][0] = t0, holes[1][1] = t1;
    }
    unsigned n = 0;
    uint64_t at = 0;
    for (unsigned h = 0; h < nholes; h++) {
        if (holes[h][0] > at) {
            start[n] = at;
            end[n++] = holes[h][0];
        }
        if (holes[h][1] > at)
            at = holes[h][1];
    }
    if (at < b->size) {
        start[n] = at;
        end[n++] = b->size;
    }
    return n;
}

static void unmap_direct(struct vfio_pci *v, struct vfio_pci_bar *b)
{
    for (unsigned i = 0; i < b->nslots; i++)
        v->pci.svc->unmap_host(v->pci.svc->ctx, b->slots[i]);
    b->nslots = 0;
}

static void bar_moved(struct pci_device *d, unsigned bar, bool mapped, uint64_t at)
{
    struct vfio_pci *v = d->opaque;
    struct vfio_pci_bar *b = &v->bars[bar];
    if (!b->map)
        return;
    unmap_direct(v, b);
    if (!mapped)
        return;
    uint64_t start[3], end[3];
    unsigned n = direct_ranges(v, b, start, end);
    for (unsigned i = 0; i < n; i++) {
        /* A place the guest chose over its RAM is refused here; the BAR is
         * then reached through the bus only where RAM is not. */
        if (v->pci.svc->map_host(v->pci.svc->ctx, at + start[i], end[i] - start[i],
                                 b->map + start[i], &b->slots[b->nslots]) == KVMC_OK)
            b->nslots++;
        else
            warn(v, "a BAR stays trapped (slower, still correct)");
    }
}

/* --------------------------------------------------------- config space */

static int read_config(struct vfio_pci *v, uint8_t *cfg)
{
    const struct vfio_region *r = config_region(v);
    if (r->size < PCI_CFG_SIZE ||
        pread(v->host.fd, cfg, PCI_CFG_SIZE, (off_t)r->offset) != PCI_CFG_SIZE)
        return kvmc_fail(KVMC_EIO, "VFIO device %s: reading its config space", v->host.bdf);
    return KVMC_OK;
}

static void config_written(struct pci_device *d, unsigned offset, unsigned size)
{
    struct vfio_pci *v = d->opaque;
    if (v->has_msi)
        pci_msi_config_written(&v->msi, offset, size);
    if (offset >= PCI_COMMAND + 2 || offset + size <= PCI_COMMAND)
        return;
    /* Only decoding and bus mastering reach the device; its INTx stays off
     * (kvmc offers MSI-X and MSI only). */
    uint16_t cmd = (uint16_t)((pci_cfg16(d, PCI_COMMAND) &
                               (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) |
                              PCI_COMMAND_INTX_DISABLE);
    if (pwrite(v->host.fd, &cmd, 2, (off_t)(config_region(v)->offset + PCI_COMMAND)) != 2)
        warn(v, "writing the command register");
}

static const struct pci_device_ops vfio_pci_ops = {
    .config_written = config_written,
    .bar_moved = bar_moved,
};

/* The device's capability with this ID, if its list has one (walked with a
 * bound: config space comes from the device, and a hostile or broken one
 * may loop). 0 if none. */
static unsigned find_cap(const uint8_t *cfg, uint8_t id)
{
    if (!(cfg[PCI_STATUS] & PCI_STATUS_CAP_LIST))
        return 0;
    unsigned at = cfg[PCI_CAPABILITY_LIST] & 0xfc;
    for (unsigned hops = 0; at >= 0x40 && at <= PCI_CFG_SIZE - 12 && hops < MAX_CAPS; hops++) {
        if (cfg[at] == id)
            return at;
        at = cfg[at + 1] & 0xfc;
    }
    return 0;
}

static int add_bars(struct vfio_pci *v, const uint8_t *cfg)
{
    static const struct bus_ops ops = {.read = bar_read, .write = bar_write};
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        const struct vfio_region *r = &v->host.regions[i];
        if (!r->size)
            continue;
        uint32_t raw = (uint32_t)cfg[PCI_BAR0 + 4 * i] | (uint32_t)cfg[PCI_BAR0 + 4 * i + 1] << 8;
        bool io = raw & 1, mem64 = !io && ((raw >> 1) & 3) == 2, prefetch = !io && (raw & 8);
        enum pci_bar_kind kind = io ? PCI_BAR_IO : mem64 ? PCI_BAR_MEM64 : PCI_BAR_MEM32;
        struct vfio_pci_bar *b = &v->bars[i];
        *b = (struct vfio_pci_bar){.dev = v, .index = i, .size = r->size};
        int err = pci_device_add_bar(&v->pci, i, kind, prefetch, r->size, &ops, b);
        if (err)
            return kvmc_fail_prefix(err, "VFIO device %s: BAR %u", v->host.bdf, i);
        if (!io && (r->flags & VFIO_REGION_INFO_FLAG_MMAP) && r->size >= PAGE) {
            void *map = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, v->host.fd,
                             (off_t)r->offset);
            b->map = map == MAP_FAILED ? NULL : map;
        }
        if (mem64)
            i++;
    }
    return KVMC_OK;
}

/* ----------------------------------------------------------- interrupts */

/* Gives VFIO the first `count` eventfds (0: interrupts off at the device).
 * MSI cannot change its vector count while on: off first. */
static void wire_locked(struct vfio_pci *v, unsigned count)
{
    if (count == v->wired)
        return;
    bool msix = v->has_msix;
    if (v->wired && count && v->host.io->set_irqs(&v->host, msix, NULL, 0) == KVMC_OK)
        v->wired = 0;
    int *fds = count ? calloc(count, sizeof(int)) : NULL;
    if (count && !fds)
        return;
    for (unsigned i = 0; i < count; i++)
        fds[i] = v->vectors[i].efd;
    if (v->host.io->set_irqs(&v->host, msix, fds, count) == KVMC_OK)
        v->wired = count;
    else
        warn(v, count ? "enabling interrupts" : "disabling interrupts");
    free(fds);
}

static void update_vector_locked(struct vfio_pci *v, unsigned i)
{
    const struct vm_services *svc = v->pci.svc;
    struct vfio_pci_vector *vec = &v->vectors[i];
    uint64_t address;
    uint32_t data;
    bool on = v->has_msix ? pci_msix_target(&v->msix, i, &address, &data)
                          : pci_msi_target(&v->msi, i, &address, &data);
    if (!on) {
        if (vec->attached && svc->msi_irqfd(svc->ctx, vec->efd, (unsigned)vec->gsi, false) == 0)
            vec->attached = false;
        return;
    }
    if (vec->gsi < 0 || vec->address != address || vec->data != data) {
        if (svc->msi_route(svc->ctx, &vec->gsi, address, data) != KVMC_OK) {
            warn(v, "routing an MSI vector");
            return;
        }
        vec->address = address;
        vec->data = data;
    }
    if (!vec->attached) {
        if (svc->msi_irqfd(svc->ctx, vec->efd, (unsigned)vec->gsi, true) == KVMC_OK)
            vec->attached = true;
        else
            warn(v, "attaching an MSI vector");
    }
}

static void msix_changed(void *opaque, unsigned first, unsigned count)
{
    struct vfio_pci *v = opaque;
    pthread_mutex_lock(&v->lock);
    wire_locked(v, pci_msix_enabled(&v->msix) ? v->nvectors : 0);
    for (unsigned i = first; i < first + count && i < v->nvectors; i++)
        update_vector_locked(v, i);
    pthread_mutex_unlock(&v->lock);
}

static void msi_changed(void *opaque)
{
    struct vfio_pci *v = opaque;
    pthread_mutex_lock(&v->lock);
    wire_locked(v, pci_msi_enabled_vectors(&v->msi));
    for (unsigned i = 0; i < v->nvectors; i++)
        update_vector_locked(v, i);
    pthread_mutex_unlock(&v->lock);
}

static int make_vectors(struct vfio_pci *v, unsigned n)
{
    v->vectors = calloc(n, sizeof(*v->vectors));
    if (!v->vectors)
        return kvmc_fail(KVMC_ENOMEM, "VFIO device %s: interrupt vectors", v->host.bdf);
    for (unsigned i = 0; i < n; i++) {
        v->vectors[i].gsi = -1;
        v->vectors[i].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (v->vectors[i].efd < 0) {
            v->nvectors = i;
            return kvmc_fail_errno(KVMC_EIO, errno, "VFIO device %s: eventfd", v->host.bdf);
        }
    }
    v->nvectors = n;
    return KVMC_OK;
}

static int add_msix(struct vfio_pci *v, const uint8_t *cfg, unsigned cap)
{
    unsigned n = (unsigned)((cfg[cap + 2] | cfg[cap + 3] << 8) & 0x7ff) + 1;
    uint32_t table = (uint32_t)cfg[cap + 4] | (uint32_t)cfg[cap + 5] << 8 |
                     (uint32_t)cfg[cap + 6] << 16 | (uint32_t)cfg[cap + 7] << 24;
    uint32_t pba = (uint32_t)cfg[cap + 8] | (uint32_t)cfg[cap + 9] << 8 |
                   (uint32_t)cfg[cap + 10] << 16 | (uint32_t)cfg[cap + 11] << 24;
    unsigned tbar = table & 7, pbar = pba & 7;
    uint64_t toff = table & ~7u, poff = pba & ~7u;
    if (n > v->host.msix_count)
        n = v->host.msix_count;
    if (tbar >= PCI_NUM_BARS || pbar >= PCI_NUM_BARS ||
        toff + (uint64_t)n * PCI_MSIX_ENTRY_SIZE > v->host.regions[tbar].size ||
        poff + 8 * (((uint64_t)n + 63) / 64) > v->host.regions[pbar].size)
        return kvmc_fail(KVMC_ENOTSUP, "VFIO device %s: its MSI-X table (BAR %u + 0x%llx) or "
                         "PBA (BAR %u + 0x%llx) lies outside its BARs", v->host.bdf, tbar,
                         (unsigned long long)toff, pbar, (unsigned long long)poff);
    int err = make_vectors(v, n);
    if (err)
        return err;
    err = pci_msix_init_at(&v->msix, &v->pci, n, tbar, toff, pbar, poff, msix_changed, v);
    v->has_msix = err == KVMC_OK;
    return err;
}

static int add_msi(struct vfio_pci *v, const uint8_t *cfg, unsigned cap)
{
    /* Multiple Message Capable: log2 of what the device can do. */
    unsigned n = 1u << ((cfg[cap + 2] >> 1) & 7);
    while (n > v->host.msi_count || n > PCI_MSI_MAX_VECTORS)
        n >>= 1; /* msi_count >= 1 here */
    int err = make_vectors(v, n);
    if (!err)
        err = pci_msi_init(&v->msi, &v->pci, n, msi_changed, v);
    v->has_msi = err == KVMC_OK;
    return err;
}

/* MSI-X where the device has it, else MSI; a device with neither (INTx
 * only) is refused. */
static int add_interrupts(struct vfio_pci *v, const uint8_t *cfg)
{
    unsigned cap = find_cap(cfg, PCI_CAP_ID_MSIX);
    if (cap && v->host.msix_count)
        return add_msix(v, cfg, cap);
    cap = find_cap(cfg, PCI_CAP_ID_MSI);
    if (cap && v->host.msi_count)
        return add_msi(v, cfg, cap);
    return kvmc_fail(KVMC_ENOTSUP, "VFIO device %s has neither MSI-X nor MSI: kvmc passes "
                     "through devices that have one of them (INTx is not offered)",
                     v->host.bdf);
}

/* --------------------------------------------------------------- create */

int vfio_pci_create(struct pci_host *host, struct vfio_host_device *hd, struct vfio_pci **out)
{
    struct vfio_pci *v = calloc(1, sizeof(*v));
    if (!v) {
        vfio_device_close(hd);
        return kvmc_fail(KVMC_ENOMEM, "allocating a VFIO device");
    }
    v->host = *hd;
    hd->fd = -1;
    pthread_mutex_init(&v->lock, NULL);
    snprintf(v->name, sizeof(v->name), "VFIO %s", v->host.bdf);
    uint8_t cfg[PCI_CFG_SIZE];
    int err = read_config(v, cfg);
    if (!err && (cfg[PCI_HEADER_TYPE] & CFG_HEADER_TYPE_MASK) != 0)
        err = kvmc_fail(KVMC_ENOTSUP, "VFIO device %s is a bridge (header type %u): only "
                        "endpoints can be passed through", v->host.bdf,
                        cfg[PCI_HEADER_TYPE] & CFG_HEADER_TYPE_MASK);
    if (!err) {
        pci_device_init(&v->pci, v->name, (uint16_t)(cfg[0] | cfg[1] << 8),
                        (uint16_t)(cfg[2] | cfg[3] << 8),
                        (uint32_t)(cfg[PCI_CLASS_PROG] | cfg[PCI_CLASS_PROG + 1] << 8 |
                                   cfg[PCI_CLASS_PROG + 2] << 16),
                        cfg[PCI_REVISION_ID]);
        pci_device_set_subsystem(&v->pci, (uint16_t)(cfg[0x2c] | cfg[0x2d] << 8),
                                 (uint16_t)(cfg[0x2e] | cfg[0x2f] << 8));
        v->pci.ops = &vfio_pci_ops;
        v->pci.opaque = v;
        err = add_bars(v, cfg);
    }
    if (!err)
        err = add_interrupts(v, cfg);
    if (!err)
        err = pci_host_add(host, &v->pci);
    if (err) {
        vfio_pci_destroy(v);
        return err;
    }
    *out = v;
    return KVMC_OK;
}

void vfio_pci_destroy(struct vfio_pci *v)
{
    if (!v)
        return;
    if (v->pci.svc)
        pci_device_unmap(&v->pci); /* takes the direct mappings away too */
    pthread_mutex_lock(&v->lock);
    if (v->host.fd >= 0)
        wire_locked(v, 0);
    for (unsigned i = 0; i < v->nvectors; i++) {
        struct vfio_pci_vector *vec = &v->vectors[i];
        if (vec->attached)
            v->pci.svc->msi_irqfd(v->pci.svc->ctx, vec->efd, (unsigned)vec->gsi, false);
        if (vec->gsi >= 0)
            v->pci.svc->msi_route_free(v->pci.svc->ctx, (unsigned)vec->gsi);
        close(vec->efd);
    }
    pthread_mutex_unlock(&v->lock);
    free(v->vectors);
    for (unsigned i = 0; i < PCI_NUM_BARS; i++)
        if (v->bars[i].map)
            munmap(v->bars[i].map, v->bars[i].size);
    pci_msix_destroy(&v->msix);
    vfio_device_close(&v->host);
    pthread_mutex_destroy(&v->lock);
    free(v);
}
