/* A host PCI device passed through to the guest (VFIO), as a function on
 * kvmc's root complex.
 *
 * Config space is kvmc's, built from the device's at open: IDs, class and
 * BAR types are the device's; the guest may write only the command
 * register (memory, I/O, bus master; passed on to the device, always with
 * INTx disabled), the BARs (kvmc places them; the device's own addresses
 * never change) and MSI-X's (or MSI's) registers. The one capability
 * offered is MSI-X, or MSI (pci/msi.c) for a device without MSI-X: the
 * PCIe, power-management and vendor capabilities, the other interrupt
 * capability, the expansion ROM and extended config space are hidden, so
 * no guest write reaches the device's config space beyond those bits.
 *
 * BARs: accesses go to the device (pread/pwrite on its VFIO fd); where VFIO
 * lets a BAR be mmapped, it is also a KVM memory slot wherever the guest
 * puts it, so those accesses never exit, except for the pages holding the
 * MSI-X table and PBA, which stay trapped: the table is kvmc's
 * (pci/msix.c), and the device's real table is programmed by VFIO.
 *
 * Interrupts: MSI-X, else MSI (a device with INTx only is refused). Each
 * vector is an eventfd VFIO signals, attached by KVM_IRQFD to an MSI route
 * that follows the guest's table entry (or MSI registers): an interrupt
 * goes from the host's IRQ handler to the guest without kvmc's threads. A
 * masked vector's irqfd is detached, and KVM delivers what its eventfd
 * counted when it is unmasked.
 *
 * Threads: BAR and config accesses come from vCPUs (the host lock
 * serialises config); vector changes take the device's lock. */
#ifndef KVMC_VFIO_PCI_H
#define KVMC_VFIO_PCI_H

#include <pthread.h>
#include <stdbool.h>

#include "../pci/msi.h"
#include "../pci/msix.h"
#include "../pci/pci.h"
#include "vfio.h"

struct pci_host;

struct vfio_pci_bar {
    struct vfio_pci *dev;
    unsigned index;
    uint8_t *map; /* the region mmapped, or NULL: trapped only */
    uint64_t size;
    unsigned slots[3]; /* KVM slots while placed */
    unsigned nslots;
};

struct vfio_pci_vector {
    int efd;
    int gsi; /* -1: no route yet */
    bool attached;
    uint64_t address;
    uint32_t data;
};

struct vfio_pci {
    struct pci_device pci;
    struct vfio_host_device host;
    struct pci_msix msix;
    struct pci_msi msi;
    bool has_msix, has_msi; /* the one offered: MSI-X if the device has it */
    struct vfio_pci_bar bars[PCI_NUM_BARS];
    pthread_mutex_t lock; /* the vectors and wired */
    struct vfio_pci_vector *vectors;
    unsigned nvectors;
    unsigned wired; /* how many eventfds VFIO has (0: interrupts off) */
    bool warned;
    char name[32];
};

/* Builds the function from an open host device (taken over, also on
 * failure) and plugs it into host. KVMC_ENOTSUP for a bridge or a device
 * with neither MSI-X nor MSI, KVMC_EIO if its config space cannot be read. */
int vfio_pci_create(struct pci_host *host, struct vfio_host_device *hd, struct vfio_pci **out);
void vfio_pci_destroy(struct vfio_pci *v);

#endif
