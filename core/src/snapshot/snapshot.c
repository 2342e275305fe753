/* A whole VM to a snapshot directory and back; see snapshot.h. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../devices/ioapic.h"
#include "../error.h"
#include "../virtio/mmio.h"
#include "../virtio/virtio_pci.h"
#include "../virtio/virtio.h"
#include "../vm.h"

#define META_VERSION 1u
#define MAX_STATE_FILE (256u << 20)
#define PAGE 4096u

/* The CPUID leaves whose feature bits the guest may rely on. */
static const uint32_t feature_leaves[SNAPSHOT_CPUID_LEAVES] = {0x1, 0x7, 0x80000001};

/* ---------------------------------------------------------------- parse */

static int bad(const char *what)
{
    return kvmc_fail(KVMC_EFORMAT, "snapshot state: %s", what);
}

static int parse_meta(struct snapshot_reader *r, struct snapshot_image *img)
{
    uint32_t version, irq;
    if (snapshot_get_u32(r, &version) || snapshot_get_u64(r, &img->ram_size) ||
        snapshot_get_u32(r, &img->ncpus) || snapshot_get_u32(r, &irq))
        return KVMC_EFORMAT;
    if (version != META_VERSION)
        return bad("unknown VM description version");
    if (img->ram_size < KVMC_MIN_MEMORY || img->ram_size % (1u << 20) ||
        img->ram_size > (1ull << 40))
        return bad("RAM size out of range");
    if (img->ncpus == 0 || img->ncpus > SNAPSHOT_MAX_CPUS)
        return bad("vCPU count out of range");
    if (irq > 1)
        return bad("unknown interrupt controller");
    img->kernel_irqchip = irq;
    img->vcpus = calloc(img->ncpus, sizeof(*img->vcpus));
    return img->vcpus ? KVMC_OK : kvmc_fail(KVMC_ENOMEM, "snapshot: vCPU states");
}

static int parse_cpuid(struct snapshot_reader *r, struct snapshot_image *img)
{
    for (unsigned i = 0; i < SNAPSHOT_CPUID_LEAVES; i++) {
        struct snapshot_cpuid *c = &img->cpuid[i];
        if (snapshot_get_u32(r, &c->function) || snapshot_get_u32(r, &c->index) ||
            snapshot_get_u32(r, &c->eax) || snapshot_get_u32(r, &c->ebx) ||
            snapshot_get_u32(r, &c->ecx) || snapshot_get_u32(r, &c->edx))
            return KVMC_EFORMAT;
        if (c->function != feature_leaves[i] || c->index != 0)
            return bad("CPUID leaves out of order");
    }
    return KVMC_OK;
}

static int parse_vcpu(struct snapshot_reader *r, struct snapshot_image *img, unsigned seen)
{
    uint32_t index;
    if (snapshot_get_u32(r, &index))
        return KVMC_EFORMAT;
    if (index != seen || index >= img->ncpus)
        return bad("vCPU sections out of order or too many");
    struct vcpu_state *s = &img->vcpus[index];
    if (snapshot_get(r, s, sizeof(*s)))
        return KVMC_EFORMAT;
    if (s->nmsrs > VCPU_STATE_MAX_MSRS)
        return bad("a vCPU with more MSRs than kvmc saves");
    return KVMC_OK;
}

/* A PDEV or VDEV section: a name, then the device's own bytes. */
static int parse_device(struct snapshot_reader *r, struct snapshot_device *list, unsigned *n)
{
    uint32_t len;
    if (*n == SNAPSHOT_MAX_DEVICES)
        return bad("too many devices");
    struct snapshot_device *d = &list[*n];
    if (snapshot_get_u32(r, &len))
        return KVMC_EFORMAT;
    if (len == 0 || len >= sizeof(d->name))
        return bad("a device name of bad length");
    if (snapshot_get(r, d->name, len))
        return KVMC_EFORMAT;
    d->name[len] = 0;
    for (unsigned i = 0; i < len; i++)
        if (d->name[i] < 0x21 || d->name[i] > 0x7e)
            return bad("a device name that is not printable");
    d->state = r->sec + r->sec_at;
    d->len = r->sec_len - r->sec_at;
    r->sec_at = r->sec_len;
    (*n)++;
    return KVMC_OK;
}

static int parse_kernel_irqchip(struct snapshot_reader *r, struct snapshot_image *img)
{
    for (unsigned i = 0; i < 3; i++) {
        if (snapshot_get(r, &img->chips[i], sizeof(img->chips[i])))
            return KVMC_EFORMAT;
        if (img->chips[i].chip_id != i)
            return bad("interrupt controller chips out of order");
    }
    return snapshot_get(r, &img->pit, sizeof(img->pit)) ? KVMC_EFORMAT : KVMC_OK;
}

