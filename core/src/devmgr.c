#include "devmgr.h"

#include <string.h>

#include "config.h"
#include "error.h"
#include "guest_memory.h"
#include "pci/user_device.h"
#include "services.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"
#include "vfio/vfio_pci.h"
#include "virtio/virtio_pci.h"
#include "x86/layout.h"

#define PLATFORM_DEVICE(n) extern const struct platform_device_type n##_device;
#define VIRTIO_DEVICE(n) extern const struct virtio_device_type n##_device;
#include "devices/devices.def"
#undef PLATFORM_DEVICE
#undef VIRTIO_DEVICE

static const struct platform_device_type *const platform_types[] = {
#define PLATFORM_DEVICE(n) &n##_device,
#define VIRTIO_DEVICE(n)
#include "devices/devices.def"
#undef PLATFORM_DEVICE
#undef VIRTIO_DEVICE
};

static const struct virtio_device_type *const virtio_types[] = {
#define PLATFORM_DEVICE(n)
#define VIRTIO_DEVICE(n) &n##_device,
#include "devices/devices.def"
#undef PLATFORM_DEVICE
#undef VIRTIO_DEVICE
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
_Static_assert(COUNT(platform_types) <= DEVMGR_MAX_PLATFORM, "raise DEVMGR_MAX_PLATFORM");
/* virtio-mmio devices each get an I/O APIC pin of their own from 16 up. */
_Static_assert(LAYOUT_VIRTIO_GSI + KVMC_MAX_VIRTIO_DEVICES <= 24,
               "virtio GSIs must fit the I/O APIC's 24 pins");

unsigned devmgr_virtio_count(const kvmc_config *cfg)
{
    unsigned n = 0;
    for (unsigned t = 0; t < COUNT(virtio_types); t++)
        n += virtio_types[t]->count(cfg);
    return n;
}

static int create_platform(struct devmgr *m, const kvmc_config *cfg)
{
    for (unsigned t = 0; t < COUNT(platform_types); t++) {
        struct devmgr_platform *p = &m->platform[m->nplatform];
        p->type = platform_types[t];
        p->state = NULL;
        int err = p->type->create(m->svc, cfg, &p->state);
        if (err)
            return err;
        m->nplatform++;
    }
    return KVMC_OK;
}

/* The next virtio-mmio window and its interrupt line. */
static int alloc_virtio_slot(struct devmgr *m, const char *name, struct mmio_device_desc *d)
{
    if (m->nvirtio == KVMC_MAX_VIRTIO_DEVICES)
        return kvmc_fail(KVMC_EINVAL, "%s: at most %u virtio devices", name,
                         KVMC_MAX_VIRTIO_DEVICES);
    *d = (struct mmio_device_desc){.base = m->next_mmio,
                                   .size = (uint32_t)LAYOUT_VIRTIO_MMIO_STRIDE,
                                   .gsi = m->next_gsi};
    m->next_mmio += LAYOUT_VIRTIO_MMIO_STRIDE;
    m->next_gsi++;
    return KVMC_OK;
}

static int create_virtio(struct devmgr *m, const kvmc_config *cfg)
{
    for (unsigned t = 0; t < COUNT(virtio_types); t++) {
        const struct virtio_device_type *type = virtio_types[t];
        unsigned n = type->count(cfg);
        for (unsigned i = 0; i < n; i++) {
            struct devmgr_virtio *v = &m->virtio[m->nvirtio];
            const struct virtio_device_ops *ops = NULL;
            void *impl = NULL;
            bool pci = cfg->transport == KVMC_VIRTIO_PCI;
            int err = pci ? (m->nvirtio == KVMC_MAX_VIRTIO_DEVICES
                                 ? kvmc_fail(KVMC_EINVAL, "%s: at most %u virtio devices",
                                             type->name, KVMC_MAX_VIRTIO_DEVICES)
                                 : KVMC_OK)
                          : alloc_virtio_slot(m, type->name, &v->desc);
            if (!err)
                err = type->open(cfg, i, &ops, &impl);
            /* The transport takes the device over, failing or not. */
            if (!err && pci)
                err = virtio_pci_create(m->svc, &m->pci, ops, impl, &v->pci);
            else if (!err)
                err = virtio_mmio_create(m->svc, v->desc.base, v->desc.gsi, ops, impl,
                                         &v->mmio);
            if (err)
                return err;
            v->type = type;
            m->nvirtio++;
        }
    }
    return KVMC_OK;
}

/* Passed-through devices last: their BARs go after the emulated ones', and
 * a device that cannot be had stops the VM before anything runs. */
static int create_vfio(struct devmgr *m, const kvmc_config *cfg)
{
    vfio_container_init(&m->vfio, m->svc->mem, NULL, NULL);
    m->vfio_ready = true;
    for (unsigned i = 0; i < cfg->nvfio; i++) {
        struct vfio_host_device hd;
        int err = vfio_device_open(&m->vfio, cfg->vfio[i], &hd);
        if (!err)
            err = vfio_pci_create(&m->pci, &hd, &m->vfio_dev[m->nvfio]);
        else
            vfio_device_close(&hd);
        if (err)
            return err;
        m->nvfio++;
    }
    return KVMC_OK;
}

int devmgr_create(struct devmgr *m, const struct vm_services *svc, const kvmc_config *cfg)
{
    memset(m, 0, sizeof(*m));
    m->svc = svc;
    m->next_mmio = LAYOUT_VIRTIO_MMIO;
    m->next_gsi = LAYOUT_VIRTIO_GSI;
    uint64_t ram_top = 0;
    for (unsigned i = 0; i < svc->mem->nregions; i++)
        if (svc->mem->regions[i].gpa + svc->mem->regions[i].size > ram_top)
            ram_top = svc->mem->regions[i].gpa + svc->mem->regions[i].size;
    int err = create_platform(m, cfg);
    if (!err)
        err = pci_host_create(&m->pci, svc, ram_top);
    if (!err)
        err = create_virtio(m, cfg);
    return err ? err : create_vfio(m, cfg);
}

int devmgr_start(struct devmgr *m, bool seccomp)
{
    for (unsigned i = 0; i < m->nplatform; i++) {
        const struct devmgr_platform *p = &m->platform[i];
        int err = p->type->start ? p->type->start(p->state, seccomp) : KVMC_OK;
        if (err)
            return err;
    }
    return KVMC_OK;
}

void devmgr_destroy(struct devmgr *m)
{
    pci_host_destroy(&m->pci); /* every BAR off the bus first */
    for (unsigned i = m->nvfio; i-- > 0;)
        vfio_pci_destroy(m->vfio_dev[i]);
    if (m->vfio_ready)
        vfio_container_close(&m->vfio); /* unmaps the DMA of guest RAM */
    m->vfio_ready = false;
    m->nvfio = 0;
    for (unsigned i = m->nuser_pci; i-- > 0;)
        pci_user_device_destroy(m->user_pci[i]);
    for (unsigned i = m->nvirtio; i-- > 0;) {
        virtio_mmio_destroy(m->virtio[i].mmio);
        virtio_pci_destroy(m->virtio[i].pci);
    }
    for (unsigned i = m->nplatform; i-- > 0;)
        if (m->platform[i].type->destroy)
            m->platform[i].type->destroy(m->platform[i].state);
    m->nvirtio = m->nplatform = m->nuser_pci = 0;
}

unsigned devmgr_describe_virtio(const struct devmgr *m, struct mmio_device_desc *out,
                                unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < m->nvirtio && n < max; i++)
        if (m->virtio[i].mmio)
            out[n++] = m->virtio[i].desc;
    return n;
}

