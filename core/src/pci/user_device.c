#include "user_device.h"

#include <stdlib.h>

#include "../error.h"
#include "host.h"

static uint64_t user_read(void *opaque, uint64_t offset, unsigned size)
{
    const struct pci_user_bar *b = opaque;
    const struct pci_user_device *u = b->dev;
    return u->info.read ? u->info.read(u->opaque, b->index, offset, size) : ~0ull;
}

static void user_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    const struct pci_user_bar *b = opaque;
    const struct pci_user_device *u = b->dev;
    if (u->info.write)
        u->info.write(u->opaque, b->index, offset, size, value);
}

static int check(const kvmc_pci_device *info)
{
    if (info->version == 0)
        return kvmc_fail(KVMC_EINVAL, "kvmc_pci_device.version is 0: start from "
                                      "KVMC_PCI_DEVICE_INIT");
    if (info->version > KVMC_PCI_DEVICE_VERSION)
        return kvmc_fail(KVMC_ENOTSUP, "kvmc_pci_device version %u is newer than this "
                         "library's (%u)", info->version, KVMC_PCI_DEVICE_VERSION);
    if (info->vendor_id == 0xffff || info->vendor_id == 0)
        return kvmc_fail(KVMC_EINVAL, "PCI vendor ID 0x%04x is not a vendor (0 and 0xffff "
                         "mean no device)", info->vendor_id);
    if (info->class_code > 0xffffff)
        return kvmc_fail(KVMC_EINVAL, "PCI class code 0x%x has more than 24 bits",
                         info->class_code);
    if (info->msix_vectors > KVMC_PCI_MAX_MSIX_VECTORS)
        return kvmc_fail(KVMC_EINVAL, "%u MSI-X vectors: at most %u", info->msix_vectors,
                         KVMC_PCI_MAX_MSIX_VECTORS);
    return KVMC_OK;
}

static int add_bars(struct pci_user_device *u)
{
    static const struct bus_ops ops = {.read = user_read, .write = user_write};
    for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
        const kvmc_pci_bar *b = &u->info.bars[i];
        unsigned kind = b->kind & ~KVMC_PCI_BAR_PREFETCHABLE;
        bool prefetch = b->kind & KVMC_PCI_BAR_PREFETCHABLE;
        if (kind == KVMC_PCI_BAR_NONE && !prefetch && b->size == 0)
            continue;
        enum pci_bar_kind k = kind == KVMC_PCI_BAR_MEM32   ? PCI_BAR_MEM32
                              : kind == KVMC_PCI_BAR_MEM64 ? PCI_BAR_MEM64
                              : kind == KVMC_PCI_BAR_IO    ? PCI_BAR_IO
                                                           : PCI_BAR_UNUSED;
        if (k == PCI_BAR_UNUSED || (k == PCI_BAR_IO && prefetch))
            return kvmc_fail(KVMC_EINVAL, "PCI BAR %u: kind 0x%x is not MEM32, MEM64 or IO "
                             "(prefetchable only for memory)", i, b->kind);
        if (u->pci.bars[i].kind == PCI_BAR_MEM64_HIGH)
            return kvmc_fail(KVMC_EINVAL, "PCI BAR %u: taken by the 64-bit BAR %u", i, i - 1);
        u->bars[i] = (struct pci_user_bar){.dev = u, .index = i};
        int err = pci_device_add_bar(&u->pci, i, k, prefetch, b->size, &ops, &u->bars[i]);
        if (err)
            return err;
    }
    return KVMC_OK;
}

static int add_msix(struct pci_user_device *u)
{
    if (!u->info.msix_vectors)
        return KVMC_OK;
    unsigned bar = 0;
    while (bar < PCI_NUM_BARS && u->pci.bars[bar].kind != PCI_BAR_UNUSED)
        bar++;
    if (bar == PCI_NUM_BARS)
        return kvmc_fail(KVMC_EINVAL, "PCI device with MSI-X: all 6 BARs are taken, and "
                                      "the MSI-X table needs one");
    int err = pci_msix_init(&u->msix, &u->pci, u->info.msix_vectors, bar);
    u->has_msix = err == KVMC_OK;
    return err;
}

int pci_user_device_create(struct pci_host *host, const kvmc_pci_device *info, void *opaque,
                           struct pci_user_device **out)
{
    int err = check(info);
    if (err)
        return err;
    struct pci_user_device *u = calloc(1, sizeof(*u));
    if (!u)
        return kvmc_fail(KVMC_ENOMEM, "allocating a PCI device");
    u->info = *info;
    u->opaque = opaque;
    pci_device_init(&u->pci, "user PCI device", info->vendor_id, info->device_id,
                    info->class_code, info->revision);
    pci_device_set_subsystem(&u->pci, info->subsystem_vendor_id, info->subsystem_id);
    if ((err = add_bars(u)) || (err = add_msix(u)) || (err = pci_host_add(host, &u->pci))) {
        pci_user_device_destroy(u);
        return err;
    }
    *out = u;
    return KVMC_OK;
}

void pci_user_device_destroy(struct pci_user_device *u)
{
    if (!u)
        return;
    pci_device_unmap(&u->pci);
    pci_msix_destroy(&u->msix); /* also a half-made one */
    free(u);
}

int pci_user_device_notify(struct pci_user_device *u, unsigned vector)
{
    if (!u->has_msix || vector >= u->msix.nvectors)
        return kvmc_fail(KVMC_EINVAL, "PCI device in slot %u has no MSI-X vector %u",
                         u->pci.slot, vector);
    pci_msix_notify(&u->msix, vector);
    return KVMC_OK;
}
