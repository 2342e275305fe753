/* VM lifecycle: create (KVM objects, memory, devices, kernel), start, pause,
 * resume, stop, wait, destroy. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/virtio_ids.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cond.h"
#include "config.h"
#include "devices/i8042.h"
#include "devices/virtio_console.h"
#include "error.h"
#include "files.h"
#include "seccomp.h"
#include "thread_role.h"
#include "vm.h"
#include "snapshot/snapshot.h"
#include "x86/cpuid.h"
#include "eintr.h"

#define MAX_KERNEL_SIZE (512ull << 20)

static void vm_emit_event(struct kvmc_vm *vm, kvmc_event event);

/* ------------------------------------------------------------- creation */

static int open_kvm(struct kvmc_vm *vm, unsigned cpus)
{
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno,
                               "cannot open /dev/kvm (is KVM enabled, and may this "
                               "user use it?)");
    int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        return kvmc_fail(KVMC_ENOTSUP, "KVM API version %d, kvmc needs %d", version,
                         KVM_API_VERSION);
    int err;
    if ((err = kvm_require(vm->kvm_fd, KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP")) ||
        (err = kvm_require(vm->kvm_fd, KVM_CAP_IMMEDIATE_EXIT,
                               "KVM_CAP_IMMEDIATE_EXIT")) ||
        (err = kvm_require(vm->kvm_fd, KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY")))
        return err;
    int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max <= 0)
        max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    if (max > 0 && cpus > (unsigned)max)
        return kvmc_fail(KVMC_EINVAL, "cpus %u: KVM on this host allows at most %d",
                         cpus, max);
    int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_VCPU_MMAP_SIZE");
    vm->run_size = (size_t)run_size;
    return KVMC_OK;
}

static int create_kvm_vm(struct kvmc_vm *vm)
{
    vm->vm_fd = ioctl_retry(vm->kvm_fd, KVM_CREATE_VM, NULL);
    if (vm->vm_fd < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_CREATE_VM");
    return KVMC_OK;
}

static int check_host_memory(uint64_t bytes)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && bytes > (uint64_t)pages * (uint64_t)page)
        return kvmc_fail(KVMC_EINVAL, "memory %llu MiB is more than the host's %llu MiB",
                         (unsigned long long)(bytes >> 20),
                         (unsigned long long)(((uint64_t)pages * (uint64_t)page) >> 20));
    return KVMC_OK;
}

static int map_memory(struct kvmc_vm *vm, const kvmc_config *cfg)
{
    int err = gm_init(&vm->mem, cfg->memory, cfg->memory_flags);
    if (err)
        return err;
    for (unsigned i = 0; i < vm->mem.nregions; i++) {
        const struct gm_region *r = &vm->mem.regions[i];
        struct kvm_userspace_memory_region region = {
            .slot = i, .guest_phys_addr = r->gpa, .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)r->host,
        };
        if (ioctl_retry(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
            return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_USER_MEMORY_REGION %u", i);
    }
    return KVMC_OK;
}

/* The kernel and initrd go from their files straight to guest memory
 * (files.h): no whole-file buffer, no second copy. */
static int load_kernel(struct kvmc_vm *vm, const kvmc_config *cfg)
{
    struct image kernel = image_mem(cfg->kernel_image, cfg->kernel_image_len);
    struct image initrd = image_mem(NULL, 0);
    int err = KVMC_OK;
    if (!cfg->kernel_image && !cfg->kernel_path)
        return KVMC_OK; /* an empty VM, for kvmc_vm_restore */
    vm->bootable = true;
    if (!cfg->kernel_image)
        err = image_open(&kernel, cfg->kernel_path, MAX_KERNEL_SIZE, "kernel");
    if (!err && cfg->initrd_path)
        err = image_open(&initrd, cfg->initrd_path, cfg->memory, "initrd");
    if (!err) {
        struct mmio_device_desc virtio[KVMC_MAX_VIRTIO_DEVICES];
        struct boot_request req = {
            .kernel = kernel, .initrd = initrd, .cmdline = cfg->cmdline,
            .protocol = cfg->protocol, .cpus = cfg->cpus, .virtio = virtio,
            .nvirtio = devmgr_describe_virtio(&vm->devices, virtio, KVMC_MAX_VIRTIO_DEVICES),
            .pic = cfg->pit,
        };
        devmgr_describe_pci(&vm->devices, &req.pci);
        err = boot_load(&vm->mem, &req, &vm->boot);
        if (err && cfg->kernel_path) /* name the file in the message */
            kvmc_fail_prefix(err, "kernel %s", cfg->kernel_path);
    }
    image_close(&kernel);
    image_close(&initrd);
    return err;
}

/* ------------------------------------------------- services for devices */

static void svc_set_irq(void *ctx, unsigned gsi, int level)
{
    struct kvmc_vm *vm = ctx;
    irqchip_set_irq(&vm->irq, gsi, level);
}

static void svc_pulse_irq(void *ctx, unsigned gsi)
{
    struct kvmc_vm *vm = ctx;
    irqchip_pulse(&vm->irq, gsi);
}

static int svc_irqfd(void *ctx, int fd, unsigned gsi)
{
    struct kvmc_vm *vm = ctx;
    return irqchip_irqfd(&vm->irq, fd, gsi);
}

static int svc_ioeventfd(void *ctx, uint64_t addr, unsigned len, uint64_t datamatch, int fd,
                         bool assign)
{
    struct kvmc_vm *vm = ctx;
    struct kvm_ioeventfd ioev = {.addr = addr, .len = len, .fd = fd};
    if (datamatch != SVC_ANY_DATA) {
        ioev.datamatch = datamatch;
        ioev.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    }
    if (!assign)
        ioev.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &ioev) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_IOEVENTFD at 0x%llx",
                               (unsigned long long)addr);
    return KVMC_OK;
}

static int svc_signal_msi(void *ctx, uint64_t address, uint32_t data)
{
    struct kvmc_vm *vm = ctx;
    struct kvm_msi msi = {.address_lo = (uint32_t)address,
                          .address_hi = (uint32_t)(address >> 32), .data = data};
    return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? KVMC_EKVM : KVMC_OK;
}

static int svc_msi_route(void *ctx, int *gsi, uint64_t address, uint32_t data)
{
    struct kvmc_vm *vm = ctx;
    if (*gsi < 0) {
        unsigned got;
        int err = gsi_routes_alloc_msi(&vm->irq.routes, &got);
        if (err)
            return err;
        *gsi = (int)got;
    }
    const struct gsi_msi_route route = {.address = address, .data = data};
    return gsi_routes_set_msi(&vm->irq.routes, (unsigned)*gsi, &route);
}

static void svc_msi_route_free(void *ctx, unsigned gsi)
{
    struct kvmc_vm *vm = ctx;
    gsi_routes_free_msi(&vm->irq.routes, gsi);
}

static int svc_msi_irqfd(void *ctx, int fd, unsigned gsi, bool assign)
{
    struct kvmc_vm *vm = ctx;
    struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi,
                              .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN};
    if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_IRQFD %s gsi %u",
                               assign ? "on" : "off", gsi);
    return KVMC_OK;
}