static int parse_sections(struct snapshot_reader *r, struct snapshot_image *img)
{
    uint32_t tag;
    unsigned vcpus = 0;
    bool meta = false, cpuid = false, clock = false, irq = false;
    int more, err = KVMC_OK;
    while (!err && (more = snapshot_next(r, &tag)) == 1) {
        if (!meta && tag != SNAP_META)
            return bad("the VM description does not come first");
        switch (tag) {
        case SNAP_META:
            err = meta ? bad("two VM descriptions") : parse_meta(r, img);
            meta = true;
            break;
        case SNAP_CPUID:
            err = cpuid ? bad("two CPUID sections") : parse_cpuid(r, img);
            cpuid = true;
            break;
        case SNAP_CLOCK: {
            uint64_t ns;
            uint32_t flags;
            err = clock                                                      ? bad("two clocks")
                  : snapshot_get_u64(r, &ns) || snapshot_get_u32(r, &flags) ? KVMC_EFORMAT
                  : flags                                                    ? bad("clock flags")
                                                                             : KVMC_OK;
            img->clock.clock = ns;
            clock = true;
            break;
        }
        case SNAP_VCPU:
            err = parse_vcpu(r, img, vcpus++);
            break;
        case SNAP_IOAPIC:
        case SNAP_KERNEL_IRQCHIP:
            if (irq || (tag == SNAP_KERNEL_IRQCHIP) != img->kernel_irqchip)
                return bad("interrupt controller state missing, twice, or of the wrong kind");
            irq = true;
            img->irq = r->sec;
            img->irq_len = r->sec_len;
            if (tag == SNAP_KERNEL_IRQCHIP)
                err = parse_kernel_irqchip(r, img);
            else
                r->sec_at = r->sec_len; /* the I/O APIC model reads its own */
            break;
        case SNAP_DEVICE:
            err = parse_device(r, img->devices, &img->ndevices);
            break;
        case SNAP_VIRTIO:
            err = parse_device(r, img->virtio, &img->nvirtio);
            break;
        case SNAP_BASE:
            err = img->diff ? bad("two bases")
                            : diff_parse_base(r, img->ram_size, &img->base, &img->extents,
                                              &img->nextents);
            img->diff = true;
            break;
        default:
            return kvmc_fail(KVMC_EFORMAT, "snapshot state: unknown section 0x%08x", tag);
        }
        if (!err && !snapshot_section_done(r))
            return kvmc_fail(KVMC_EFORMAT, "snapshot state: section 0x%08x has %zu bytes "
                             "left over", tag, r->sec_len - r->sec_at);
    }
    if (err)
        return err;
    if (more < 0)
        return more;
    if (!meta || !cpuid || !clock || !irq)
        return bad("a VM description, CPUID, clock or interrupt controller is missing");
    if (vcpus != img->ncpus)
        return kvmc_fail(KVMC_EFORMAT, "snapshot state: %u vCPU states for %u vCPUs", vcpus,
                         img->ncpus);
    return KVMC_OK;
}

int snapshot_parse(const uint8_t *file, size_t len, struct snapshot_image *img)
{
    memset(img, 0, sizeof(*img));
    struct snapshot_reader r;
    int err = snapshot_open(&r, file, len);
    if (!err) {
        memcpy(img->written_by, r.written_by, sizeof(img->written_by));
        err = parse_sections(&r, img);
    }
    if (err)
        snapshot_image_free(img);
    return err;
}

void snapshot_image_free(struct snapshot_image *img)
{
    free(img->vcpus);
    img->vcpus = NULL;
}

/* ------------------------------------------------------ what can be saved */

/* A virtio device on either transport. */
static struct virtio_dev *virtio_of(const struct devmgr_virtio *v)
{
    return v->mmio ? &v->mmio->dev : &v->pci->dev;
}

static int virtio_save_one(const struct devmgr_virtio *v, struct snapshot_writer *w)
{
    return v->mmio ? virtio_mmio_save(v->mmio, w) : virtio_pci_save(v->pci, w);
}

static int virtio_restore_one(const struct devmgr_virtio *v, struct snapshot_reader *r)
{
    return v->mmio ? virtio_mmio_restore(v->mmio, r) : virtio_pci_restore(v->pci, r);
}

/* KVMC_ENOTSUP naming the first device whose state kvmc cannot save yet. */
static int check_savable(struct kvmc_vm *vm, const char *what)
{
    const struct devmgr *m = &vm->devices;
    for (unsigned i = 0; i < m->nvirtio; i++) {
        if (!virtio_of(&m->virtio[i])->ops->save)
            return kvmc_fail(KVMC_ENOTSUP, "%s: the VM has virtio devices (%s) whose state "
                             "kvmc cannot save yet", what, m->virtio[i].type->name);
    }
    if (m->nuser_pci || m->nvfio)
        return kvmc_fail(KVMC_ENOTSUP, "%s: the VM has PCI devices (%s), whose state kvmc "
                         "cannot save yet", what, m->nvfio ? "VFIO" : "from the program");
    if (vm->user_devices)
        return kvmc_fail(KVMC_ENOTSUP, "%s: the VM has %u devices added by the program "
                         "(kvmc_vm_add_pio_device/mmio_device), which have no save hooks",
                         what, vm->user_devices);
    for (unsigned i = 0; i < m->nplatform; i++)
        if (m->platform[i].state && !m->platform[i].type->save)
            return kvmc_fail(KVMC_ENOTSUP, "%s: device %s cannot be saved", what,
                             m->platform[i].type->name);
    return KVMC_OK;
}

static struct kvm_cpuid2 *vcpu_cpuid(int vcpu_fd)
{
    unsigned n = 256;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
    if (!c) {
        kvmc_fail(KVMC_ENOMEM, "CPUID table");
        return NULL;
    }
    c->nent = n;
    if (ioctl(vcpu_fd, KVM_GET_CPUID2, c) < 0) {
        kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_CPUID2");
        free(c);
        return NULL;
    }
    return c;
}

