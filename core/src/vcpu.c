/* vCPUs: setup of the architectural state at entry, and the exit loop that
 * runs on one thread per vCPU. */
#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "kick.h"
#include "x86/irqchip.h"
#include "x86/vcpu_setup.h"
#include "seccomp.h"
#include "thread_role.h"
#include "vm.h"
#include "eintr.h"

/* ------------------------------------------------------------ kick signal */

/* Called with vm->lock held. A thread that has left its loop is never
 * signalled: once joined, its pthread_t is no longer valid. */
void vcpu_kick(struct vcpu *vcpu)
{
    __atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (vcpu->thread_started && !vcpu->exited)
        kick_thread(vcpu->thread);
}

/* ------------------------------------------------------------------ setup */

int vcpu_create(struct kvmc_vm *vm, unsigned index)
{
    kick_install();

    struct vcpu *vcpu = &vm->vcpus[index];
    vcpu->vm = vm;
    vcpu->index = index;
    vcpu->fd = ioctl_retry(vm->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)index);
    if (vcpu->fd < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_CREATE_VCPU %u", index);
    vcpu->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                     vcpu->fd, 0);
    if (vcpu->run == MAP_FAILED) {
        vcpu->run = NULL;
        return kvmc_fail_errno(KVMC_EKVM, errno, "mapping kvm_run of vCPU %u", index);
    }
    return KVMC_OK;
}

void vcpu_destroy(struct vcpu *vcpu)
{
    if (vcpu->run)
        munmap(vcpu->run, vcpu->vm->run_size);
    if (vcpu->fd >= 0)
        close(vcpu->fd);
    vcpu->run = NULL;
    vcpu->fd = -1;
}

int vcpu_configure(struct vcpu *vcpu, const struct kvm_cpuid2 *cpuid)
{
    /* Application processors wait for INIT/SIPI from the guest; only the
     * boot processor starts at the kernel entry. */
    return vcpu_setup_x86(vcpu->fd, vcpu->index, vcpu->vm->ncpus, cpuid,
                          vcpu->index == 0 ? &vcpu->vm->boot : NULL);
}

/* ------------------------------------------------------------- exit loop */

static void vcpu_fill_exit_regs(struct vcpu *vcpu, kvmc_exit_info *info)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    info->vcpu = (int32_t)vcpu->index;
    if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0) {
        info->rip = regs.rip;
        info->rsp = regs.rsp;
        info->rflags = regs.rflags;
    }
    if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) == 0) {
        info->cr0 = sregs.cr0;
        info->cr3 = sregs.cr3;
        info->cr4 = sregs.cr4;
        info->efer = sregs.efer;
        info->cs = sregs.cs.selector;
    }
}

static void handle_pio(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    struct bus *pio = &vcpu->vm->pio;
    unsigned size = run->io.size;
    /* KVM guarantees data_offset + count * size lies within the run page. */
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    const struct bus_map *map = bus_enter(pio, vcpu->index);
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        uint64_t value = 0;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            memcpy(&value, data, size);
            bus_map_write(map, run->io.port, size, value);
        } else {
            bus_map_read(map, run->io.port, size, &value);
            memcpy(data, &value, size);
        }
    }
    bus_leave(pio, vcpu->index);
}

static void handle_mmio(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    struct bus *mmio = &vcpu->vm->mmio;
    unsigned len = run->mmio.len;
    if (len == 0 || len > sizeof(run->mmio.data))
        return;
    uint64_t value = 0;
    if (run->mmio.is_write) {
        memcpy(&value, run->mmio.data, len);
        bus_write(mmio, vcpu->index, run->mmio.phys_addr, len, value);
    } else {
        bus_read(mmio, vcpu->index, run->mmio.phys_addr, len, &value);
        memcpy(run->mmio.data, &value, len);
    }
}