static int set_slot(struct kvmc_vm *vm, unsigned slot, uint64_t gpa, uint64_t size, void *host)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
}

static int svc_map_host(void *ctx, uint64_t gpa, uint64_t size, void *host, unsigned *slot)
{
    struct kvmc_vm *vm = ctx;
    if (!size || ((gpa | size | (uintptr_t)host) & 4095) || gpa + size < gpa)
        return kvmc_fail(KVMC_EINVAL, "device memory at 0x%llx+0x%llx is not page-aligned",
                         (unsigned long long)gpa, (unsigned long long)size);
    for (unsigned i = 0; i < vm->mem.nregions; i++) {
        const struct gm_region *r = &vm->mem.regions[i];
        if (gpa < r->gpa + r->size && r->gpa < gpa + size)
            return kvmc_fail(KVMC_EINVAL, "device memory at 0x%llx+0x%llx overlaps guest RAM",
                             (unsigned long long)gpa, (unsigned long long)size);
    }
    pthread_mutex_lock(&vm->slot_lock);
    int err = kvmc_fail(KVMC_EBUSY, "all %d KVM slots for device memory are in use", 64);
    for (unsigned i = 0; i < 64; i++) {
        if (vm->host_slots >> i & 1)
            continue;
        if (set_slot(vm, VM_HOST_SLOT_BASE + i, gpa, size, host) < 0) {
            err = kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_USER_MEMORY_REGION for device "
                                  "memory at 0x%llx", (unsigned long long)gpa);
        } else {
            vm->host_slots |= 1ull << i;
            *slot = VM_HOST_SLOT_BASE + i;
            err = KVMC_OK;
        }
        break;
    }
    pthread_mutex_unlock(&vm->slot_lock);
    return err;
}

