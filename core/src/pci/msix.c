#include "msix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../services.h"
#include "../snapshot/format.h"
#include "msi.h"

#define MSIX_CAP_LEN 12
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_ENTRY_MASKED 0x1

static uint64_t bar_size_for(unsigned nvectors, uint64_t pba_offset)
{
    uint64_t need = pba_offset + 8 * ((nvectors + 63) / 64), size = 4096;
    while (size < need)
        size <<= 1;
    return size;
}

/* Delivers entry v if it is unmasked; with the lock held, returns whether
 * the message in *addr and *data must be signalled after unlocking. */
static bool take_locked(struct pci_msix *x, unsigned v, uint64_t *addr, uint32_t *data)
{
    const struct pci_msix_entry *e = &x->table[v];
    if (!x->enabled)
        return false;
    if (x->function_masked || (e->ctrl & MSIX_ENTRY_MASKED)) {
        x->pba[v / 64] |= 1ull << (v % 64);
        return false;
    }
    x->pba[v / 64] &= ~(1ull << (v % 64));
    *addr = (uint64_t)e->addr_hi << 32 | e->addr_lo;
    *data = e->data;
    return true;
}

static void warn_address(struct pci_msix *x, unsigned v, uint64_t addr)
{
    if (!__atomic_exchange_n(&x->warned, true, __ATOMIC_RELAXED))
        fprintf(stderr, "kvmc: PCI %s: MSI-X vector %u points at 0x%llx, not the local "
                        "APICs (0xfee00000-0xfeefffff): dropped\n",
                x->dev->name, v, (unsigned long long)addr);
}

static void signal(struct pci_msix *x, unsigned v, uint64_t addr, uint32_t data)
{
    if (!pci_msi_address_ok(addr)) {
        warn_address(x, v, addr);
        return;
    }
    x->dev->svc->signal_msi(x->dev->svc->ctx, addr, data);
}

static void tell(struct pci_msix *x, unsigned first, unsigned count)
{
    if (x->changed && count)
        x->changed(x->changed_opaque, first, count);
}

bool pci_msix_target(struct pci_msix *x, unsigned v, uint64_t *address, uint32_t *data)
{
    if (v >= x->nvectors)
        return false;
    pthread_mutex_lock(&x->lock);
    const struct pci_msix_entry *e = &x->table[v];
    bool on = x->enabled && !x->function_masked && !(e->ctrl & MSIX_ENTRY_MASKED);
    uint64_t addr = (uint64_t)e->addr_hi << 32 | e->addr_lo;
    *address = addr;
    *data = e->data;
    pthread_mutex_unlock(&x->lock);
    if (on && !pci_msi_address_ok(addr)) {
        warn_address(x, v, addr);
        return false;
    }
    return on;
}

/* Delivers every pending vector that is no longer masked. */
static void release_pending(struct pci_msix *x)
{
    for (unsigned v = 0; v < x->nvectors; v++) {
        uint64_t addr = 0;
        uint32_t data = 0;
        pthread_mutex_lock(&x->lock);
        bool go = (x->pba[v / 64] >> (v % 64) & 1) && take_locked(x, v, &addr, &data);
        pthread_mutex_unlock(&x->lock);
        if (go)
            signal(x, v, addr, data);
    }
}

bool pci_msix_notify(struct pci_msix *x, unsigned vector)
{
    if (vector >= x->nvectors)
        return false;
    uint64_t addr = 0;
    uint32_t data = 0;
    pthread_mutex_lock(&x->lock);
    bool enabled = x->enabled;
    bool go = take_locked(x, vector, &addr, &data);
    pthread_mutex_unlock(&x->lock);
    if (go)
        signal(x, vector, addr, data);
    return enabled;
}

bool pci_msix_enabled(struct pci_msix *x)
{
    pthread_mutex_lock(&x->lock);
    bool on = x->enabled;
    pthread_mutex_unlock(&x->lock);
    return on;
}

void pci_msix_config_written(struct pci_msix *x, unsigned offset, unsigned size)
{
    if (offset + size <= x->cap + 2 || offset >= x->cap + 4)
        return; /* not the message control word */
    uint16_t ctrl = pci_cfg16(x->dev, x->cap + 2);
    pthread_mutex_lock(&x->lock);
    bool changed = x->enabled != !!(ctrl & MSIX_CTRL_ENABLE) ||
                   x->function_masked != !!(ctrl & MSIX_CTRL_MASKALL);
    x->enabled = ctrl & MSIX_CTRL_ENABLE;
    x->function_masked = ctrl & MSIX_CTRL_MASKALL;
    pthread_mutex_unlock(&x->lock);
    release_pending(x);
    if (changed)
        tell(x, 0, x->nvectors);
}

/* ------------------------------------------------ the table and the PBA */

/* Offsets here are the table's or the PBA's own (from their start). */
static uint64_t pba_size(const struct pci_msix *x)
{
    return 8 * (((uint64_t)x->nvectors + 63) / 64);
}

