#include "msix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../services.h"

#define MSIX_CAP_LEN 12
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_ENTRY_MASKED 0x1
#define MSI_ADDRESS_MASK 0xfff00000u
#define MSI_ADDRESS_LAPIC 0xfee00000u

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

static void signal(struct pci_msix *x, unsigned v, uint64_t addr, uint32_t data)
{
    if ((addr >> 32) || (addr & MSI_ADDRESS_MASK) != MSI_ADDRESS_LAPIC) {
        if (!__atomic_exchange_n(&x->warned, true, __ATOMIC_RELAXED))
            fprintf(stderr, "kvmc: PCI %s: MSI-X vector %u points at 0x%llx, not the local "
                            "APICs (0xfee00000-0xfeefffff): dropped\n",
                    x->dev->name, v, (unsigned long long)addr);
        return;
    }
    x->dev->svc->signal_msi(x->dev->svc->ctx, addr, data);
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
    x->enabled = ctrl & MSIX_CTRL_ENABLE;
    x->function_masked = ctrl & MSIX_CTRL_MASKALL;
    pthread_mutex_unlock(&x->lock);
    release_pending(x);
}

/* ------------------------------------------------ the table and the PBA */

static uint32_t read_dword(struct pci_msix *x, uint64_t offset)
{
    uint64_t table_end = (uint64_t)x->nvectors * PCI_MSIX_ENTRY_SIZE;
    if (offset < table_end) {
        const struct pci_msix_entry *e = &x->table[offset / PCI_MSIX_ENTRY_SIZE];
        const uint32_t words[4] = {e->addr_lo, e->addr_hi, e->data, e->ctrl};
        return words[(offset % PCI_MSIX_ENTRY_SIZE) / 4];
    }
    uint64_t pba_end = x->pba_offset + 8 * ((x->nvectors + 63) / 64);
    if (offset >= x->pba_offset && offset < pba_end) {
        uint64_t q = x->pba[(offset - x->pba_offset) / 8];
        return (uint32_t)(((offset - x->pba_offset) % 8) ? q >> 32 : q);
    }
    return 0;
}

static uint64_t msix_read(void *opaque, uint64_t offset, unsigned size)
{
    struct pci_msix *x = opaque;
    if ((size != 4 && size != 8) || (offset & (size - 1)))
        return 0; /* the spec allows aligned dwords and qwords only */
    pthread_mutex_lock(&x->lock);
    uint64_t v = read_dword(x, offset);
    if (size == 8)
        v |= (uint64_t)read_dword(x, offset + 4) << 32;
    pthread_mutex_unlock(&x->lock);
    return v;
}

/* With the lock held; returns whether vector v was unmasked by this write. */
static bool write_dword(struct pci_msix *x, uint64_t offset, uint32_t value)
{
    if (offset >= (uint64_t)x->nvectors * PCI_MSIX_ENTRY_SIZE)
        return false; /* the PBA is read-only */
    struct pci_msix_entry *e = &x->table[offset / PCI_MSIX_ENTRY_SIZE];
    switch ((offset % PCI_MSIX_ENTRY_SIZE) / 4) {
    case 0: e->addr_lo = value & ~3u; return false;
    case 1: e->addr_hi = value; return false;
    case 2: e->data = value; return false;
    default: {
        bool was_masked = e->ctrl & MSIX_ENTRY_MASKED;
        e->ctrl = value & MSIX_ENTRY_MASKED;
        return was_masked && !(e->ctrl & MSIX_ENTRY_MASKED);
    }
    }
}

static void msix_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct pci_msix *x = opaque;
    if ((size != 4 && size != 8) || (offset & (size - 1)))
        return;
    pthread_mutex_lock(&x->lock);
    bool unmasked = write_dword(x, offset, (uint32_t)value);
    if (size == 8)
        unmasked |= write_dword(x, offset + 4, (uint32_t)(value >> 32));
    pthread_mutex_unlock(&x->lock);
    if (unmasked)
        release_pending(x);
}

int pci_msix_init(struct pci_msix *x, struct pci_device *d, unsigned nvectors, unsigned bar)
{
    memset(x, 0, sizeof(*x));
    if (nvectors == 0 || nvectors > PCI_MSIX_MAX_VECTORS)
        return kvmc_fail(KVMC_EINVAL, "%s: %u MSI-X vectors (1 to %u)", d->name, nvectors,
                         PCI_MSIX_MAX_VECTORS);
    pthread_mutex_init(&x->lock, NULL);
    x->dev = d;
    x->nvectors = nvectors;
    x->bar = bar;
    x->pba_offset = ((uint64_t)nvectors * PCI_MSIX_ENTRY_SIZE + 0x7ff) & ~0x7ffull;
    x->table = calloc(nvectors, sizeof(*x->table));
    x->pba = calloc((nvectors + 63) / 64, sizeof(*x->pba));
    if (!x->table || !x->pba)
        return kvmc_fail(KVMC_ENOMEM, "%s: MSI-X table", d->name);
    for (unsigned v = 0; v < nvectors; v++)
        x->table[v].ctrl = MSIX_ENTRY_MASKED; /* masked at reset */
    static const struct bus_ops ops = {.read = msix_read, .write = msix_write};
    int err = pci_device_add_bar(d, bar, PCI_BAR_MEM32, false,
                                 bar_size_for(nvectors, x->pba_offset), &ops, x);
    if (err)
        return err;
    unsigned cap = pci_device_add_cap(d, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
    if (!cap)
        return kvmc_fail(KVMC_EINVAL, "%s: no room for the MSI-X capability", d->name);
    x->cap = cap;
    pci_set16(d, cap + 2, (uint16_t)(nvectors - 1));
    pci_set32(d, cap + 4, bar); /* the table at offset 0 */
    pci_set32(d, cap + 8, (uint32_t)x->pba_offset | bar);
    d->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
    d->msix = x;
    return KVMC_OK;
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