static void svc_unmap_host(void *ctx, unsigned slot)
{
    struct kvmc_vm *vm = ctx;
    unsigned i = slot - VM_HOST_SLOT_BASE;
    pthread_mutex_lock(&vm->slot_lock);
    if (slot >= VM_HOST_SLOT_BASE && i < 64 && (vm->host_slots >> i & 1)) {
        set_slot(vm, slot, 0, 0, NULL);
        vm->host_slots &= ~(1ull << i);
    }
    pthread_mutex_unlock(&vm->slot_lock);
}

static void svc_request_exit(void *ctx, const kvmc_exit_info *info)
{
    vm_request_exit(ctx, info);
}

static int create_devices(struct kvmc_vm *vm, const kvmc_config *cfg)
{
    vm->svc = (struct vm_services){
        .mem = &vm->mem, .pio = &vm->pio, .mmio = &vm->mmio, .io = &vm->io,
        .console = &vm->console, .set_irq = svc_set_irq, .pulse_irq = svc_pulse_irq,
        .irqfd = svc_irqfd, .ioeventfd = svc_ioeventfd, .signal_msi = svc_signal_msi,
        .msi_route = svc_msi_route, .msi_route_free = svc_msi_route_free,
        .msi_irqfd = svc_msi_irqfd, .map_host = svc_map_host, .unmap_host = svc_unmap_host,
        .stats = &vm->stats, .request_exit = svc_request_exit,
        .ctx = vm,
    };
    int err = console_out_init(&vm->console, &cfg->console, cfg->console_path,
                               cfg->console_limit);
    if (!err)
        err = iothread_init(&vm->io);
    vm->io.owner = vm;
    return err ? err : devmgr_create(&vm->devices, &vm->svc, cfg);
}

int kvmc_vm_virtio_console_write(kvmc_vm *vm, const void *data, size_t len, size_t *written)
{
    if (!vm || (!data && len))
        return kvmc_fail(KVMC_EINVAL, "%s: vm or data is NULL", __func__);
    void *console = devmgr_virtio_impl(&vm->devices, &virtio_console_device);
    if (!console)
        return kvmc_fail(KVMC_ESTATE, "this VM has no virtio-console");
    return virtio_console_write(console, data, len, written);
}

int kvmc_vm_get_stats(const kvmc_vm *vm, kvmc_stats *stats)
{
    if (!vm || !stats)
        return kvmc_fail(KVMC_EINVAL, "%s: vm or stats is NULL", __func__);
    const size_t first = offsetof(kvmc_stats, exit_io_in);
    if (stats->size < first + sizeof(uint64_t))
        return kvmc_fail(KVMC_EINVAL, "kvmc_stats.size is %u: set it to sizeof(kvmc_stats) "
                         "(KVMC_STATS_INIT)", stats->size);
    _Static_assert(sizeof(kvmc_stats) == offsetof(kvmc_stats, exit_io_in) +
                                              STAT_COUNT * sizeof(uint64_t),
                   "kvmc_stats has one field per counter, in stats.h's order");
    uint64_t v[STAT_COUNT];
    for (unsigned i = 0; i < STAT_COUNT; i++)
        v[i] = atomic_load_explicit(&vm->stats.v[i], memory_order_relaxed);
    for (unsigned c = 0; c < vm->ncpus; c++)
        for (unsigned i = 0; i < STAT_VCPU_EXITS; i++)
            v[i] += atomic_load_explicit(&vm->vcpus[c].exits[i], memory_order_relaxed);
    size_t want = stats->size < sizeof(kvmc_stats) ? stats->size : sizeof(kvmc_stats);
    size_t n = (want - first) / sizeof(uint64_t);
    memcpy((uint8_t *)stats + first, v, n * sizeof(uint64_t));
    stats->size = (uint32_t)(first + n * sizeof(uint64_t));
    return KVMC_OK;
}