static void features_of(const struct kvm_cpuid2 *c, struct snapshot_cpuid out[])
{
    for (unsigned i = 0; i < SNAPSHOT_CPUID_LEAVES; i++) {
        out[i] = (struct snapshot_cpuid){.function = feature_leaves[i]};
        for (unsigned e = 0; e < c->nent; e++)
            if (c->entries[e].function == feature_leaves[i] && c->entries[e].index == 0) {
                out[i].eax = c->entries[e].eax;
                out[i].ebx = c->entries[e].ebx;
                out[i].ecx = c->entries[e].ecx;
                out[i].edx = c->entries[e].edx;
            }
    }
}

/* ------------------------------------------------------------------ save */

/* Writes len bytes at offset at (or appends, at < 0). */
static int write_all(int fd, const void *data, size_t len, off_t at, const char *path)
{
    const uint8_t *p = data;
    for (size_t done = 0; done < len;) {
        ssize_t n = at < 0 ? write(fd, p + done, len - done)
                           : pwrite(fd, p + done, len - done, at + (off_t)done);
        if (n <= 0)
            return kvmc_fail_errno(KVMC_EIO, n < 0 ? errno : ENOSPC, "snapshot: writing %s",
                                   path);
        done += (size_t)n;
    }
    return KVMC_OK;
}

/* The non-zero runs of RAM, for a full memory file whose zero pages stay
 * holes. */
static int nonzero_extents(const struct guest_memory *ram, struct snapshot_extent **out,
                           size_t *n)
{
    static const uint8_t zero[PAGE];
    const uint8_t *p = ram->mapping;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int err = KVMC_OK;
    for (size_t page = 0; !err && page < ram->mapping_size / PAGE; page++)
        if (memcmp(p + page * PAGE, zero, PAGE))
            err = diff_add_extent(out, n, &cap, page);
    if (err) {
        free(*out);
        *out = NULL;
    }
    return err;
}

/* Writes dir/name under a temporary name, then renames it: state bytes
 * (data, len), or RAM's extents at their offsets in a RAM-sized sparse
 * file (ram). */
static int write_file(const char *dir, const char *name, const void *data, size_t len,
                      const struct guest_memory *ram, const struct snapshot_extent *ext,
                      size_t n)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= (int)sizeof(tmp) ||
        snprintf(final, sizeof(final), "%s/%s", dir, name) >= (int)sizeof(final))
        return kvmc_fail(KVMC_EINVAL, "snapshot directory name too long: %s", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "snapshot: creating %s", tmp);
    int err = KVMC_OK;
    if (ram) {
        if (ftruncate(fd, (off_t)ram->mapping_size) < 0)
            err = kvmc_fail_errno(KVMC_EIO, errno, "snapshot: sizing %s", tmp);
        const uint8_t *p = ram->mapping;
        for (size_t i = 0; !err && i < n; i++)
            err = write_all(fd, p + ext[i].page * PAGE, ext[i].pages * PAGE,
                            (off_t)(ext[i].page * PAGE), tmp);
    } else {
        err = write_all(fd, data, len, -1, tmp);
    }
    if (!err && fsync(fd) < 0)
        err = kvmc_fail_errno(KVMC_EIO, errno, "snapshot: fsync of %s", tmp);
    close(fd);
    if (!err && rename(tmp, final) < 0)
        err = kvmc_fail_errno(KVMC_EIO, errno, "snapshot: renaming %s to %s", tmp, final);
    if (err)
        unlink(tmp);
    return err;
}

/* What vCPU 0 said of time: its TSC and where its kvm-clock page is. */
struct guest_time {
    uint64_t tsc, system_time_msr;
    bool have_tsc;
};

static int save_vcpus(struct kvmc_vm *vm, struct snapshot_writer *w, struct guest_time *t)
{
    uint32_t msrs[VCPU_STATE_MAX_MSRS];
    int n = vcpu_state_msr_list(vm->kvm_fd, msrs, VCPU_STATE_MAX_MSRS);
    if (n < 0)
        return n;
    struct vcpu_state *s = malloc(sizeof(*s));
    if (!s)
        return kvmc_fail(KVMC_ENOMEM, "snapshot: a vCPU's state");
    int err = KVMC_OK;
    for (unsigned i = 0; i < vm->ncpus && !err; i++) {
        memset(s, 0, sizeof(*s)); /* padding too: the file holds no stray bytes */
        err = vcpu_state_save(vm->vcpus[i].fd, msrs, (unsigned)n, s);
        for (uint32_t k = 0; !err && i == 0 && k < s->nmsrs; k++) {
            if (s->msrs[k].index == MSR_TSC) {
                t->tsc = s->msrs[k].data;
                t->have_tsc = true;
            } else if (s->msrs[k].index == MSR_KVM_SYSTEM_TIME_NEW) {
                t->system_time_msr = s->msrs[k].data;
            }
        }
        if (!err) {
            snapshot_begin(w, SNAP_VCPU);
            snapshot_put_u32(w, i);
            snapshot_put(w, s, sizeof(*s));
        }
    }
    free(s);
    return err;
}