static void end_with(struct vcpu *vcpu, kvmc_exit_reason reason, int32_t code,
                     const char *what)
{
    kvmc_exit_info info = {.reason = reason, .code = code};
    vcpu_fill_exit_regs(vcpu, &info);
    snprintf(info.message, sizeof(info.message),
             "%s on vCPU %u at RIP 0x%llx (CS 0x%x, RSP 0x%llx, RFLAGS 0x%llx, "
             "CR0 0x%llx, CR3 0x%llx, CR4 0x%llx, EFER 0x%llx)",
             what, vcpu->index, (unsigned long long)info.rip, info.cs,
             (unsigned long long)info.rsp, (unsigned long long)info.rflags,
             (unsigned long long)info.cr0, (unsigned long long)info.cr3,
             (unsigned long long)info.cr4, (unsigned long long)info.efer);
    vm_request_exit(vcpu->vm, &info);
}

/* Handles one exit; returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    char what[96];
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        stats_bump_own(&vcpu->exits[run->io.direction == KVM_EXIT_IO_OUT ? STAT_EXIT_IO_OUT
                                                                          : STAT_EXIT_IO_IN]);
        handle_pio(vcpu);
        return true;
    case KVM_EXIT_MMIO:
        stats_bump_own(&vcpu->exits[run->mmio.is_write ? STAT_EXIT_MMIO_WRITE
                                                       : STAT_EXIT_MMIO_READ]);
        handle_mmio(vcpu);
        return true;
    case KVM_EXIT_INTR:
        stats_bump_own(&vcpu->exits[STAT_EXIT_OTHER]);
        return true;
    case KVM_EXIT_IOAPIC_EOI: /* split irqchip: a level-triggered pin's EOI */
        stats_bump_own(&vcpu->exits[STAT_EXIT_OTHER]);
        irqchip_eoi(&vcpu->vm->irq, run->eoi.vector);
        return true;
    case KVM_EXIT_SHUTDOWN:
        end_with(vcpu, KVMC_EXIT_TRIPLE_FAULT, 0, "triple fault (KVM_EXIT_SHUTDOWN)");
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        snprintf(what, sizeof(what), "KVM internal error, suberror %u%s",
                 run->internal.suberror,
                 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                     ? " (instruction emulation failed)" : "");
        end_with(vcpu, KVMC_EXIT_INTERNAL_ERROR, (int32_t)run->internal.suberror, what);
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(what, sizeof(what), "VM entry failed, hardware reason 0x%llx",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        end_with(vcpu, KVMC_EXIT_FAIL_ENTRY,
                 (int32_t)run->fail_entry.hardware_entry_failure_reason, what);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
            end_with(vcpu, KVMC_EXIT_RESET, 0, "guest reset");
        } else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
            end_with(vcpu, KVMC_EXIT_POWEROFF, 0, "guest powered off");
        } else {
            snprintf(what, sizeof(what), "system event %u", run->system_event.type);
            end_with(vcpu, KVMC_EXIT_VMM_ERROR, (int32_t)run->system_event.type, what);
        }
        return false;
    default:
        snprintf(what, sizeof(what), "unhandled KVM exit reason %u", run->exit_reason);
        end_with(vcpu, KVMC_EXIT_VMM_ERROR, (int32_t)run->exit_reason, what);
        return false;
    }
}

/* Waits while the VM is paused. Returns false if it must stop instead. */
static bool park_if_paused(struct vcpu *vcpu)
{
    struct kvmc_vm *vm = vcpu->vm;
    pthread_mutex_lock(&vm->lock);
    if (vm->pause_requested && !vm->stop_requested) {
        vm->parked++;
        pthread_cond_broadcast(&vm->cond);
        while (vm->pause_requested && !vm->stop_requested)
            pthread_cond_wait(&vm->cond, &vm->lock);
        vm->parked--;
    }
    bool keep_running = !vm->stop_requested;
    pthread_mutex_unlock(&vm->lock);
    return keep_running;
}