int kvmc_vm_send_ctrl_alt_del(kvmc_vm *vm)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "%s: vm is NULL", __func__);
    void *kbd = devmgr_platform_impl(&vm->devices, &i8042_device);
    if (!kbd) /* every VM has one; a VM whose creation failed is never returned */
        return kvmc_fail(KVMC_ESTATE, "this VM has no i8042 controller");
    return i8042_ctrl_alt_del(kbd);
}

static int create_vcpus(struct kvmc_vm *vm)
{
    vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
    if (!vm->vcpus)
        return kvmc_fail(KVMC_ENOMEM, "allocating %u vCPUs", vm->ncpus);
    for (unsigned i = 0; i < vm->ncpus; i++)
        vm->vcpus[i].fd = -1;
    struct kvm_cpuid2 *cpuid = cpuid_get_supported(vm->kvm_fd);
    if (!cpuid)
        return KVMC_EKVM;
    int err = KVMC_OK;
    for (unsigned i = 0; i < vm->ncpus && !err; i++) {
        err = vcpu_create(vm, i);
        if (!err)
            err = vcpu_configure(&vm->vcpus[i], cpuid);
    }
    free(cpuid);
    return err;
}

int kvmc_vm_create(const kvmc_config *cfg, kvmc_vm **out)
{
    if (!cfg || !out)
        return kvmc_fail(KVMC_EINVAL, "kvmc_vm_create: config and out must not be NULL");
    int err = check_host_memory(cfg->memory);
    if (err)
        return err;
    struct kvmc_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return kvmc_fail(KVMC_ENOMEM, "allocating a VM");
    vm->kvm_fd = vm->vm_fd = -1;
    vm->mem.memfd = -1;
    vm->ncpus = cfg->cpus;
    snprintf(vm->vcpu_name, sizeof(vm->vcpu_name), "%s",
             cfg->vcpu_name[0] ? cfg->vcpu_name : "kvmc-vcpu");
    vm->io.epoll_fd = vm->io.stop_fd = vm->io.suspend_fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_mutex_init(&vm->slot_lock, NULL);
    cond_init_monotonic(&vm->cond);
    vm->state = KVMC_STATE_CREATED;

    /* Devices before the kernel: the firmware tables describe what was
     * attached. */
    if ((err = bus_init(&vm->pio, "PIO", vm->ncpus)) ||
        (err = bus_init(&vm->mmio, "MMIO", vm->ncpus)) ||
        (err = open_kvm(vm, cfg->cpus)) || (err = create_kvm_vm(vm)) ||
        (err = map_memory(vm, cfg)) ||
        (err = irqchip_create(&vm->irq, vm->kvm_fd, vm->vm_fd, &vm->mmio, cfg->pit)) ||
        (err = create_devices(vm, cfg)) || (err = load_kernel(vm, cfg)) ||
        (err = create_vcpus(vm))) {
        struct kvmc_saved_error saved;
        kvmc_error_save(&saved);
        kvmc_vm_destroy(vm);
        return kvmc_error_restore(&saved, err); /* destroy must not clobber it */
    }
    *out = vm;
    return KVMC_OK;
}

/* ------------------------------------------------------------- lifecycle */

static void vm_emit_event(struct kvmc_vm *vm, kvmc_event event)
{
    pthread_mutex_lock(&vm->lock);
    kvmc_event_fn fn = vm->event_fn;
    void *opaque = vm->event_opaque;
    pthread_mutex_unlock(&vm->lock);
    if (fn)
        fn(opaque, vm, event);
}

/* Called with vm->lock held, so no vCPU thread is being started meanwhile. */
static void kick_all(struct kvmc_vm *vm)
{
    for (unsigned i = 0; i < vm->ncpus; i++)
        if (vm->vcpus[i].run)
            vcpu_kick(&vm->vcpus[i]);
}

void vm_request_exit(struct kvmc_vm *vm, const kvmc_exit_info *info)
{
    pthread_mutex_lock(&vm->lock);
    bool first = vm->exit.reason == KVMC_EXIT_NONE;
    if (first) {
        vm->exit = *info;
        vm->state = KVMC_STATE_EXITED;
    }
    __atomic_store_n(&vm->stop_requested, true, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&vm->cond);
    kick_all(vm);
    pthread_mutex_unlock(&vm->lock);
    if (first)
        vm_emit_event(vm, KVMC_EVENT_EXITED);
}

