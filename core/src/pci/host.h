/* The PCI root complex: one PCIe host bridge (00:00.0) and bus 0 with up
 * to 31 more devices, reached through ECAM (MMCONFIG, at LAYOUT_PCI_ECAM,
 * described by the MCFG table) and the legacy 0xcf8/0xcfc ports. Config
 * reads of anything that does not exist (another bus, function or slot)
 * return all ones and writes vanish, as on hardware.
 *
 * BAR windows: 32-bit memory [LAYOUT_PCI_MMIO32, LAYOUT_PCI_MMIO32_END),
 * 64-bit memory above RAM (LAYOUT_PCI_MMIO64_SIZE), I/O [LAYOUT_PCI_IO,
 * 0x10000). A device's BARs are placed in them when it is plugged in, with
 * decoding off; the guest turns it on (and may move them anywhere).
 *
 * Threads: config accesses from any vCPU are serialised by `lock`. */
#ifndef KVMC_PCI_HOST_H
#define KVMC_PCI_HOST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../boot/boot.h"
#include "pci.h"

#define PCI_MAX_DEVICES 32

struct vm_services;

struct pci_host {
    const struct vm_services *svc;
    pthread_mutex_t lock;
    uint32_t config_address;  /* 0xcf8 */
    struct pci_device bridge; /* 00:00.0 */
    struct pci_device *slots[PCI_MAX_DEVICES];
    uint64_t mmio32_next, mmio64_base, mmio64_next;
    uint32_t io_next;
    bool created;
};

/* Puts the ECAM window and the config ports on svc's buses. ram_top: the
 * end of guest RAM (the 64-bit window starts above it). */
int pci_host_create(struct pci_host *h, const struct vm_services *svc, uint64_t ram_top);
/* Unplugs every device's BARs; the devices are their owners'. */
void pci_host_destroy(struct pci_host *h);

/* Plugs d into the first free slot and places its BARs: KVMC_EBUSY when
 * the bus or a window is full. d->svc is set. */
int pci_host_add(struct pci_host *h, struct pci_device *d);
/* Takes d off the bus (its BARs, its slot) before its owner frees it. */
void pci_host_unplug(struct pci_host *h, struct pci_device *d);
struct pci_device *pci_host_device(struct pci_host *h, unsigned slot);

void pci_host_describe(const struct pci_host *h, struct pci_host_desc *out);

/* One config access by bus/device/function/register: what ECAM and the
 * ports both come to (exposed for tests and fuzzers). size 1, 2 or 4. */
uint32_t pci_host_config_read(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
                              unsigned reg, unsigned size);
void pci_host_config_write(struct pci_host *h, unsigned bus, unsigned dev, unsigned fn,
                           unsigned reg, unsigned size, uint32_t value);

#endif