static void *vcpu_main(void *arg)
{
    struct vcpu *vcpu = arg;
    struct kvmc_vm *vm = vcpu->vm;
    kick_unblock();
    thread_role_set(vm);
    bool confined = !vm->seccomp || seccomp_confine(SECCOMP_ROLE_VCPU) == KVMC_OK;
    if (!confined)
        end_with(vcpu, KVMC_EXIT_VMM_ERROR, 0, "cannot install the vCPU seccomp filter");

    while (confined) {
        /* Clear the kick before looking at the flags: a kick that lands
         * after this point makes KVM_RUN return at once. */
        __atomic_store_n(&vcpu->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&vm->stop_requested, __ATOMIC_SEQ_CST))
            break;
        if (__atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST)) {
            /* Let KVM finish the instruction of the last exit first (a
             * port write's RIP moves on when KVM_RUN is entered again):
             * with immediate_exit set it does that and returns at once,
             * so a paused vCPU's state is whole, as a snapshot needs. */
            __atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
            (void)ioctl(vcpu->fd, KVM_RUN, 0);
            if (!park_if_paused(vcpu))
                break;
            continue;
        }
        if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            char what[64];
            snprintf(what, sizeof(what), "KVM_RUN failed (%s)", strerror(errno));
            end_with(vcpu, KVMC_EXIT_VMM_ERROR, errno, what);
            break;
        }
        if (!handle_exit(vcpu))
            break;
    }

    pthread_mutex_lock(&vm->lock);
    vcpu->exited = true;
    vm->live_threads--;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

int vcpu_start_thread(struct vcpu *vcpu)
{
    int err = kick_thread_create(&vcpu->thread, NULL, vcpu_main, vcpu);
    if (err)
        return kvmc_fail_errno(KVMC_EIO, err, "starting the thread of vCPU %u",
                               vcpu->index);
    vcpu->thread_started = true;
    char name[16]; /* prefix (at most 13 bytes) and index (below 64) */
    snprintf(name, sizeof(name), "%s%u", vcpu->vm->vcpu_name, vcpu->index);
    pthread_setname_np(vcpu->thread, name);
    return KVMC_OK;
}

/* ------------------------------------------------------ register access */

static int check_regs_access(struct kvmc_vm *vm, unsigned index)
{
    if (!vm)
        return kvmc_fail(KVMC_EINVAL, "VM is NULL");
    if (index >= vm->ncpus)
        return kvmc_fail(KVMC_EINVAL, "vCPU %u: the VM has %u", index, vm->ncpus);
    kvmc_vm_state state = kvmc_vm_get_state(vm);
    if (state == KVMC_STATE_RUNNING)
        return kvmc_fail(KVMC_ESTATE, "registers can be read or written only while the VM "
                                      "is paused, not started, or exited");
    return KVMC_OK;
}

#define REGS_FIELDS(X)                                                         \
    X(rax) X(rbx) X(rcx) X(rdx) X(rsi) X(rdi) X(rsp) X(rbp) X(r8) X(r9) X(r10)  \
    X(r11) X(r12) X(r13) X(r14) X(r15) X(rip) X(rflags)

int kvmc_vm_get_regs(kvmc_vm *vm, unsigned index, kvmc_regs *out)
{
    int err = check_regs_access(vm, index);
    if (err)
        return err;
    if (!out)
        return kvmc_fail(KVMC_EINVAL, "regs is NULL");
    struct kvm_regs r;
    if (ioctl(vm->vcpus[index].fd, KVM_GET_REGS, &r) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_REGS on vCPU %u", index);
    out->version = KVMC_REGS_VERSION;
#define COPY_OUT(f) out->f = r.f;
    REGS_FIELDS(COPY_OUT)
#undef COPY_OUT
    return KVMC_OK;
}

int kvmc_vm_set_regs(kvmc_vm *vm, unsigned index, const kvmc_regs *in)
{
    int err = check_regs_access(vm, index);
    if (err)
        return err;
    if (!in)
        return kvmc_fail(KVMC_EINVAL, "regs is NULL");
    if (in->version == 0)
        return kvmc_fail(KVMC_EINVAL, "kvmc_regs.version is 0: start from kvmc_vm_get_regs "
                                      "or KVMC_REGS_INIT");
    if (in->version > KVMC_REGS_VERSION)
        return kvmc_fail(KVMC_ENOTSUP, "kvmc_regs version %u is newer than this library's "
                         "(%u)", in->version, KVMC_REGS_VERSION);
    struct kvm_regs r;
#define COPY_IN(f) r.f = in->f;
    REGS_FIELDS(COPY_IN)
#undef COPY_IN
    if (ioctl(vm->vcpus[index].fd, KVM_SET_REGS, &r) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_REGS on vCPU %u", index);
    return KVMC_OK;
}