int kvmc_vm_set_event_callback(kvmc_vm *vm, kvmc_event_fn fn, void *opaque)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    pthread_mutex_lock(&vm->lock);
    vm->event_fn = fn;
    vm->event_opaque = opaque;
    pthread_mutex_unlock(&vm->lock);
    return KVMC_OK;
}

int kvmc_vm_start(kvmc_vm *vm)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    pthread_mutex_lock(&vm->lock);
    if (vm->state != KVMC_STATE_CREATED) {
        pthread_mutex_unlock(&vm->lock);
        return kvmc_fail(KVMC_ESTATE, "VM was already started (or stopped before it started)");
    }
    if (vm->snapshotting || vm->restore_failed || !vm->bootable) {
        pthread_mutex_unlock(&vm->lock);
        return kvmc_fail(KVMC_ESTATE,
                         vm->snapshotting    ? "VM is being restored on another thread"
                         : vm->restore_failed ? "VM's restore failed: it cannot start (destroy it)"
                                              : "VM has no kernel and no snapshot restored: "
                                                "nothing to run");
    }
    vm->state = KVMC_STATE_RUNNING;
    vm->io.seccomp = vm->seccomp;
    int err = console_out_start(&vm->console, vm->seccomp);
    if (!err)
        err = devmgr_start(&vm->devices, vm->seccomp);
    if (!err)
        err = iothread_start(&vm->io);
    for (unsigned i = 0; i < vm->ncpus && !err; i++) {
        err = vcpu_start_thread(&vm->vcpus[i]);
        if (!err)
            vm->live_threads++;
    }
    pthread_mutex_unlock(&vm->lock);
    if (err) {
        struct kvmc_saved_error saved;
        kvmc_error_save(&saved);
        kvmc_exit_info info = {.reason = KVMC_EXIT_VMM_ERROR, .vcpu = -1};
        snprintf(info.message, sizeof(info.message), "%.200s", saved.message);
        vm_request_exit(vm, &info);
        return kvmc_error_restore(&saved, err);
    }
    vm_emit_event(vm, KVMC_EVENT_STARTED);
    return KVMC_OK;
}

int kvmc_vm_set_seccomp(kvmc_vm *vm, int enabled)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    if (kvmc_vm_get_state(vm) != KVMC_STATE_CREATED)
        return kvmc_fail(KVMC_ESTATE, "seccomp must be set before the VM starts");
    if (enabled && !seccomp_available())
        return seccomp_unavailable();
    vm->seccomp = enabled != 0;
    return KVMC_OK;
}

int kvmc_vm_stop(kvmc_vm *vm)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    kvmc_exit_info info = {.reason = KVMC_EXIT_STOPPED, .vcpu = -1};
    snprintf(info.message, sizeof(info.message), "stopped by the host");
    vm_request_exit(vm, &info);
    return KVMC_OK;
}

static void deadline_after(struct timespec *ts, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* wait, pause and destroy wait for the VM's threads: on one of them (in a
 * device, console or event callback) they would wait for themselves. */
static int refuse_on_own_thread(const struct kvmc_vm *vm, const char *call)
{
    if (!thread_role_serves(vm))
        return KVMC_OK;
    return kvmc_fail(KVMC_ESTATE, "%s called on one of the VM's own threads (from a device, "
                     "console or event callback): it would wait for itself", call);
}

int kvmc_vm_wait(kvmc_vm *vm, int timeout_ms, kvmc_exit_info *info)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    int err = refuse_on_own_thread(vm, "kvmc_vm_wait");
    if (err)
        return err;
    struct timespec deadline;
    if (timeout_ms >= 0)
        deadline_after(&deadline, timeout_ms);
    pthread_mutex_lock(&vm->lock);
    if (vm->state == KVMC_STATE_CREATED) {
        pthread_mutex_unlock(&vm->lock);
        return kvmc_fail(KVMC_ESTATE, "VM was never started");
    }
    while (vm->live_threads > 0 || vm->exit.reason == KVMC_EXIT_NONE) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&vm->cond, &vm->lock);
        } else if (pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&vm->lock);
            return kvmc_fail(KVMC_ETIMEDOUT, "VM still running after %d ms", timeout_ms);
        }
    }
    bool must_join = !vm->joined;
    vm->joined = true;
    if (info)
        *info = vm->exit;
    pthread_mutex_unlock(&vm->lock);
    if (must_join) {
        for (unsigned i = 0; i < vm->ncpus; i++)
            if (vm->vcpus[i].thread_started)
                pthread_join(vm->vcpus[i].thread, NULL);
        /* What the guest printed last reaches a reader that keeps reading. */
        console_out_drain(&vm->console, CONSOLE_DRAIN_MS);
    }
    return KVMC_OK;
}