void devmgr_describe_pci(const struct devmgr *m, struct pci_host_desc *out)
{
    pci_host_describe(&m->pci, out);
}

void *devmgr_virtio_impl(const struct devmgr *m, const struct virtio_device_type *type)
{
    for (unsigned i = 0; i < m->nvirtio; i++)
        if (m->virtio[i].type == type)
            return m->virtio[i].mmio ? m->virtio[i].mmio->dev.impl : m->virtio[i].pci->dev.impl;
    return NULL;
}

void *devmgr_platform_impl(const struct devmgr *m, const struct platform_device_type *type)
{
    for (unsigned i = 0; i < m->nplatform; i++)
        if (m->platform[i].type == type)
            return m->platform[i].state;
    return NULL;
}

int devmgr_add_pci_device(struct devmgr *m, const kvmc_pci_device *info, void *opaque,
                          unsigned *slot)
{
    if (m->nuser_pci == PCI_MAX_DEVICES)
        return kvmc_fail(KVMC_EBUSY, "PCI bus 0 is full");
    struct pci_user_device *u = NULL;
    int err = pci_user_device_create(&m->pci, info, opaque, &u);
    if (err)
        return err;
    m->user_pci[m->nuser_pci++] = u;
    if (slot)
        *slot = u->pci.slot;
    return KVMC_OK;
}

int devmgr_pci_msix_notify(struct devmgr *m, unsigned slot, unsigned vector)
{
    for (unsigned i = 0; i < m->nuser_pci; i++)
        if (m->user_pci[i]->pci.slot == slot)
            return pci_user_device_notify(m->user_pci[i], vector);
    return kvmc_fail(KVMC_EINVAL, "no PCI device added through kvmc_vm_add_pci_device in "
                                  "slot %u", slot);
}