static int save_irqchip(struct kvmc_vm *vm, struct snapshot_writer *w)
{
    if (vm->irq.ioapic) {
        snapshot_begin(w, SNAP_IOAPIC);
        return ioapic_save(vm->irq.ioapic, w);
    }
    snapshot_begin(w, SNAP_KERNEL_IRQCHIP);
    for (unsigned i = 0; i < 3; i++) {
        struct kvm_irqchip chip;
        memset(&chip, 0, sizeof(chip));
        chip.chip_id = i;
        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
            return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_IRQCHIP %u", i);
        snapshot_put(w, &chip, sizeof(chip));
    }
    struct kvm_pit_state2 pit;
    memset(&pit, 0, sizeof(pit));
    if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_PIT2");
    snapshot_put(w, &pit, sizeof(pit));
    return KVMC_OK;
}

static int save_devices(struct kvmc_vm *vm, struct snapshot_writer *w)
{
    const struct devmgr *m = &vm->devices;
    for (unsigned i = 0; i < m->nplatform; i++) {
        if (!m->platform[i].state)
            continue; /* stateless */
        const char *name = m->platform[i].type->name;
        snapshot_begin(w, SNAP_DEVICE);
        snapshot_put_u32(w, (uint32_t)strlen(name));
        snapshot_put(w, name, strlen(name));
        int err = m->platform[i].type->save(m->platform[i].state, w);
        if (err)
            return err;
    }
    return KVMC_OK;
}

/* Virtio devices first: every device's requests in flight finish before
 * anything is read, and their completions (used rings, interrupts) land
 * before the queues, the vCPUs and the interrupt controllers are. */
static int quiesce_virtio(struct kvmc_vm *vm)
{
    const struct devmgr *m = &vm->devices;
    for (unsigned i = 0; i < m->nvirtio; i++) {
        struct virtio_dev *dev = virtio_of(&m->virtio[i]);
        int err = dev->ops->quiesce ? dev->ops->quiesce(dev) : KVMC_OK;
        if (err)
            return err;
    }
    return KVMC_OK;
}

static int save_virtio(struct kvmc_vm *vm, struct snapshot_writer *w)
{
    const struct devmgr *m = &vm->devices;
    int qerr = quiesce_virtio(vm);
    if (qerr)
        return qerr;
    for (unsigned i = 0; i < m->nvirtio; i++) {
        const char *name = virtio_of(&m->virtio[i])->ops->name;
        snapshot_begin(w, SNAP_VIRTIO);
        snapshot_put_u32(w, (uint32_t)strlen(name));
        snapshot_put(w, name, strlen(name));
        int err = virtio_save_one(&m->virtio[i], w);
        if (err)
            return err;
    }
    return KVMC_OK;
}

/* The kvm-clock time the guest itself would read now: its pvclock page
 * (system time and TSC at KVM's last update) advanced to its saved TSC.
 * Saving that, rather than KVM_GET_CLOCK's host-side value, keeps the
 * guest's kvm-clock and TSC in step across a restore (QEMU's kvmclock
 * does the same): the two drift apart between pvclock updates, and a
 * guest whose kvm-clock jumps against its TSC has its clocksource
 * watchdog mark the TSC unstable. False if the guest has no kvm-clock
 * enabled or its page is mid-update or outside RAM. */
static bool guest_kvmclock(struct kvmc_vm *vm, const struct guest_time *t, uint64_t *ns)
{
    struct {
        uint32_t version, pad0;
        uint64_t tsc_timestamp, system_time;
        uint32_t tsc_to_system_mul;
        int8_t tsc_shift;
        uint8_t flags, pad[2];
    } pv;
    if (!t->have_tsc || !(t->system_time_msr & 1) ||
        gm_read(&vm->mem, t->system_time_msr & ~1ull, &pv, sizeof(pv)) < 0 ||
        (pv.version & 1) || !pv.tsc_to_system_mul)
        return false;
    uint64_t delta = t->tsc - pv.tsc_timestamp;
    if (t->tsc < pv.tsc_timestamp)
        return false;
    if (pv.tsc_shift < -63 || pv.tsc_shift > 63)
        return false; /* the page is the guest's: a shift past 63 is no clock */
    delta = pv.tsc_shift < 0 ? delta >> -pv.tsc_shift : delta << pv.tsc_shift;
    *ns = pv.system_time + (uint64_t)(((unsigned __int128)delta * pv.tsc_to_system_mul) >> 32);
    return true;
}

/* The state into w. For a diff (base not NULL), also the RAM pages that
 * differ from the base, read last, once every device is quiet: *ext. */