int kvmc_vm_pause(kvmc_vm *vm)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    int err = refuse_on_own_thread(vm, "kvmc_vm_pause");
    if (err)
        return err;
    pthread_mutex_lock(&vm->lock);
    if (vm->state != KVMC_STATE_RUNNING) {
        pthread_mutex_unlock(&vm->lock);
        return kvmc_fail(KVMC_ESTATE, "VM is not running");
    }
    __atomic_store_n(&vm->pause_requested, true, __ATOMIC_SEQ_CST);
    kick_all(vm);
    while (vm->parked < vm->live_threads && !vm->stop_requested)
        pthread_cond_wait(&vm->cond, &vm->lock);
    bool exited = vm->stop_requested;
    if (!exited)
        vm->state = KVMC_STATE_PAUSED;
    pthread_mutex_unlock(&vm->lock);
    if (exited)
        return kvmc_fail(KVMC_ESTATE, "VM exited while being paused");
    vm_emit_event(vm, KVMC_EVENT_PAUSED);
    return KVMC_OK;
}

int kvmc_vm_resume(kvmc_vm *vm)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    pthread_mutex_lock(&vm->lock);
    if (vm->state != KVMC_STATE_PAUSED) {
        pthread_mutex_unlock(&vm->lock);
        return kvmc_fail(KVMC_ESTATE, "VM is not paused");
    }
    if (vm->snapshotting) {
        pthread_mutex_unlock(&vm->lock);
        return kvmc_fail(KVMC_ESTATE, "VM is being snapshotted on another thread");
    }
    __atomic_store_n(&vm->pause_requested, false, __ATOMIC_SEQ_CST);
    vm->state = KVMC_STATE_RUNNING;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    vm_emit_event(vm, KVMC_EVENT_RESUMED);
    return KVMC_OK;
}

/* ------------------------------------------------------------- snapshots */

static int begin_busy(kvmc_vm *vm, kvmc_vm_state want, const char *call);

/* Marks the VM busy for a snapshot (in `want` state), restore or reset. */
static int begin_snapshot(kvmc_vm *vm, const char *dir, kvmc_vm_state want, const char *call)
{
    if (!vm || !dir)
        return kvmc_fail(KVMC_EINVAL, "%s: VM and directory must not be NULL", call);
    return begin_busy(vm, want, call);
}

static int begin_busy(kvmc_vm *vm, kvmc_vm_state want, const char *call)
{
    int err = refuse_on_own_thread(vm, call);
    if (err)
        return err;
    pthread_mutex_lock(&vm->lock);
    if (vm->state != want || vm->snapshotting || vm->stop_requested) {
        pthread_mutex_unlock(&vm->lock);
        return kvmc_fail(KVMC_ESTATE, want == KVMC_STATE_PAUSED
                                          ? "%s: the VM is not paused (pause it first)"
                                          : "%s: the VM was started already (restore into a "
                                            "new VM)", call);
    }
    vm->snapshotting = true;
    pthread_mutex_unlock(&vm->lock);
    return KVMC_OK;
}

static int end_snapshot(kvmc_vm *vm, int err, bool restore)
{
    pthread_mutex_lock(&vm->lock);
    vm->snapshotting = false;
    if (restore && err)
        vm->restore_failed = true;
    else if (restore)
        vm->bootable = true;
    pthread_mutex_unlock(&vm->lock);
    return err;
}

int kvmc_vm_snapshot(kvmc_vm *vm, const char *dir)
{
    return kvmc_vm_snapshot_ext(vm, dir, NULL);
}