static uint32_t read_table(struct pci_msix *x, uint64_t offset)
{
    const struct pci_msix_entry *e = &x->table[offset / PCI_MSIX_ENTRY_SIZE];
    const uint32_t words[4] = {e->addr_lo, e->addr_hi, e->data, e->ctrl};
    return words[(offset % PCI_MSIX_ENTRY_SIZE) / 4];
}

static uint32_t read_pba(struct pci_msix *x, uint64_t offset)
{
    uint64_t q = x->pba[offset / 8];
    return (uint32_t)((offset % 8) ? q >> 32 : q);
}

/* With the lock held; returns whether the entry changed and, in *unmasked,
 * whether this write unmasked it. */
static bool write_table(struct pci_msix *x, uint64_t offset, uint32_t value, bool *unmasked)
{
    struct pci_msix_entry *e = &x->table[offset / PCI_MSIX_ENTRY_SIZE];
    uint32_t *word = (uint32_t *[]){&e->addr_lo, &e->addr_hi, &e->data,
                                    &e->ctrl}[(offset % PCI_MSIX_ENTRY_SIZE) / 4];
    uint32_t old = *word;
    if (word == &e->addr_lo)
        value &= ~3u;
    else if (word == &e->ctrl) {
        value &= MSIX_ENTRY_MASKED;
        *unmasked |= (old & MSIX_ENTRY_MASKED) && !(value & MSIX_ENTRY_MASKED);
    }
    *word = value;
    return old != value;
}

bool pci_msix_access(struct pci_msix *x, unsigned bar, uint64_t offset, unsigned size,
                     uint64_t *value, bool write)
{
    uint64_t table_size = (uint64_t)x->nvectors * PCI_MSIX_ENTRY_SIZE;
    bool in_table = bar == x->table_bar && offset >= x->table_offset &&
                    offset - x->table_offset < table_size;
    bool in_pba = bar == x->pba_bar && offset >= x->pba_offset &&
                  offset - x->pba_offset < pba_size(x);
    if (!in_table && !in_pba)
        return false;
    uint64_t at = offset - (in_table ? x->table_offset : x->pba_offset);
    uint64_t end = in_table ? table_size : pba_size(x);
    /* The spec allows aligned dwords and qwords only: anything else reads
     * zero and writes nothing (as does a qword past the end). */
    bool ok = (size == 4 || size == 8) && !(offset & (size - 1)) && at + size <= end;
    if (!write) {
        uint64_t v = 0;
        pthread_mutex_lock(&x->lock);
        for (unsigned i = 0; ok && i < size; i += 4)
            v |= (uint64_t)(in_table ? read_table(x, at + i) : read_pba(x, at + i)) << (8 * i);
        pthread_mutex_unlock(&x->lock);
        *value = v;
        return true;
    }
    if (!ok || !in_table)
        return true; /* the PBA is read-only */
    bool unmasked = false, changed = false;
    pthread_mutex_lock(&x->lock);
    for (unsigned i = 0; i < size; i += 4)
        changed |= write_table(x, at + i, (uint32_t)(*value >> (8 * i)), &unmasked);
    pthread_mutex_unlock(&x->lock);
    if (unmasked)
        release_pending(x);
    if (changed)
        tell(x, (unsigned)(at / PCI_MSIX_ENTRY_SIZE), 1);
    return true;
}

static uint64_t msix_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_msix *x = opaque;
    uint64_t v = 0;
    return pci_msix_access(x, x->table_bar, offset, size, &v, false) ? v : 0;
}

static void msix_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_msix *x = opaque;
    pci_msix_access(x, x->table_bar, offset, size, &value, true);
}

static int init_common(struct pci_msix *x, struct pci_device *d, unsigned nvectors)
{
    memset(x, 0, sizeof(*x));
    if (nvectors == 0 || nvectors > PCI_MSIX_MAX_VECTORS)
        return kvmc_fail(KVMC_EINVAL, "%s: %u MSI-X vectors (1 to %u)", d->name, nvectors,
                         PCI_MSIX_MAX_VECTORS);
    pthread_mutex_init(&x->lock, NULL);
    x->dev = d;
    x->nvectors = nvectors;
    x->table = calloc(nvectors, sizeof(*x->table));
    x->pba = calloc((nvectors + 63) / 64, sizeof(*x->pba));
    if (!x->table || !x->pba)
        return kvmc_fail(KVMC_ENOMEM, "%s: MSI-X table", d->name);
    for (unsigned v = 0; v < nvectors; v++)
        x->table[v].ctrl = MSIX_ENTRY_MASKED; /* masked at reset */
    return KVMC_OK;
}