static int build_state(struct kvmc_vm *vm, struct snapshot_writer *w,
                       const struct snapshot_base *base, struct snapshot_extent **ext,
                       size_t *n)
{
    struct guest_time gt = {0};
    snapshot_begin(w, SNAP_META);
    snapshot_put_u32(w, META_VERSION);
    snapshot_put_u64(w, vm->mem.ram_size);
    snapshot_put_u32(w, vm->ncpus);
    snapshot_put_u32(w, vm->irq.ioapic ? 0 : 1);

    struct kvm_cpuid2 *c = vcpu_cpuid(vm->vcpus[0].fd);
    if (!c)
        return KVMC_EKVM;
    struct snapshot_cpuid f[SNAPSHOT_CPUID_LEAVES];
    features_of(c, f);
    free(c);
    snapshot_begin(w, SNAP_CPUID);
    for (unsigned i = 0; i < SNAPSHOT_CPUID_LEAVES; i++) {
        const uint32_t words[] = {f[i].function, f[i].index, f[i].eax, f[i].ebx, f[i].ecx,
                                  f[i].edx};
        for (unsigned k = 0; k < 6; k++)
            snapshot_put_u32(w, words[k]);
    }

    int err = save_virtio(vm, w);
    /* The clock right after the vCPUs, whose TSC is read last: the two
     * are taken as close together as they are put back. */
    if (!err)
        err = save_vcpus(vm, w, &gt);
    struct kvm_clock_data clock;
    memset(&clock, 0, sizeof(clock));
    if (!err && ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
        err = kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_CLOCK");
    uint64_t guest_ns;
    if (!err && guest_kvmclock(vm, &gt, &guest_ns))
        clock.clock = guest_ns;
    if (!err) {
        snapshot_begin(w, SNAP_CLOCK);
        snapshot_put_u64(w, clock.clock);
        snapshot_put_u32(w, 0); /* flags: the clock value alone is restored */
        err = save_irqchip(vm, w);
    }
    if (!err)
        err = save_devices(vm, w);
    if (!err && base) {
        err = diff_private_extents(vm->mem.mapping, vm->mem.mapping_size, ext, n);
        if (!err)
            diff_put_base(w, base, *ext, *n);
    }
    return err ? err : snapshot_finish(w, KVMC_VERSION_STRING);
}

static int open_memory(struct kvmc_vm *vm, const char *dir, int *out);
static int map_file_over_ram(struct kvmc_vm *vm, int fd, const char *what);

static struct snapshot_keep *keep_new(uint8_t *file, size_t len)
{
    struct snapshot_keep *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    k->file = file;
    k->len = len;
    k->mem_fd = k->diff_fd = -1;
    return k;
}

/* A full snapshot in dir (absolute) whose state file is file[0, len) is
 * the base of what is layered on it. */
static void base_of(struct snapshot_base *b, const char *dir, const uint8_t *file, size_t len)
{
    snprintf(b->path, sizeof(b->path), "%s", dir);
    b->crc = snapshot_crc32(file, len);
    b->len = len;
}

/* After a snapshot in dir (absolute) the VM keeps its state for resets.
 * A full one becomes the base: RAM becomes the memory file just written
 * (the same bytes, the guest being paused), mapped copy-on-write, so that
 * a reset costs only what the guest writes after. A diff keeps the base
 * and RAM as they are, and the diff's memory file for resets. */
static int keep_saved(struct kvmc_vm *vm, const char *dir, struct snapshot_writer *w,
                      bool diff)
{
    struct snapshot_keep *k = keep_new(w->buf, w->len);
    if (!k)
        return kvmc_fail(KVMC_ENOMEM, "snapshot: keeping it for resets");
    w->buf = NULL; /* the keep owns it now */
    w->len = w->cap = 0;
    int err = snapshot_parse(k->file, k->len, &k->img);
    if (!err && diff) {
        k->base = vm->snapshot->base;
        k->mapped = true;
        k->mem_fd = fcntl(vm->snapshot->mem_fd, F_DUPFD_CLOEXEC, 0);
        if (k->mem_fd < 0)
            err = kvmc_fail_errno(KVMC_EIO, errno, "snapshot: keeping the base's memory file");
        if (!err)
            err = open_memory(vm, dir, &k->diff_fd);
    } else if (!err) {
        base_of(&k->base, dir, k->file, k->len);
        err = open_memory(vm, dir, &k->mem_fd);
        if (!err && vm->mem.memfd < 0) {
            err = map_file_over_ram(vm, k->mem_fd, "snapshot");
            k->mapped = !err;
        }
    }
    if (err) {
        snapshot_keep_free(k);
        return err;
    }
    snapshot_keep_free(vm->snapshot);
    vm->snapshot = k;
    return KVMC_OK;
}

/* Why vm cannot take a diff into dir (absolute), or KVMC_OK. */
static int check_diff(struct kvmc_vm *vm, const char *dir)
{
    const struct snapshot_keep *k = vm->snapshot;
    if (!k)
        return kvmc_fail(KVMC_ESTATE, "diff snapshot: this VM has taken no snapshot and was "
                         "restored from none: take a full one first, the diff's base");
    if (!k->mapped)
        return kvmc_fail(KVMC_ENOTSUP, "diff snapshot: this VM's RAM is a memfd (hugepages "
                         "or KVMC_MEM_MEMFD), which cannot tell the pages written since the "
                         "base: take full snapshots");
    if (!strcmp(dir, k->base.path))
        return kvmc_fail(KVMC_EINVAL, "diff snapshot: %s is the base's own directory: give "
                         "the diff another one", dir);
    return KVMC_OK;
}

int snapshot_vm_save(struct kvmc_vm *vm, const char *dir, bool diff)
{
    int err = check_savable(vm, "snapshot");
    if (err)
        return err;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return kvmc_fail_errno(KVMC_EIO, errno, "snapshot: creating the directory %s", dir);
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return kvmc_fail_errno(KVMC_EIO, errno, "snapshot: %s", dir);
    if (diff && (err = check_diff(vm, real)))
        return err;
    err = iothread_suspend(&vm->io);
    if (err)
        return err;
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    struct snapshot_extent *ext = NULL;
    size_t n = 0;
    err = build_state(vm, &w, diff ? &vm->snapshot->base : NULL, &ext, &n);
    if (!err && !diff)
        err = nonzero_extents(&vm->mem, &ext, &n);
    /* Memory first: a state file means the snapshot is whole. */
    if (!err)
        err = write_file(real, "memory", NULL, 0, &vm->mem, ext, n);
    free(ext);
    if (!err)
        err = write_file(real, "state", w.buf, w.len, NULL, NULL, 0);
    if (!err)
        err = keep_saved(vm, real, &w, diff);
    snapshot_writer_free(&w);
    iothread_resume(&vm->io);
    return err;
}

/* --------------------------------------------------------------- restore */

/* Opens dir/name, which must be a regular file: its fd and size. */
static int open_file(const char *dir, const char *name, int *fd, uint64_t *size)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return kvmc_fail(KVMC_EINVAL, "snapshot directory name too long: %s", dir);
    /* O_NONBLOCK: a FIFO put there must not hang the open. */
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (*fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "restore: %s", path);
    struct stat st;
    if (fstat(*fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        return kvmc_fail(KVMC_EIO, "restore: %s is not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    return KVMC_OK;
}

static int read_state(const char *dir, uint8_t **out, size_t *len)
{
    int fd;
    uint64_t size;
    int err = open_file(dir, "state", &fd, &size);
    if (err)
        return err;
    uint8_t *buf = NULL;
    if (size > MAX_STATE_FILE)
        err = kvmc_fail(KVMC_EFORMAT, "restore: %s/state is %llu bytes, more than any snapshot "
                        "state", dir, (unsigned long long)size);
    else if (!(buf = malloc((size_t)size + 1)))
        err = kvmc_fail(KVMC_ENOMEM, "restore: reading %s/state", dir);
    size_t got = 0;
    while (!err && got < size) {
        ssize_t n = read(fd, buf + got, (size_t)size - got);
        if (n <= 0)
            err = kvmc_fail_errno(KVMC_EIO, n < 0 ? errno : EIO, "restore: reading %s/state",
                                  dir);
        else
            got += (size_t)n;
    }
    close(fd);
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    *len = got;
    return KVMC_OK;
}

/* The VM must be the one the snapshot was taken of, as far as the guest
 * can tell. */
static int check_matches(struct kvmc_vm *vm, const struct snapshot_image *img)
{
    if (img->ram_size != vm->mem.ram_size || img->ncpus != vm->ncpus)
        return kvmc_fail(KVMC_EINVAL, "restore: the snapshot is of a VM with %llu MiB and %u "
                         "vCPUs; this one has %llu MiB and %u",
                         (unsigned long long)(img->ram_size >> 20), img->ncpus,
                         (unsigned long long)(vm->mem.ram_size >> 20), vm->ncpus);
    if (img->kernel_irqchip != !vm->irq.ioapic)
        return kvmc_fail(KVMC_EINVAL, "restore: the snapshot's VM %s a PIT; this one %s",
                         img->kernel_irqchip ? "had" : "had no",
                         vm->irq.ioapic ? "has none" : "has one");
    const struct devmgr *m = &vm->devices;
    unsigned n = 0;
    for (unsigned i = 0; i < m->nplatform; i++) {
        if (!m->platform[i].state)
            continue;
        if (n >= img->ndevices || strcmp(img->devices[n].name, m->platform[i].type->name))
            return kvmc_fail(KVMC_EINVAL, "restore: this VM has device %s where the "
                             "snapshot has %s", m->platform[i].type->name,
                             n < img->ndevices ? img->devices[n].name : "none");
        n++;
    }
    if (n != img->ndevices)
        return kvmc_fail(KVMC_EINVAL, "restore: the snapshot has device %s, which this VM "
                         "lacks", img->devices[n].name);
    for (unsigned i = 0; i < m->nvirtio || i < img->nvirtio; i++) {
        const char *mine = i < m->nvirtio ? virtio_of(&m->virtio[i])->ops->name : NULL;
        const char *its = i < img->nvirtio ? img->virtio[i].name : NULL;
        if (!mine)
            return kvmc_fail(KVMC_EINVAL, "restore: the snapshot has a %s (virtio device %u), "
                             "which this VM lacks", its, i);
        if (!its)
            return kvmc_fail(KVMC_EINVAL, "restore: this VM has a %s (virtio device %u), which "
                             "the snapshot lacks", mine, i);
        if (strcmp(mine, its))
            return kvmc_fail(KVMC_EINVAL, "restore: virtio device %u of this VM is %s, the "
                             "snapshot's is %s", i, mine, its);
    }
    return KVMC_OK;
}

static int check_cpu(struct kvmc_vm *vm, const struct snapshot_image *img)
{
    struct kvm_cpuid2 *c = vcpu_cpuid(vm->vcpus[0].fd);
    if (!c)
        return KVMC_EKVM;
    struct snapshot_cpuid now[SNAPSHOT_CPUID_LEAVES];
    features_of(c, now);
    free(c);
    static const char *reg[] = {"EBX", "ECX", "EDX"};
    for (unsigned i = 0; i < SNAPSHOT_CPUID_LEAVES; i++) {
        const uint32_t had[] = {img->cpuid[i].ebx, img->cpuid[i].ecx, img->cpuid[i].edx};
        const uint32_t has[] = {now[i].ebx, now[i].ecx, now[i].edx};
        for (unsigned k = 0; k < 3; k++) {
            /* Leaf 1 EBX is the APIC ID and counts, not features. */
            if (feature_leaves[i] == 1 && k == 0)
                continue;
            if (had[k] & ~has[k])
                return kvmc_fail(KVMC_ENOTSUP, "restore: the guest saw CPU features this "
                                 "host lacks (CPUID 0x%x %s bits 0x%08x): restore on a host "
                                 "with the same CPU", feature_leaves[i], reg[k],
                                 had[k] & ~has[k]);
        }
    }
    return KVMC_OK;
}

/* Opens dir/memory, which must hold exactly the VM's RAM. */
static int open_memory(struct kvmc_vm *vm, const char *dir, int *out)
{
    int fd;
    uint64_t size;
    int err = open_file(dir, "memory", &fd, &size);
    if (err)
        return err;
    if (size != vm->mem.mapping_size) {
        close(fd);
        return kvmc_fail(KVMC_EFORMAT, "restore: %s/memory is %llu bytes; the snapshot's RAM "
                         "is %zu", dir, (unsigned long long)size, vm->mem.mapping_size);
    }
    *out = fd;
    return KVMC_OK;
}

/* Maps fd copy-on-write where guest RAM is, in one step that leaves RAM as
 * it was if it fails: mapped elsewhere first, then moved over it. */
static int map_file_over_ram(struct kvmc_vm *vm, int fd, const char *what)
{
    void *p = mmap(NULL, vm->mem.mapping_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED)
        return kvmc_fail_errno(KVMC_ENOMEM, errno, "%s: mapping the memory file", what);
    void *q = mremap(p, vm->mem.mapping_size, vm->mem.mapping_size,
                     MREMAP_MAYMOVE | MREMAP_FIXED, vm->mem.mapping);
    if (q == MAP_FAILED) {
        int e = errno;
        munmap(p, vm->mem.mapping_size);
        return kvmc_fail_errno(KVMC_ENOMEM, e, "%s: moving the memory file over RAM", what);
    }
    return KVMC_OK;
}

/* Guest RAM from the memory file: mapped copy-on-write over the VM's RAM
 * (KVM's slots keep their addresses, and only pages the guest touches are
 * read), or copied for memfd RAM (*mapped false). */
static int load_ram(struct kvmc_vm *vm, int fd, bool *mapped)
{
    *mapped = vm->mem.memfd < 0;
    if (*mapped)
        return map_file_over_ram(vm, fd, "restore");
    uint8_t *p = vm->mem.mapping;
    for (size_t done = 0; done < vm->mem.mapping_size;) {
        ssize_t n = pread(fd, p + done, vm->mem.mapping_size - done, (off_t)done);
        if (n <= 0)
            return kvmc_fail_errno(KVMC_EIO, n < 0 ? errno : EIO,
                                   "restore: reading the memory file");
        done += (size_t)n;
    }
    return KVMC_OK;
}

static int apply(struct kvmc_vm *vm, const struct snapshot_image *img)
{
    int err = KVMC_OK;
    if (img->kernel_irqchip) {
        for (unsigned i = 0; i < 3; i++)
            if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &img->chips[i]) < 0)
                return kvmc_fail_errno(KVMC_EKVM, errno, "restore: KVM_SET_IRQCHIP %u", i);
        if (ioctl(vm->vm_fd, KVM_SET_PIT2, &img->pit) < 0)
            return kvmc_fail_errno(KVMC_EKVM, errno, "restore: KVM_SET_PIT2");
    } else {
        struct snapshot_reader r;
        snapshot_reader_section(&r, SNAP_IOAPIC, img->irq, img->irq_len);
        err = ioapic_restore(vm->irq.ioapic, &r);
        if (!err && !snapshot_section_done(&r))
            err = bad("I/O APIC state too long");
        if (err)
            return err;
    }
    const struct devmgr *m = &vm->devices;
    unsigned n = 0;
    for (unsigned i = 0; i < m->nplatform && !err; i++) {
        if (!m->platform[i].state)
            continue;
        struct snapshot_reader r;
        snapshot_reader_section(&r, SNAP_DEVICE, img->devices[n].state, img->devices[n].len);
        err = m->platform[i].type->restore(m->platform[i].state, &r);
        if (!err && !snapshot_section_done(&r))
            err = kvmc_fail(KVMC_EFORMAT, "restore: device %s's state is too long",
                            img->devices[n].name);
        n++;
    }
    for (unsigned i = 0; i < m->nvirtio && !err; i++) {
        struct snapshot_reader r;
        snapshot_reader_section(&r, SNAP_VIRTIO, img->virtio[i].state, img->virtio[i].len);
        err = virtio_restore_one(&m->virtio[i], &r);
        if (!err && !snapshot_section_done(&r))
            err = kvmc_fail(KVMC_EFORMAT, "restore: %s's state is too long",
                            img->virtio[i].name);
    }
    for (unsigned i = 0; i < vm->ncpus && !err; i++)
        err = vcpu_state_restore(vm->vcpus[i].fd, &img->vcpus[i]);
    /* The TSCs, then the clock, back to back (vcpu_state.h); the clock is
     * set ahead by the time since the first TSC was written (the middle
     * of that ioctl), so both go on from the same instant. */
    struct timespec before, after;
    clock_gettime(CLOCK_MONOTONIC, &before);
    for (unsigned i = 0; i < vm->ncpus && !err; i++) {
        err = vcpu_state_restore_tsc(vm->vcpus[i].fd, &img->vcpus[i]);
        if (i == 0)
            clock_gettime(CLOCK_MONOTONIC, &after);
    }
    if (err)
        return err;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t tsc_at = ((int64_t)before.tv_sec + after.tv_sec) * 500000000 +
                     ((int64_t)before.tv_nsec + after.tv_nsec) / 2;
    int64_t since = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - tsc_at;
    struct kvm_clock_data clock;
    memset(&clock, 0, sizeof(clock));
    clock.clock = img->clock.clock + (uint64_t)(since > 0 ? since : 0);
    if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "restore: KVM_SET_CLOCK");
    /* A notification made before the snapshot may not have been served. */
    for (unsigned i = 0; i < m->nvirtio; i++) {
        if (m->virtio[i].mmio)
            virtio_mmio_kick(m->virtio[i].mmio);
        else
            virtio_pci_kick(m->virtio[i].pci);
    }
    return KVMC_OK;
}