int kvmc_vm_snapshot_ext(kvmc_vm *vm, const char *dir, const kvmc_snapshot_options *opts)
{
    static const char *call = "kvmc_vm_snapshot_ext";
    unsigned flags = 0;
    if (opts) {
        if (opts->version == 0)
            return kvmc_fail(KVMC_EINVAL, "%s: options of version 0 (start from "
                             "KVMC_SNAPSHOT_OPTIONS_INIT)", call);
        if (opts->version > KVMC_SNAPSHOT_OPTIONS_VERSION)
            return kvmc_fail(KVMC_ENOTSUP, "%s: options of version %u; this library knows "
                             "up to %u", call, opts->version, KVMC_SNAPSHOT_OPTIONS_VERSION);
        flags = opts->flags;
        if (flags & ~KVMC_SNAPSHOT_DIFF)
            return kvmc_fail(KVMC_EINVAL, "%s: unknown flags 0x%x", call,
                             flags & ~KVMC_SNAPSHOT_DIFF);
    }
    int err = begin_snapshot(vm, dir, KVMC_STATE_PAUSED,
                             opts ? call : "kvmc_vm_snapshot");
    return err ? err
               : end_snapshot(vm, snapshot_vm_save(vm, dir, flags & KVMC_SNAPSHOT_DIFF), false);
}

int kvmc_vm_restore(kvmc_vm *vm, const char *dir)
{
    int err = begin_snapshot(vm, dir, KVMC_STATE_CREATED, "kvmc_vm_restore");
    return err ? err : end_snapshot(vm, snapshot_vm_restore(vm, dir), true);
}

int kvmc_vm_reset_to_snapshot(kvmc_vm *vm)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "kvmc_vm_reset_to_snapshot: VM is NULL");
    kvmc_vm_state state = kvmc_vm_get_state(vm);
    bool resume = state == KVMC_STATE_RUNNING;
    if (resume) {
        int err = kvmc_vm_pause(vm);
        if (err)
            return err;
        state = KVMC_STATE_PAUSED;
    }
    if (state != KVMC_STATE_CREATED && state != KVMC_STATE_PAUSED)
        return kvmc_fail(KVMC_ESTATE, "kvmc_vm_reset_to_snapshot: the VM exited (restore "
                         "into a new VM)");
    int err = begin_busy(vm, state, "kvmc_vm_reset_to_snapshot");
    if (!err)
        err = end_snapshot(vm, snapshot_vm_reset(vm), false);
    if (resume && kvmc_vm_resume(vm) != KVMC_OK && !err)
        err = KVMC_ESTATE; /* resumed by another thread meanwhile: message set */
    return err;
}

kvmc_vm_state kvmc_vm_get_state(const kvmc_vm *vm)
{
    if (!vm) {
        kvmc_fail(KVMC_EINVAL, "VM is NULL");
        return KVMC_STATE_INVALID;
    }
    kvmc_vm *m = (kvmc_vm *)vm;
    pthread_mutex_lock(&m->lock);
    kvmc_vm_state s = m->state;
    pthread_mutex_unlock(&m->lock);
    return s;
}

unsigned kvmc_vm_cpu_count(const kvmc_vm *vm) { return vm ? vm->ncpus : 0; }
uint64_t kvmc_vm_memory_size(const kvmc_vm *vm) { return vm ? vm->mem.ram_size : 0; }

void kvmc_vm_destroy(kvmc_vm *vm)
{
    if (!vm)
        return;
    if (refuse_on_own_thread(vm, "kvmc_vm_destroy")) {
        kvmc_vm_stop(vm); /* the most it can do from here; freeing is the caller's */
        return;
    }
    if (vm->live_threads || vm->state == KVMC_STATE_RUNNING ||
        vm->state == KVMC_STATE_PAUSED) {
        kvmc_vm_stop(vm);
        kvmc_vm_wait(vm, -1, NULL);
    } else if (vm->state == KVMC_STATE_EXITED) {
        kvmc_vm_wait(vm, -1, NULL); /* joins threads once */
    }
    snapshot_keep_free(vm->snapshot);
    iothread_destroy(&vm->io); /* before the devices it serves */
    devmgr_destroy(&vm->devices);
    console_out_close(&vm->console);
    if (vm->vcpus)
        for (unsigned i = 0; i < vm->ncpus; i++)
            vcpu_destroy(&vm->vcpus[i]);
    free(vm->vcpus);
    /* The VM goes before the RAM it maps: tearing it down while the memory
     * is still mapped is cheaper (measured on PVM: 14 ms against 21 ms). */
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    irqchip_destroy(&vm->irq); /* after every thread that raises interrupts */
    gm_destroy(&vm->mem);
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->lock);
    pthread_mutex_destroy(&vm->slot_lock);
    free(vm);
}

