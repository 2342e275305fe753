/* A PCI function's configuration space and BARs (type 0 header), as the
 * root complex (host.c) presents it to the guest.
 *
 * The generic code owns the header: which bits the guest may write
 * (wmask), the command register, BAR sizing and placement, and the
 * capability list. When the guest turns memory or I/O decoding on, or
 * moves a BAR while decoding is on, the BAR is put on (or moved on, or
 * taken off) the VM's bus; a BAR the guest placed over another device, or
 * wrapping, stays off the bus. A device adds what is its own through
 * pci_device_ops: capabilities' registers, and word of where its BARs are
 * (to move ioeventfds along).
 *
 * Threads: config space accesses are serialised by the host's lock; BAR
 * accesses reach the device's bus_ops directly, on vCPU threads. */
#ifndef KVMC_PCI_H
#define KVMC_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "../bus.h"

struct vm_services;
struct pci_device;
struct pci_msix;

#define PCI_CFG_SIZE 256
#define PCI_NUM_BARS 6

/* Header registers */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_ROM_ADDRESS 0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_CAP_LIST 0x10

#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_VNDR 0x09

enum pci_bar_kind {
    PCI_BAR_UNUSED = 0,
    PCI_BAR_MEM32,
    PCI_BAR_MEM64, /* takes this BAR and the next */
    PCI_BAR_IO,
    PCI_BAR_MEM64_HIGH, /* the upper half of the BAR before */
};

struct pci_bar {
    enum pci_bar_kind kind;
    bool prefetchable;
    uint64_t size;            /* a power of two; memory >= 16, I/O >= 4 */
    struct bus_ops ops;       /* accesses, offset from the BAR's start */
    void *opaque;
    const char *name;         /* static, for the bus */
    /* Placement, kept by the generic code. */
    bool mapped;              /* on the bus at `at` */
    uint64_t at;
    bool refused;             /* a placement the bus refused was reported */
};

struct pci_device_ops {
    /* Optional: a config write within [offset, offset+size), after the
     * generic code stored the writable bits and acted on what it owns (the
     * command register, BARs, MSI-X): for capabilities' registers, and for
     * a device that mirrors the command register (VFIO). */
    void (*config_written)(struct pci_device *d, unsigned offset, unsigned size);
    /* Optional: a config read is about to return these bytes (for
     * registers that reflect device state). */
    void (*config_reading)(struct pci_device *d, unsigned offset, unsigned size);
    /* Optional: BAR i went on the bus at `at`, or off it (mapped false). */
    void (*bar_moved)(struct pci_device *d, unsigned bar, bool mapped, uint64_t at);
};

struct pci_device {
    uint8_t cfg[PCI_CFG_SIZE];
    uint8_t wmask[PCI_CFG_SIZE];   /* bits the guest may change */
    struct pci_bar bars[PCI_NUM_BARS];
    uint8_t last_cap;              /* offset of the last capability, 0: none */
    uint8_t next_cap;              /* where the next capability goes */
    const struct pci_device_ops *ops;
    void *opaque;                  /* the device's own state */
    struct pci_msix *msix;         /* set by pci_msix_init */
    const struct vm_services *svc;
    const char *name;
    unsigned slot;                 /* device number on bus 0, set by the host */
};

/* A blank function: IDs, class (base << 16 | sub << 8 | prog-if), no BARs,
 * no capabilities. */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor,
                     uint16_t device, uint32_t class_code, uint8_t revision);
void pci_device_set_subsystem(struct pci_device *d, uint16_t vendor, uint16_t id);
/* Declares BAR i. KVMC_EINVAL for a size that is not a power of two (or
 * too small for its kind), a 64-bit BAR in slot 5, or a taken slot. */
int pci_device_add_bar(struct pci_device *d, unsigned i, enum pci_bar_kind kind,
                       bool prefetchable, uint64_t size, const struct bus_ops *ops,
                       void *opaque);
/* Appends a capability of len bytes (header included) to the list; returns
 * its offset, or 0 if the space is full. The caller fills it in and sets
 * its writable bits in wmask. */
unsigned pci_device_add_cap(struct pci_device *d, uint8_t id, unsigned len);

/* A BAR's address as the guest programmed it. */
uint64_t pci_bar_address(const struct pci_device *d, unsigned i);
/* Sets BAR i's address in config space (the host's initial placement). */
void pci_bar_set_address(struct pci_device *d, unsigned i, uint64_t addr);

/* One config access (offset < PCI_CFG_SIZE, size 1, 2 or 4, not crossing
 * a dword). The host calls these with its lock held. */
uint32_t pci_config_read(struct pci_device *d, unsigned offset, unsigned size);
void pci_config_write(struct pci_device *d, unsigned offset, unsigned size, uint32_t value);
/* Takes every BAR off the bus (device teardown). */
void pci_device_unmap(struct pci_device *d);
/* Snapshots: config space as the guest left it. Restore takes only the
 * bits the guest may write (wmask), then places the BARs as the command
 * register says and lets MSI-X see its control word: every read-only
 * field (IDs, capabilities, BAR sizes) stays this device's. The caller
 * restores MSI-X's table first. */
void pci_device_save_config(const struct pci_device *d, uint8_t cfg[PCI_CFG_SIZE]);
void pci_device_restore_config(struct pci_device *d, const uint8_t cfg[PCI_CFG_SIZE]);

static inline uint16_t pci_cfg16(const struct pci_device *d, unsigned off)
{
    return (uint16_t)(d->cfg[off] | d->cfg[off + 1] << 8);
}
static inline uint32_t pci_cfg32(const struct pci_device *d, unsigned off)
{
    return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
           (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}
static inline void pci_set16(struct pci_device *d, unsigned off, uint16_t v)
{
    d->cfg[off] = (uint8_t)v;
    d->cfg[off + 1] = (uint8_t)(v >> 8);
}
static inline void pci_set32(struct pci_device *d, unsigned off, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        d->cfg[off + i] = (uint8_t)(v >> (8 * i));
}

#endif
