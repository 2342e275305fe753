/* virtio-pci (modern, virtio 1.x only) transport: a PCI function on the
 * VM's root complex with the virtio capabilities (common, notify, ISR,
 * device and PCI-config-access windows) in a 64-bit memory BAR, and MSI-X
 * with one vector for configuration changes and one per queue.
 *
 * BAR 0 (16 KiB):  0x0000 common configuration
 *                  0x1000 ISR status (read to clear)
 *                  0x2000 device configuration
 *                  0x3000 notifications, 4 bytes per queue
 * BAR 2:           the MSI-X table and pending bits
 *
 * Queue notifications are ioeventfds at the BAR's current address, moved
 * when the guest moves the BAR and dropped while decoding is off. There is
 * no INTx: a driver that does not enable MSI-X gets no interrupts (Linux
 * enables it). */
#ifndef KVMC_VIRTIO_PCI_H
#define KVMC_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "../pci/msix.h"
#include "../pci/pci.h"
#include "virtio.h"

struct pci_host;
struct vm_services;

#define VIRTIO_PCI_BAR_SIZE 0x4000
#define VIRTIO_PCI_COMMON 0x0000
#define VIRTIO_PCI_ISR 0x1000
#define VIRTIO_PCI_DEVICE 0x2000
#define VIRTIO_PCI_NOTIFY 0x3000
#define VIRTIO_PCI_NOTIFY_MULTIPLIER 4
#define VIRTIO_PCI_NO_VECTOR 0xffff

struct virtio_pci;
struct virtio_pci_notify {
    struct virtio_pci *self;
    unsigned qi;
};

struct virtio_pci {
    struct virtio_dev dev;
    struct pci_device pci;
    struct pci_msix msix;
    const struct vm_services *svc;
    uint32_t device_features_sel, driver_features_sel;
    uint16_t queue_sel;
    uint16_t config_vector;
    uint16_t queue_vector[VIRTIO_MAX_QUEUES];
    int notify_fd[VIRTIO_MAX_QUEUES];
    bool notify_assigned;        /* ioeventfds registered at notify_at */
    uint64_t notify_at;
    unsigned cfg_cap;            /* the PCI configuration access capability */
    struct virtio_pci_notify notify_ctx[VIRTIO_MAX_QUEUES];
};

/* Creates the device's PCI function and plugs it into host: BARs, MSI-X,
 * queue notifications on svc's I/O thread. Takes over the device (its
 * ops->destroy runs on failure too). */
int virtio_pci_create(const struct vm_services *svc, struct pci_host *host,
                      const struct virtio_device_ops *ops, void *impl,
                      struct virtio_pci **out);
void virtio_pci_destroy(struct virtio_pci *p);

/* Snapshots: the transport's registers, every MSI-X vector choice, the
 * function's config space and MSI-X table, then the device (virtio_dev_save
 * and its own hooks). Restore puts the BARs back where the guest had them
 * (with their ioeventfds); the caller holds the I/O thread, as for
 * virtio-mmio. Kick: each ready queue is looked at once after. */
struct snapshot_writer;
struct snapshot_reader;
int virtio_pci_save(struct virtio_pci *p, struct snapshot_writer *w);
int virtio_pci_restore(struct virtio_pci *p, struct snapshot_reader *r);
void virtio_pci_kick(struct virtio_pci *p);

#endif