/* ------------------------------------------------- memory, devices, irqs */

int kvmc_vm_read_memory(kvmc_vm *vm, uint64_t gpa, void *buf, size_t len)
{
    if (!vm || (!buf && len))
        return kvmc_fail(KVMC_EINVAL, "VM or buffer is NULL");
    if (gm_read(&vm->mem, gpa, buf, len))
        return kvmc_fail(KVMC_EINVAL, "guest range 0x%llx+%zu is not RAM",
                         (unsigned long long)gpa, len);
    return KVMC_OK;
}

int kvmc_vm_write_memory(kvmc_vm *vm, uint64_t gpa, const void *buf, size_t len)
{
    if (!vm || (!buf && len))
        return kvmc_fail(KVMC_EINVAL, "VM or buffer is NULL");
    if (gm_write(&vm->mem, gpa, buf, len))
        return kvmc_fail(KVMC_EINVAL, "guest range 0x%llx+%zu is not RAM",
                         (unsigned long long)gpa, len);
    return KVMC_OK;
}

static int check_can_add_device(kvmc_vm *vm, const kvmc_device_ops *ops)
{
    if (!vm || !ops)
        return kvmc_fail(KVMC_EINVAL, "VM or device ops is NULL");
    if (ops->version == 0)
        return kvmc_fail(KVMC_EINVAL, "kvmc_device_ops.version is 0: start from "
                                      "KVMC_DEVICE_OPS_INIT");
    if (ops->version > KVMC_DEVICE_OPS_VERSION)
        return kvmc_fail(KVMC_ENOTSUP, "kvmc_device_ops version %u is newer than this "
                         "library's (%u): a newer libkvmc is needed", ops->version,
                         KVMC_DEVICE_OPS_VERSION);
    if (kvmc_vm_get_state(vm) != KVMC_STATE_CREATED)
        return kvmc_fail(KVMC_ESTATE, "devices must be added before the VM starts");
    return KVMC_OK;
}

int kvmc_vm_add_pio_device(kvmc_vm *vm, uint16_t base, uint16_t size,
                           const kvmc_device_ops *ops, void *opaque)
{
    int err = check_can_add_device(vm, ops);
    if (err)
        return err;
    if ((uint32_t)base + size > 0x10000u)
        return kvmc_fail(KVMC_EINVAL, "PIO range 0x%x+0x%x goes past port 0xffff",
                         base, size);
    struct bus_ops b = {.read = ops->read, .write = ops->write};
    err = bus_add(&vm->pio, base, size, &b, opaque, "user PIO device");
    if (!err)
        vm->user_devices++;
    return err;
}

int kvmc_vm_add_mmio_device(kvmc_vm *vm, uint64_t base, uint64_t size,
                            const kvmc_device_ops *ops, void *opaque)
{
    int err = check_can_add_device(vm, ops);
    if (err)
        return err;
    for (unsigned i = 0; i < vm->mem.nregions; i++) {
        const struct gm_region *r = &vm->mem.regions[i];
        if (base < r->gpa + r->size && r->gpa < base + size)
            return kvmc_fail(KVMC_EBUSY, "MMIO range 0x%llx+0x%llx overlaps guest RAM",
                             (unsigned long long)base, (unsigned long long)size);
    }
    struct bus_ops b = {.read = ops->read, .write = ops->write};
    err = bus_add(&vm->mmio, base, size, &b, opaque, "user MMIO device");
    if (!err)
        vm->user_devices++;
    return err;
}

int kvmc_vm_set_irq_line(kvmc_vm *vm, unsigned gsi, int level)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    return irqchip_set_irq(&vm->irq, gsi, level);
}

int kvmc_vm_add_pci_device(kvmc_vm *vm, const kvmc_pci_device *dev, void *opaque,
                           unsigned *slot)
{
    if (!vm || !dev)
        return kvmc_fail(KVMC_EINVAL, "VM or PCI device is NULL");
    if (kvmc_vm_get_state(vm) != KVMC_STATE_CREATED)
        return kvmc_fail(KVMC_ESTATE, "devices must be added before the VM starts");
    return devmgr_add_pci_device(&vm->devices, dev, opaque, slot);
}

int kvmc_vm_pci_msix_notify(kvmc_vm *vm, unsigned slot, unsigned vector)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    return devmgr_pci_msix_notify(&vm->devices, slot, vector);
}
