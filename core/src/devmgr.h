/* The device manager: creates a VM's devices from its configuration, hands
 * each one its addresses, interrupt line and transport, starts and destroys
 * them, and describes them for the firmware tables (ACPI), which are built
 * from what was actually attached.
 *
 * Devices register by type in devices/devices.def, one line each:
 *   PLATFORM_DEVICE(i8042)   a device on fixed ports (devices/i8042.c
 *                            defines `const struct platform_device_type
 *                            i8042_device`)
 *   VIRTIO_DEVICE(virtio_rng) a virtio device (`const struct
 *                            virtio_device_type virtio_rng_device`), put
 *                            on a virtio-mmio window with a GSI of its own
 * The order there is the order of creation, of the virtio windows and of
 * the ACPI devices: it is part of what a guest sees, so new types go last.
 * Virtio devices go on virtio-mmio or, with KVMC_VIRTIO_PCI, on the PCI
 * root complex every VM has, which also takes the PCI devices programs add
 * (kvmc_vm_add_pci_device).
 *
 * Threads: create/start/destroy run on the thread creating or destroying
 * the VM. */
#ifndef KVMC_DEVMGR_H
#define KVMC_DEVMGR_H

#include <stdbool.h>
#include <stdint.h>

#include "boot/boot.h"
#include "kvmc/kvmc.h"
#include "pci/host.h"
#include "vfio/vfio.h"

struct vfio_pci;

struct vm_services;
struct virtio_mmio;
struct virtio_pci;
struct virtio_device_type;
struct pci_user_device;
struct snapshot_writer; /* issue 18: device state save/restore */
struct snapshot_reader;

struct platform_device_type {
    const char *name;
    /* Creates the device if cfg wants it and puts it on svc's buses. *state
     * receives the instance passed to the other hooks (may stay NULL). */
    int (*create)(const struct vm_services *svc, const kvmc_config *cfg, void **state);
    /* Optional: starts the device's own threads as the VM starts; they
     * confine themselves with seccomp when `seccomp` is set. */
    int (*start)(void *state, bool seccomp);
    /* Optional: back to power-on state, the vCPUs stopped (fast reset). */
    void (*reset)(void *state);
    /* Optional, filled in with snapshots: the device's guest-visible state. */
    int (*save)(void *state, struct snapshot_writer *w);
    int (*restore)(void *state, struct snapshot_reader *r);
    void (*destroy)(void *state);
};

#define DEVMGR_MAX_PLATFORM 16

struct devmgr_platform {
    const struct platform_device_type *type;
    void *state;
};

struct devmgr_virtio {
    const struct virtio_device_type *type;
    struct virtio_mmio *mmio;      /* one of these two */
    struct virtio_pci *pci;
    struct mmio_device_desc desc;  /* mmio only */
};

struct devmgr {
    const struct vm_services *svc;
    struct devmgr_platform platform[DEVMGR_MAX_PLATFORM];
    unsigned nplatform;
    struct devmgr_virtio virtio[KVMC_MAX_VIRTIO_DEVICES];
    unsigned nvirtio;
    uint64_t next_mmio; /* virtio-mmio windows */
    unsigned next_gsi;
    struct pci_host pci;
    struct pci_user_device *user_pci[PCI_MAX_DEVICES];
    unsigned nuser_pci;
    struct vfio_container vfio;  /* valid once vfio_ready */
    bool vfio_ready;
    struct vfio_pci *vfio_dev[KVMC_MAX_VFIO_DEVICES];
    unsigned nvfio;
};

/* Creates every device cfg asks for. On failure the devices created so far
 * stay, for devmgr_destroy. */
int devmgr_create(struct devmgr *m, const struct vm_services *svc, const kvmc_config *cfg);
int devmgr_start(struct devmgr *m, bool seccomp);
void devmgr_destroy(struct devmgr *m);

/* The virtio-mmio devices attached, for the DSDT: returns how many. */
unsigned devmgr_describe_virtio(const struct devmgr *m, struct mmio_device_desc *out,
                                unsigned max);
void devmgr_describe_pci(const struct devmgr *m, struct pci_host_desc *out);

/* A PCI device from the public API (before the VM starts). */
int devmgr_add_pci_device(struct devmgr *m, const kvmc_pci_device *info, void *opaque,
                          unsigned *slot);
/* Any thread, once the VM exists. */
int devmgr_pci_msix_notify(struct devmgr *m, unsigned slot, unsigned vector);
/* The state of the first virtio device of this type, or NULL. */
void *devmgr_virtio_impl(const struct devmgr *m, const struct virtio_device_type *type);
/* The state of the platform device of this type, or NULL. */
void *devmgr_platform_impl(const struct devmgr *m, const struct platform_device_type *type);

/* How many virtio devices cfg asks for (the configuration setters check
 * KVMC_MAX_VIRTIO_DEVICES with it). */
unsigned devmgr_virtio_count(const kvmc_config *cfg);

#endif
