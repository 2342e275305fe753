/* MSI-X for a PCI function: the capability, its vector table and
 * pending-bit array in a BAR of their own, per-vector and function-wide
 * masking, and delivery through KVM (KVM_SIGNAL_MSI).
 *
 * A hostile guest may write anything to the table: a vector whose address
 * is not the local APICs' window (0xfee00000-0xfeefffff) is dropped (and
 * said once), never handed to KVM.
 *
 * Threads: pci_msix_notify may be called from any thread (a device's I/O
 * thread, a binding's thread); table accesses come from vCPUs. */
#ifndef KVMC_PCI_MSIX_H
#define KVMC_PCI_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

#define PCI_MSIX_MAX_VECTORS 2048
#define PCI_MSIX_ENTRY_SIZE 16

struct pci_msix_entry {
    uint32_t addr_lo, addr_hi, data, ctrl;
};

struct pci_msix {
    pthread_mutex_t lock;
    struct pci_device *dev;
    unsigned cap;       /* config offset of the capability */
    unsigned nvectors;
    unsigned bar;
    uint64_t pba_offset; /* within the BAR; the table is at 0 */
    struct pci_msix_entry *table;
    uint64_t *pba;
    bool enabled, function_masked;
    bool warned;
};

/* Adds the capability and a 32-bit memory BAR (number `bar`) holding the
 * table and the PBA. KVMC_EINVAL/ENOMEM. */
int pci_msix_init(struct pci_msix *x, struct pci_device *d, unsigned nvectors, unsigned bar);
void pci_msix_destroy(struct pci_msix *x);

/* The guest wrote config space at [offset, offset+size): picks up enable
 * and function mask changes (and delivers what an unmask releases). */
void pci_msix_config_written(struct pci_msix *x, unsigned offset, unsigned size);

/* Signals vector: delivered now, or remembered in the PBA while masked.
 * false if the vector does not exist or the guest has MSI-X disabled (the
 * interrupt is then lost, as INTx is not offered). */
bool pci_msix_notify(struct pci_msix *x, unsigned vector);

/* Whether the guest enabled MSI-X (for transports that fall back). */
bool pci_msix_enabled(struct pci_msix *x);

#endif
