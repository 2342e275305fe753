/* MSI-X for a PCI function: the capability, its vector table and
 * pending-bit array (in a BAR of their own, or for a passed-through device
 * where the device has them), per-vector and function-wide masking, and
 * delivery through KVM (KVM_SIGNAL_MSI), or word of every change to a
 * device that delivers by itself (VFIO: irqfds on MSI routes).
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

/* Told (without the lock) that vectors [first, first+count) may deliver
 * differently now: an entry, its mask, or the enable and function mask
 * bits changed. */
typedef void (*pci_msix_changed_fn)(void *opaque, unsigned first, unsigned count);

struct pci_msix {
    pthread_mutex_t lock;
    struct pci_device *dev;
    unsigned cap;       /* config offset of the capability */
    unsigned nvectors;
    unsigned table_bar, pba_bar;
    uint64_t table_offset, pba_offset; /* within their BARs */
    pci_msix_changed_fn changed;
    void *changed_opaque;
    struct pci_msix_entry *table;
    uint64_t *pba;
    bool enabled, function_masked;
    bool warned;
};

/* Adds the capability and a 32-bit memory BAR (number `bar`) holding the
 * table and the PBA. KVMC_EINVAL/ENOMEM. */
int pci_msix_init(struct pci_msix *x, struct pci_device *d, unsigned nvectors, unsigned bar);
/* The capability only, for a device whose BARs already hold the table and
 * the PBA at these places (a VFIO device): the device's BAR handlers pass
 * accesses there to pci_msix_access. changed (may be NULL) hears of every
 * change; pci_msix_notify stays usable. */
int pci_msix_init_at(struct pci_msix *x, struct pci_device *d, unsigned nvectors,
                     unsigned table_bar, uint64_t table_offset, unsigned pba_bar,
                     uint64_t pba_offset, pci_msix_changed_fn changed, void *opaque);
void pci_msix_destroy(struct pci_msix *x);

/* An access to BAR bar at offset: true if it falls in the table or the PBA
 * (then handled: *value read or written), false if it is the device's. */
bool pci_msix_access(struct pci_msix *x, unsigned bar, uint64_t offset, unsigned size,
                     uint64_t *value, bool write);

/* Where vector v delivers now: false if it does not exist, MSI-X is
 * disabled, the function or the vector is masked, or the guest pointed it
 * anywhere but the local APICs (a hostile address never reaches KVM). */
bool pci_msix_target(struct pci_msix *x, unsigned v, uint64_t *address, uint32_t *data);

/* The guest wrote config space at [offset, offset+size): picks up enable
 * and function mask changes (and delivers what an unmask releases). */
void pci_msix_config_written(struct pci_msix *x, unsigned offset, unsigned size);

/* Signals vector: delivered now, or remembered in the PBA while masked.
 * false if the vector does not exist or the guest has MSI-X disabled (the
 * interrupt is then lost, as INTx is not offered). */
bool pci_msix_notify(struct pci_msix *x, unsigned vector);

/* Whether the guest enabled MSI-X (for transports that fall back). */
bool pci_msix_enabled(struct pci_msix *x);

/* Snapshots: the table and the pending bits (the enable and function mask
 * bits are config space's: pci_device_restore_config picks them up).
 * Restore refuses another vector count and keeps only what a guest could
 * have written. */
struct snapshot_writer;
struct snapshot_reader;
void pci_msix_save(struct pci_msix *x, struct snapshot_writer *w);
int pci_msix_restore(struct pci_msix *x, struct snapshot_reader *r);

#endif
