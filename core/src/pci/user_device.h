/* A PCI device from the public API (kvmc_vm_add_pci_device): config space
 * from the caller's IDs and BARs, BAR accesses to its callbacks, and MSI-X
 * it signals with pci_user_device_notify from any thread. */
#ifndef KVMC_PCI_USER_DEVICE_H
#define KVMC_PCI_USER_DEVICE_H

#include "kvmc/kvmc.h"
#include "msix.h"
#include "pci.h"

struct pci_host;

struct pci_user_bar {
    struct pci_user_device *dev;
    unsigned index;
};

struct pci_user_device {
    struct pci_device pci;
    struct pci_msix msix;
    bool has_msix;
    kvmc_pci_device info;
    void *opaque;
    struct pci_user_bar bars[PCI_NUM_BARS];
};

/* Checks info, builds the device and plugs it into host. */
int pci_user_device_create(struct pci_host *host, const kvmc_pci_device *info, void *opaque,
                           struct pci_user_device **out);
void pci_user_device_destroy(struct pci_user_device *u);
/* KVMC_EINVAL for a vector the device does not have. */
int pci_user_device_notify(struct pci_user_device *u, unsigned vector);

#endif
