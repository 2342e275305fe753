/* MSI (the capability before MSI-X) for a PCI function: up to 32 vectors,
 * a 64-bit message address, per-vector masking, all in config space.
 *
 * kvmc offers it for passed-through devices that have MSI and no MSI-X
 * (VFIO): the device's real capability is programmed by the host kernel,
 * and the guest sees this emulated one, which always says 64-bit and
 * maskable whatever the device has (both are the host's business). A
 * masked vector is not delivered; what the device raised meanwhile is
 * delivered when it is unmasked (the pending bits read 0: the device's
 * owner, VFIO's eventfd, holds them).
 *
 * A hostile guest may program anything: more vectors than offered are cut
 * to what is offered, and a message whose address is not the local APICs'
 * window never reaches KVM.
 *
 * Threads: the registers live in config space, so every call here is made
 * with the root complex's lock held (config accesses, and their changed
 * callback). */
#ifndef KVMC_PCI_MSI_H
#define KVMC_PCI_MSI_H

#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

#define PCI_CAP_ID_MSI 0x05
#define PCI_MSI_MAX_VECTORS 32

/* Told that where the vectors deliver may have changed (enable, vector
 * count, address, data or mask written). */
typedef void (*pci_msi_changed_fn)(void *opaque);

struct pci_msi {
    struct pci_device *dev;
    unsigned cap;      /* config offset of the capability */
    unsigned nvectors; /* offered: 1, 2, 4, 8, 16 or 32 */
    pci_msi_changed_fn changed;
    void *changed_opaque;
    bool warned;
};

/* Whether a message address is the local APICs' window (0xfee00000-
 * 0xfeefffff): the only place an MSI may go. */
bool pci_msi_address_ok(uint64_t address);

/* Adds the capability offering nvectors (rounded down to a power of two,
 * at most 32). KVMC_EINVAL for 0 vectors or no room in config space. */
int pci_msi_init(struct pci_msi *m, struct pci_device *d, unsigned nvectors,
                 pci_msi_changed_fn changed, void *opaque);

/* The guest wrote config space at [offset, offset+size). */
void pci_msi_config_written(struct pci_msi *m, unsigned offset, unsigned size);

/* How many vectors the guest enabled: 0 while MSI is off. */
unsigned pci_msi_enabled_vectors(const struct pci_msi *m);

/* Where vector v delivers now: false if MSI is off, v is beyond what the
 * guest enabled, v is masked, or the address is not the local APICs'. */
bool pci_msi_target(struct pci_msi *m, unsigned v, uint64_t *address, uint32_t *data);

#endif
