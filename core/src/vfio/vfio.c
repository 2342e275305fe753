#include "vfio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.h"
#include "../guest_memory.h"

bool vfio_parse_bdf(const char *text, char out[VFIO_BDF_LEN])
{
    unsigned domain = 0, bus, dev, fn;
    char tail;
    /* Hex digits and separators only: sscanf's %x would also take a sign,
     * "0x" or spaces. */
    if (!text || strspn(text, "0123456789abcdefABCDEF:.") != strlen(text))
        return false;
    bool full = sscanf(text, "%4x:%2x:%2x.%1x%c", &domain, &bus, &dev, &fn, &tail) == 4;
    if (!full && sscanf(text, "%2x:%2x.%1x%c", &bus, &dev, &fn, &tail) != 3)
        return false;
    size_t colons = 0;
    for (const char *p = text; *p; p++)
        colons += *p == ':';
    if (colons != (full ? 2u : 1u) || dev > 0x1f || fn > 7 || strlen(text) > 12)
        return false;
    snprintf(out, VFIO_BDF_LEN, "%04x:%02x:%02x.%x", domain, bus, dev, fn);
    return true;
}

/* The last path component a sysfs link points at, or "" if there is no
 * link. */
static void link_name(const char *path, char *out, size_t len)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    out[0] = 0;
    if (n <= 0)
        return;
    target[n] = 0;
    const char *slash = strrchr(target, '/'), *name = slash ? slash + 1 : target;
    size_t n_name = strlen(name);
    if (n_name >= len)
        return; /* no driver or group has a name that long */
    memcpy(out, name, n_name + 1);
}

int vfio_locate(const char *sysfs, const char *bdf, unsigned *group)
{
    char path[PATH_MAX], name[NAME_MAX + 1];
    struct stat st;
    snprintf(path, sizeof(path), "%s/bus/pci/devices/%s", sysfs, bdf);
    if (stat(path, &st) < 0)
        return kvmc_fail(KVMC_EINVAL, "VFIO device %s: no such PCI device on this host "
                         "(see lspci -D)", bdf);
    snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/driver", sysfs, bdf);
    link_name(path, name, sizeof(name));
    if (strcmp(name, "vfio-pci") != 0)
        return kvmc_fail(KVMC_EINVAL, "VFIO device %s is bound to %s, not vfio-pci: echo "
                         "vfio-pci > %s/bus/pci/devices/%s/driver_override, unbind it, then "
                         "echo %s > %s/bus/pci/drivers_probe", bdf,
                         name[0] ? name : "no driver", sysfs, bdf, bdf, sysfs);
    snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/iommu_group", sysfs, bdf);
    link_name(path, name, sizeof(name));
    char *end = NULL;
    unsigned long id = strtoul(name, &end, 10);
    if (!name[0] || *end || id > 1000000)
        return kvmc_fail(KVMC_ENOTSUP, "VFIO device %s has no IOMMU group: the host's IOMMU "
                         "is off (boot it with intel_iommu=on or amd_iommu=on)", bdf);
    *group = (unsigned)id;
    return KVMC_OK;
}

void vfio_container_init(struct vfio_container *c, const struct guest_memory *mem,
                         const char *sysfs, const char *devdir)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->mem = mem;
    c->sysfs = sysfs ? sysfs : "/sys";
    c->devdir = devdir ? devdir : "/dev/vfio";
}

static int open_container(struct vfio_container *c)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/vfio", c->devdir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return kvmc_fail_errno(errno == EACCES || errno == EPERM ? KVMC_EIO : KVMC_ENOTSUP,
                               errno, "VFIO: %s (is the vfio module loaded?)", path);
    if (ioctl(fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
        ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0) {
        close(fd);
        return kvmc_fail(KVMC_ENOTSUP, "VFIO: the host has no type-1 v2 IOMMU "
                                       "(vfio_iommu_type1)");
    }
    c->fd = fd;
    return KVMC_OK;
}

