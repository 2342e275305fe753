#include "msi.h"

#include <stdio.h>

#include "../error.h"

/* Register offsets in the (64-bit, maskable) capability. */
#define MSI_CTRL 2
#define MSI_ADDR_LO 4
#define MSI_ADDR_HI 8
#define MSI_DATA 12
#define MSI_MASK 16
#define MSI_PENDING 20
#define MSI_CAP_LEN 24

#define MSI_CTRL_ENABLE 0x0001
#define MSI_CTRL_MMC_SHIFT 1
#define MSI_CTRL_MME_SHIFT 4
#define MSI_CTRL_MME 0x0070
#define MSI_CTRL_64BIT 0x0080
#define MSI_CTRL_MASKABLE 0x0100

bool pci_msi_address_ok(uint64_t address)
{
    return !(address >> 32) && (address & 0xfff00000u) == 0xfee00000u;
}

static unsigned log2_floor(unsigned n)
{
    unsigned l = 0;
    while (n >> (l + 1))
        l++;
    return l;
}

int pci_msi_init(struct pci_msi *m, struct pci_device *d, unsigned nvectors,
                 pci_msi_changed_fn changed, void *opaque)
{
    if (!nvectors)
        return kvmc_fail(KVMC_EINVAL, "%s: MSI with no vectors", d->name);
    if (nvectors > PCI_MSI_MAX_VECTORS)
        nvectors = PCI_MSI_MAX_VECTORS;
    unsigned mmc = log2_floor(nvectors);
    unsigned cap = pci_device_add_cap(d, PCI_CAP_ID_MSI, MSI_CAP_LEN);
    if (!cap)
        return kvmc_fail(KVMC_EINVAL, "%s: no room for the MSI capability", d->name);
    *m = (struct pci_msi){.dev = d, .cap = cap, .nvectors = 1u << mmc, .changed = changed,
                          .changed_opaque = opaque};
    pci_set16(d, cap + MSI_CTRL,
              (uint16_t)(mmc << MSI_CTRL_MMC_SHIFT | MSI_CTRL_64BIT | MSI_CTRL_MASKABLE));
    d->wmask[cap + MSI_CTRL] = (uint8_t)(MSI_CTRL_ENABLE | MSI_CTRL_MME);
    for (unsigned k = 0; k < 4; k++) {
        d->wmask[cap + MSI_ADDR_LO + k] = k ? 0xff : 0xfc;
        d->wmask[cap + MSI_ADDR_HI + k] = 0xff;
        d->wmask[cap + MSI_MASK + k] =
            (uint8_t)((m->nvectors == 32 ? 0xffffffffu : (1u << m->nvectors) - 1) >> (8 * k));
    }
    d->wmask[cap + MSI_DATA] = d->wmask[cap + MSI_DATA + 1] = 0xff;
    return KVMC_OK;
}

void pci_msi_config_written(struct pci_msi *m, unsigned offset, unsigned size)
{
    if (!m->dev || offset + size <= m->cap || offset >= m->cap + MSI_PENDING)
        return;
    if (m->changed)
        m->changed(m->changed_opaque);
}

unsigned pci_msi_enabled_vectors(const struct pci_msi *m)
{
    if (!m->dev)
        return 0;
    uint16_t ctrl = pci_cfg16(m->dev, m->cap + MSI_CTRL);
    if (!(ctrl & MSI_CTRL_ENABLE))
        return 0;
    unsigned n = 1u << ((ctrl & MSI_CTRL_MME) >> MSI_CTRL_MME_SHIFT);
    return n > m->nvectors ? m->nvectors : n; /* more than offered: cut */
}

bool pci_msi_target(struct pci_msi *m, unsigned v, uint64_t *address, uint32_t *data)
{
    unsigned n = pci_msi_enabled_vectors(m);
    if (v >= n || (pci_cfg32(m->dev, m->cap + MSI_MASK) >> v & 1))
        return false;
    *address = (uint64_t)pci_cfg32(m->dev, m->cap + MSI_ADDR_HI) << 32 |
               pci_cfg32(m->dev, m->cap + MSI_ADDR_LO);
    /* With n vectors the function puts the vector number in the data's
     * low log2(n) bits. */
    *data = (pci_cfg16(m->dev, m->cap + MSI_DATA) & ~(n - 1)) | v;
    if (!pci_msi_address_ok(*address)) {
        if (!m->warned) {
            m->warned = true;
            fprintf(stderr, "kvmc: PCI %s: MSI points at 0x%llx, not the local APICs "
                            "(0xfee00000-0xfeefffff): dropped\n",
                    m->dev->name, (unsigned long long)*address);
        }
        return false;
    }
    return true;
}