/* err, with the message saying it is about the diff's base. */
static int base_failed(int err)
{
    char why[512];
    snprintf(why, sizeof(why), "%s", kvmc_last_error());
    const char *p = strncmp(why, "restore: ", 9) ? why : why + 9;
    return kvmc_fail(err, "restore: the diff's base: %s", p);
}

/* A diff's base: still the snapshot the diff was taken on. Its memory
 * file's fd in *fd. */
static int open_base(struct kvmc_vm *vm, const struct snapshot_base *b, int *fd)
{
    uint8_t *file = NULL;
    size_t len = 0;
    int err = read_state(b->path, &file, &len);
    if (err)
        return base_failed(err);
    bool same = len == b->len && snapshot_crc32(file, len) == b->crc;
    free(file);
    if (!same)
        return kvmc_fail(KVMC_EINVAL, "restore: the diff's base %s was replaced by another "
                         "snapshot after the diff was taken", b->path);
    err = open_memory(vm, b->path, fd);
    return err ? base_failed(err) : KVMC_OK;
}

int snapshot_vm_restore(struct kvmc_vm *vm, const char *dir)
{
    int err = check_savable(vm, "restore");
    if (err)
        return err;
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return kvmc_fail_errno(KVMC_EIO, errno, "restore: %s", dir);
    uint8_t *file = NULL;
    size_t len = 0;
    err = read_state(real, &file, &len);
    if (err)
        return err;
    struct snapshot_keep *k = keep_new(file, len);
    if (!k) {
        free(file);
        return kvmc_fail(KVMC_ENOMEM, "restore: the snapshot's state");
    }
    err = snapshot_parse(file, len, &k->img);
    if (!err)
        err = check_matches(vm, &k->img);
    if (!err)
        err = check_cpu(vm, &k->img);
    if (!err && k->img.diff) {
        k->base = k->img.base;
        err = open_base(vm, &k->base, &k->mem_fd);
        if (!err)
            err = open_memory(vm, real, &k->diff_fd);
    } else if (!err) {
        base_of(&k->base, real, file, len);
        err = open_memory(vm, real, &k->mem_fd);
    }
    if (!err)
        err = load_ram(vm, k->mem_fd, &k->mapped);
    if (!err && k->diff_fd >= 0)
        err = diff_overlay(vm->mem.mapping, k->diff_fd, k->img.extents, k->img.nextents);
    if (!err)
        err = apply(vm, &k->img);
    if (err) {
        snapshot_keep_free(k);
        return err;
    }
    snapshot_keep_free(vm->snapshot);
    vm->snapshot = k;
    return KVMC_OK;
}