static int add_cap(struct pci_msix *x, struct pci_device *d)
{
    unsigned cap = pci_device_add_cap(d, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
    if (!cap)
        return kvmc_fail(KVMC_EINVAL, "%s: no room for the MSI-X capability", d->name);
    x->cap = cap;
    pci_set16(d, cap + 2, (uint16_t)(x->nvectors - 1));
    pci_set32(d, cap + 4, (uint32_t)x->table_offset | x->table_bar);
    pci_set32(d, cap + 8, (uint32_t)x->pba_offset | x->pba_bar);
    d->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
    d->msix = x;
    return KVMC_OK;
}

int pci_msix_init(struct pci_msix *x, struct pci_device *d, unsigned nvectors, unsigned bar)
{
    int err = init_common(x, d, nvectors);
    if (err)
        return err;
    x->table_bar = x->pba_bar = bar;
    x->pba_offset = ((uint64_t)nvectors * PCI_MSIX_ENTRY_SIZE + 0x7ff) & ~0x7ffull;
    static const struct bus_ops ops = {.read = msix_read, .write = msix_write};
    err = pci_device_add_bar(d, bar, PCI_BAR_MEM32, false,
                             bar_size_for(nvectors, x->pba_offset), &ops, x);
    return err ? err : add_cap(x, d);
}

int pci_msix_init_at(struct pci_msix *x, struct pci_device *d, unsigned nvectors,
                     unsigned table_bar, uint64_t table_offset, unsigned pba_bar,
                     uint64_t pba_offset, pci_msix_changed_fn changed, void *opaque)
{
    int err = init_common(x, d, nvectors);
    if (err)
        return err;
    if (table_bar >= PCI_NUM_BARS || pba_bar >= PCI_NUM_BARS || (table_offset & 7) ||
        (pba_offset & 7) || table_offset > UINT32_MAX || pba_offset > UINT32_MAX)
        return kvmc_fail(KVMC_EINVAL, "%s: MSI-X table (BAR %u + 0x%llx) or PBA (BAR %u + "
                         "0x%llx) misplaced", d->name, table_bar,
                         (unsigned long long)table_offset, pba_bar,
                         (unsigned long long)pba_offset);
    x->table_bar = table_bar;
    x->table_offset = table_offset;
    x->pba_bar = pba_bar;
    x->pba_offset = pba_offset;
    x->changed = changed;
    x->changed_opaque = opaque;
    return add_cap(x, d);
}

void pci_msix_destroy(struct pci_msix *x)
{
    if (!x->dev)
        return;
    free(x->table);
    free(x->pba);
    pthread_mutex_destroy(&x->lock);
    memset(x, 0, sizeof(*x));
}

/* ------------------------------------------------------------ snapshots */

void pci_msix_save(struct pci_msix *x, struct snapshot_writer *w)
{
    pthread_mutex_lock(&x->lock);
    snapshot_put_u32(w, x->nvectors);
    for (unsigned v = 0; v < x->nvectors; v++) {
        const struct pci_msix_entry *e = &x->table[v];
        snapshot_put_u32(w, e->addr_lo);
        snapshot_put_u32(w, e->addr_hi);
        snapshot_put_u32(w, e->data);
        snapshot_put_u32(w, e->ctrl);
    }
    for (unsigned i = 0; i < (x->nvectors + 63) / 64; i++)
        snapshot_put_u64(w, x->pba[i]);
    pthread_mutex_unlock(&x->lock);
}

int pci_msix_restore(struct pci_msix *x, struct snapshot_reader *r)
{
    uint32_t n;
    if (snapshot_get_u32(r, &n))
        return KVMC_EFORMAT;
    if (n != x->nvectors)
        return kvmc_fail(KVMC_EFORMAT, "PCI %s: the snapshot has %u MSI-X vectors, the "
                         "device %u", x->dev->name, n, x->nvectors);
    struct pci_msix_entry *table = calloc(n, sizeof(*table));
    uint64_t *pba = calloc((n + 63) / 64, sizeof(*pba));
    int err = table && pba ? KVMC_OK : kvmc_fail(KVMC_ENOMEM, "PCI %s: MSI-X table", x->dev->name);
    for (unsigned v = 0; v < n && !err; v++) {
        struct pci_msix_entry *e = &table[v];
        if (snapshot_get_u32(r, &e->addr_lo) || snapshot_get_u32(r, &e->addr_hi) ||
            snapshot_get_u32(r, &e->data) || snapshot_get_u32(r, &e->ctrl))
            err = KVMC_EFORMAT;
        e->addr_lo &= ~3u; /* what the guest can write, and no more */
        e->ctrl &= MSIX_ENTRY_MASKED;
    }
    for (unsigned i = 0; i < (n + 63) / 64 && !err; i++)
        if (snapshot_get_u64(r, &pba[i]))
            err = KVMC_EFORMAT;
    if (!err && n % 64)
        pba[n / 64] &= (1ull << (n % 64)) - 1; /* no vectors past the last */
    if (!err) {
        pthread_mutex_lock(&x->lock);
        memcpy(x->table, table, n * sizeof(*table));
        memcpy(x->pba, pba, (n + 63) / 64 * sizeof(*pba));
        pthread_mutex_unlock(&x->lock);
        tell(x, 0, x->nvectors);
    }
    free(table);
    free(pba);
    return err;
}