static int map_ram(struct vfio_container *c)
{
    for (unsigned i = 0; i < c->mem->nregions; i++) {
        const struct gm_region *r = &c->mem->regions[i];
        struct vfio_iommu_type1_dma_map map = {
            .argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            .vaddr = (uint64_t)(uintptr_t)r->host, .iova = r->gpa, .size = r->size,
        };
        if (ioctl(c->fd, VFIO_IOMMU_MAP_DMA, &map) < 0) {
            int e = errno;
            struct rlimit lim = {0};
            getrlimit(RLIMIT_MEMLOCK, &lim);
            if (e == ENOMEM)
                return kvmc_fail(KVMC_ENOMEM, "VFIO: cannot pin %llu MiB of guest RAM for DMA "
                                 "(locked-memory limit %llu KiB: raise it, ulimit -l)",
                                 (unsigned long long)(r->size >> 20),
                                 (unsigned long long)(lim.rlim_cur == RLIM_INFINITY
                                                          ? 0 : lim.rlim_cur >> 10));
            return kvmc_fail_errno(KVMC_EIO, e, "VFIO_IOMMU_MAP_DMA of guest RAM at 0x%llx",
                                   (unsigned long long)r->gpa);
        }
    }
    return KVMC_OK;
}

/* The group's fd, opened into the container if it is new. */
static int join_group(struct vfio_container *c, const char *bdf, unsigned id, int *out)
{
    for (unsigned i = 0; i < c->ngroups; i++)
        if (c->groups[i].id == id) {
            *out = c->groups[i].fd;
            return KVMC_OK;
        }
    if (c->ngroups == KVMC_MAX_VFIO_DEVICES)
        return kvmc_fail(KVMC_EINVAL, "VFIO: more than %u IOMMU groups", KVMC_MAX_VFIO_DEVICES);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%u", c->devdir, id);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == EBUSY)
            return kvmc_fail(KVMC_EBUSY, "VFIO device %s: IOMMU group %u (%s) is in use by "
                             "another process (another VM has the device)", bdf, id, path);
        if (e == EACCES || e == EPERM)
            return kvmc_fail(KVMC_EIO, "VFIO device %s: no permission to open %s: run kvmc "
                             "as root, or give its user that file (chown, or a udev rule)",
                             bdf, path);
        return kvmc_fail_errno(KVMC_EINVAL, e, "VFIO device %s: %s", bdf, path);
    }
    struct vfio_group_status status = {.argsz = sizeof(status)};
    int err = KVMC_OK;
    if (ioctl(fd, VFIO_GROUP_GET_STATUS, &status) < 0)
        err = kvmc_fail_errno(KVMC_EIO, errno, "VFIO device %s: group %u status", bdf, id);
    else if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
        err = kvmc_fail(KVMC_EINVAL, "VFIO device %s: IOMMU group %u is not viable: every "
                        "device in it must be bound to vfio-pci (see %s/kernel/iommu_groups/"
                        "%u/devices)", bdf, id, c->sysfs, id);
    else if (ioctl(fd, VFIO_GROUP_SET_CONTAINER, &c->fd) < 0)
        err = kvmc_fail_errno(KVMC_EIO, errno, "VFIO device %s: group %u into the container",
                              bdf, id);
    else if (c->ngroups == 0 && ioctl(c->fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
        err = kvmc_fail_errno(KVMC_ENOTSUP, errno, "VFIO: setting the type-1 v2 IOMMU");
    else if (c->ngroups == 0)
        err = map_ram(c);
    if (err) {
        close(fd);
        return err;
    }
    c->groups[c->ngroups].id = id;
    c->groups[c->ngroups].fd = fd;
    c->ngroups++;
    *out = fd;
    return KVMC_OK;
}

static int set_irqs(struct vfio_host_device *d, bool msix, const int *fds, unsigned count)
{
    size_t len = sizeof(struct vfio_irq_set) + sizeof(int32_t) * count;
    struct vfio_irq_set *set = calloc(1, len);
    if (!set)
        return kvmc_fail(KVMC_ENOMEM, "VFIO_DEVICE_SET_IRQS");
    set->argsz = (uint32_t)len;
    set->flags = VFIO_IRQ_SET_ACTION_TRIGGER |
                 (count ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE);
    set->index = msix ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX;
    set->count = count;
    memcpy(set->data, fds, sizeof(int32_t) * count);
    int rc = ioctl(d->fd, VFIO_DEVICE_SET_IRQS, set);
    int e = errno;
    free(set);
    if (rc < 0)
        return kvmc_fail_errno(KVMC_EIO, e, "VFIO device %s: %s %s (%u vectors)", d->bdf,
                               count ? "enabling" : "disabling", msix ? "MSI-X" : "MSI",
                               count);
    return KVMC_OK;
}

static int reset(struct vfio_host_device *d)
{
    if (!d->can_reset)
        return KVMC_ENOTSUP;
    return ioctl(d->fd, VFIO_DEVICE_RESET) < 0
               ? kvmc_fail_errno(KVMC_EIO, errno, "VFIO device %s: reset", d->bdf)
               : KVMC_OK;
}

static const struct vfio_device_io kernel_io = {.set_irqs = set_irqs, .reset = reset};

static int describe(struct vfio_host_device *d)
{
    struct vfio_device_info info = {.argsz = sizeof(info)};
    if (ioctl(d->fd, VFIO_DEVICE_GET_INFO, &info) < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "VFIO device %s: device info", d->bdf);
    if (!(info.flags & VFIO_DEVICE_FLAGS_PCI) || info.num_regions <= VFIO_REGION_CONFIG)
        return kvmc_fail(KVMC_ENOTSUP, "VFIO device %s is not a PCI device", d->bdf);
    d->can_reset = info.flags & VFIO_DEVICE_FLAGS_RESET;
    for (unsigned i = 0; i < VFIO_REGIONS && i < info.num_regions; i++) {
        struct vfio_region_info r = {.argsz = sizeof(r), .index = i};
        if (ioctl(d->fd, VFIO_DEVICE_GET_REGION_INFO, &r) < 0)
            continue; /* VGA on most devices */
        d->regions[i] = (struct vfio_region){.offset = r.offset, .size = r.size,
                                             .flags = r.flags};
    }
    struct vfio_irq_info irq = {.argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX};
    if (ioctl(d->fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) == 0 &&
        (irq.flags & VFIO_IRQ_INFO_EVENTFD))
        d->msix_count = irq.count;
    irq = (struct vfio_irq_info){.argsz = sizeof(irq), .index = VFIO_PCI_MSI_IRQ_INDEX};
    if (ioctl(d->fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) == 0 &&
        (irq.flags & VFIO_IRQ_INFO_EVENTFD))
        d->msi_count = irq.count;
    return KVMC_OK;
}

int vfio_device_open(struct vfio_container *c, const char *bdf, struct vfio_host_device *out)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    out->io = &kernel_io;
    snprintf(out->bdf, sizeof(out->bdf), "%s", bdf);
    unsigned id;
    int group_fd;
    int err = vfio_locate(c->sysfs, bdf, &id);
    if (!err && c->fd < 0)
        err = open_container(c);
    if (!err)
        err = join_group(c, bdf, id, &group_fd);
    if (err)
        return err;
    out->fd = ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (out->fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "VFIO device %s: opening it in group %u", bdf,
                               id);
    fcntl(out->fd, F_SETFD, FD_CLOEXEC);
    err = describe(out);
    if (!err && out->can_reset)
        out->io->reset(out); /* start from a clean device; not all devices can */
    return err;
}

void vfio_device_close(struct vfio_host_device *d)
{
    if (d->fd < 0)
        return;
    if (d->io == &kernel_io && d->can_reset)
        d->io->reset(d);
    close(d->fd);
    d->fd = -1;
}

void vfio_container_close(struct vfio_container *c)
{
    for (unsigned i = 0; i < c->ngroups; i++)
        close(c->groups[i].fd);
    c->ngroups = 0;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}