void snapshot_keep_free(struct snapshot_keep *k)
{
    if (!k)
        return;
    snapshot_image_free(&k->img);
    free(k->file);
    if (k->mem_fd >= 0)
        close(k->mem_fd);
    if (k->diff_fd >= 0)
        close(k->diff_fd);
    free(k);
}

int snapshot_vm_reset(struct kvmc_vm *vm)
{
    struct snapshot_keep *k = vm->snapshot;
    if (!k)
        return kvmc_fail(KVMC_ESTATE, "reset: this VM has taken no snapshot and was restored "
                         "from none");
    int err = iothread_suspend(&vm->io);
    if (err)
        return err;
    /* Requests in flight finish first: their completions would land in
     * the RAM being put back. */
    err = quiesce_virtio(vm);
    if (!err && k->mapped) {
        /* Private pages the guest wrote go; the file's come back on the
         * next touch. Costs what was written, not the RAM's size. */
        if (madvise(vm->mem.mapping, vm->mem.mapping_size, MADV_DONTNEED) < 0)
            err = kvmc_fail_errno(KVMC_EIO, errno, "reset: dropping the RAM written since");
    } else if (!err) {
        bool mapped;
        err = load_ram(vm, k->mem_fd, &mapped);
    }
    /* A diff's pages again: they cost what the diff holds. */
    if (!err && k->diff_fd >= 0)
        err = diff_overlay(vm->mem.mapping, k->diff_fd, k->img.extents, k->img.nextents);
    if (!err)
        err = apply(vm, &k->img);
    iothread_resume(&vm->io);
    return err;
}
