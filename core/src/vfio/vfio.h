/* The host side of VFIO passthrough: finding a PCI device in sysfs,
 * opening its IOMMU group into the VM's container (the type-1 v2 IOMMU),
 * mapping all guest RAM for the device's DMA, and the device's regions
 * and interrupts as the kernel describes them.
 *
 * Why the container/group API and not iommufd: the hosts kvmc runs on today
 * (Debian 12, kernel 6.1) have no iommufd; the group API is in every kernel
 * with VFIO. The whole of it is this file.
 *
 * DMA: every RAM region is mapped once, at IOVA = guest physical address,
 * when the first group joins the container, before any vCPU runs. Nothing
 * the guest does maps or unmaps anything: a device can reach guest RAM and
 * nothing else (the IOMMU refuses the rest). The mapping pins guest RAM.
 *
 * Threads: open and close on the creating thread; a device's fd may be
 * read and written (pread/pwrite at region offsets) from any thread. */
#ifndef KVMC_VFIO_H
#define KVMC_VFIO_H

#include <stdbool.h>
#include <stdint.h>

#include "kvmc/kvmc.h"

struct guest_memory;

#define VFIO_BDF_LEN 13 /* "0000:00:03.0" and its NUL */
#define VFIO_REGIONS 9  /* BAR0-5, ROM, config, VGA (VFIO_PCI_NUM_REGIONS) */
#define VFIO_REGION_CONFIG 7

struct vfio_region {
    uint64_t offset; /* in the device fd */
    uint64_t size;
    uint32_t flags;  /* VFIO_REGION_INFO_FLAG_* */
};

struct vfio_host_device;

/* What the PCI model needs of a device beyond its fd; tests replace it. */
struct vfio_device_io {
    /* Wires MSI-X (msix true) or MSI vectors 0..count-1 to these
     * eventfds; count 0 turns them off at the device. */
    int (*set_irqs)(struct vfio_host_device *d, bool msix, const int *fds, unsigned count);
    /* A function-level reset, where the device has one. */
    int (*reset)(struct vfio_host_device *d);
};

struct vfio_host_device {
    char bdf[VFIO_BDF_LEN];
    int fd;
    struct vfio_region regions[VFIO_REGIONS];
    unsigned msix_count; /* MSI-X vectors VFIO offers */
    unsigned msi_count;  /* MSI vectors VFIO offers */
    bool can_reset;
    const struct vfio_device_io *io;
};

struct vfio_container {
    int fd; /* -1 until the first device */
    const struct guest_memory *mem;
    const char *sysfs;  /* "/sys"; tests point it at a fake tree */
    const char *devdir; /* "/dev/vfio" */
    struct {
        unsigned id;
        int fd;
    } groups[KVMC_MAX_VFIO_DEVICES];
    unsigned ngroups;
};

/* "0000:00:03.0" or "00:03.0" (domain 0) into the canonical form; false if
 * it is not a PCI address. */
bool vfio_parse_bdf(const char *text, char out[VFIO_BDF_LEN]);

/* Where the device is: KVMC_EINVAL (no such device, not bound to
 * vfio-pci) or KVMC_ENOTSUP (no IOMMU group: the host's IOMMU is off),
 * each naming the device and what to do. */
int vfio_locate(const char *sysfs, const char *bdf, unsigned *group);

void vfio_container_init(struct vfio_container *c, const struct guest_memory *mem,
                         const char *sysfs, const char *devdir);
/* Opens bdf's group into the container (the first one also sets the IOMMU
 * up and maps guest RAM) and the device: KVMC_EBUSY if another process has
 * the group, KVMC_EIO without permission, KVMC_EINVAL if the group is not
 * viable, KVMC_ENOMEM if RAM cannot be pinned. */
int vfio_device_open(struct vfio_container *c, const char *bdf, struct vfio_host_device *out);
void vfio_device_close(struct vfio_host_device *d);
/* Closing the groups and the container unmaps all DMA (the kernel does it
 * also when the process dies). */
void vfio_container_close(struct vfio_container *c);

#endif
