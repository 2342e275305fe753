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

#include "devices/ioapic.h"
#include "error.h"
#include "kick.h"
#include "x86/layout.h"
#include "seccomp.h"
#include "thread_role.h"
#include "vm.h"

#define CR0_PE 0x1ull
#define CR0_MP 0x2ull
#define CR0_ET 0x10ull
#define CR0_NE 0x20ull
#define CR0_WP 0x10000ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull
#define RFLAGS_RESERVED 0x2ull
#define BOOT_STACK 0x8ff0ull

#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_IA32_TSC 0x10
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MISC_ENABLE_FAST_STRING 0x1ull
#define MTRR_ENABLE_WB 0x806ull /* MTRRs on, default type write-back */

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_LINT1 0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI 0x4

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
    vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
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

static int set_msrs(struct vcpu *vcpu)
{
    static const struct { uint32_t index; uint64_t value; } boot_msrs[] = {
        {MSR_IA32_SYSENTER_CS, 0}, {MSR_IA32_SYSENTER_ESP, 0},
        {MSR_IA32_SYSENTER_EIP, 0}, {MSR_STAR, 0}, {MSR_CSTAR, 0},
        {MSR_KERNEL_GS_BASE, 0}, {MSR_SYSCALL_MASK, 0}, {MSR_LSTAR, 0},
        {MSR_IA32_TSC, 0}, {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
        {MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB},
    };
    const unsigned n = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
    union {
        struct kvm_msrs hdr;
        uint8_t bytes[sizeof(struct kvm_msrs) +
                      sizeof(boot_msrs) / sizeof(boot_msrs[0]) * sizeof(struct kvm_msr_entry)];
    } msrs;
    memset(&msrs, 0, sizeof(msrs));
    msrs.hdr.nmsrs = n;
    for (unsigned i = 0; i < n; i++) {
        msrs.hdr.entries[i].index = boot_msrs[i].index;
        msrs.hdr.entries[i].data = boot_msrs[i].value;
    }
    int set = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
    if (set < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_MSRS on vCPU %u", vcpu->index);
    /* KVM returns how many it set; an MSR it refuses is not fatal, but the
     * boot MSRs are standard on every host we support, so insist. */
    if ((unsigned)set != n)
        return kvmc_fail(KVMC_EKVM, "KVM_SET_MSRS on vCPU %u: MSR 0x%x refused",
                         vcpu->index, msrs.hdr.entries[set].index);
    return KVMC_OK;
}

static int set_fpu(struct vcpu *vcpu)
{
    struct kvm_fpu fpu = {0};
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_FPU on vCPU %u", vcpu->index);
    return KVMC_OK;
}

static void set_lvt_mode(struct kvm_lapic_state *lapic, unsigned reg, uint32_t mode)
{
    uint32_t v;
    memcpy(&v, &lapic->regs[reg], 4);
    v = (v & ~0x700u) | (mode << 8);
    memcpy(&lapic->regs[reg], &v, 4);
}

/* LINT0 takes the 8259's ExtINT, LINT1 NMIs: what firmware sets up. */
static int set_lapic(struct vcpu *vcpu)
{
    struct kvm_lapic_state lapic;
    if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_LAPIC on vCPU %u", vcpu->index);
    set_lvt_mode(&lapic, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    set_lvt_mode(&lapic, APIC_LVT_LINT1, APIC_MODE_NMI);
    if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_LAPIC on vCPU %u", vcpu->index);
    return KVMC_OK;
}

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code64)
{
    return (struct kvm_segment){
        .base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
        .present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1, .l = code64,
        .g = 1,
    };
}

/* Registers for the boot CPU at the kernel's entry point. */
static int set_entry_state(struct vcpu *vcpu, const struct boot_entry *boot)
{
    struct kvm_sregs sregs;
    if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_GET_SREGS");
    const bool long64 = boot->mode == BOOT_ENTRY_LONG64;
    sregs.cs = long64 ? flat_segment(BOOT_SEL_CODE64, 0xb, true)
                      : flat_segment(BOOT_SEL_CODE32, 0xb, false);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss =
        flat_segment(BOOT_SEL_DATA, 0x3, false);
    sregs.tr = (struct kvm_segment){.selector = BOOT_SEL_TSS, .limit = 0x67,
                                    .type = 0xb, .present = 1};
    sregs.gdt.base = LAYOUT_BOOT_GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs.idt.base = LAYOUT_BOOT_IDT;
    sregs.idt.limit = 7;
    if (long64) {
        sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        sregs.cr3 = LAYOUT_PML4;
        sregs.cr4 = CR4_PAE;
        sregs.efer = EFER_LME | EFER_LMA;
    } else { /* PVH: protected mode, paging off */
        sregs.cr0 = CR0_PE | CR0_ET;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_SREGS");

    struct kvm_regs regs = {0};
    regs.rflags = RFLAGS_RESERVED;
    regs.rip = boot->rip;
    regs.rsp = regs.rbp = BOOT_STACK;
    if (long64)
        regs.rsi = boot->arg;
    else
        regs.rbx = boot->arg;
    if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_REGS");
    return KVMC_OK;
}

int vcpu_configure(struct vcpu *vcpu, const struct kvm_cpuid2 *supported)
{
    size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
    struct kvm_cpuid2 *cpuid = malloc(size);
    if (!cpuid)
        return kvmc_fail(KVMC_ENOMEM, "allocating CPUID for vCPU %u", vcpu->index);
    memcpy(cpuid, supported, size);
    cpuid_patch_for_vcpu(cpuid, vcpu->index, vcpu->vm->ncpus);
    int rc = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid);
    int e = errno;
    free(cpuid);
    if (rc < 0)
        return kvmc_fail_errno(KVMC_EKVM, e, "KVM_SET_CPUID2 on vCPU %u", vcpu->index);
    int err;
    if ((err = set_msrs(vcpu)) || (err = set_fpu(vcpu)) || (err = set_lapic(vcpu)))
        return err;
    /* Application processors wait for INIT/SIPI from the guest; only the
     * boot processor starts at the kernel entry. */
    return vcpu->index == 0 ? set_entry_state(vcpu, &vcpu->vm->boot) : KVMC_OK;
}

/* ------------------------------------------------------------- exit loop */

void vcpu_fill_exit_regs(struct vcpu *vcpu, kvmc_exit_info *info)
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
    const struct kvmc_vm *vm = vcpu->vm;
    unsigned size = run->io.size;
    /* KVM guarantees data_offset + count * size lies within the run page. */
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        uint64_t value = 0;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
            memcpy(&value, data, size);
            bus_write(&vm->pio, run->io.port, size, value);
        } else {
            bus_read(&vm->pio, run->io.port, size, &value);
            memcpy(data, &value, size);
        }
    }
}

static void handle_mmio(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    const struct kvmc_vm *vm = vcpu->vm;
    unsigned len = run->mmio.len;
    if (len == 0 || len > sizeof(run->mmio.data))
        return;
    uint64_t value = 0;
    if (run->mmio.is_write) {
        memcpy(&value, run->mmio.data, len);
        bus_write(&vm->mmio, run->mmio.phys_addr, len, value);
    } else {
        bus_read(&vm->mmio, run->mmio.phys_addr, len, &value);
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
        handle_pio(vcpu);
        return true;
    case KVM_EXIT_MMIO:
        handle_mmio(vcpu);
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_IOAPIC_EOI: /* split irqchip: a level-triggered pin's EOI */
        if (vcpu->vm->ioapic)
            ioapic_eoi(vcpu->vm->ioapic, run->eoi.vector);
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
        if (__atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST) &&
            !park_if_paused(vcpu))
            break;
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
    int err = pthread_create(&vcpu->thread, NULL, vcpu_main, vcpu);
    if (err)
        return kvmc_fail_errno(KVMC_EIO, err, "starting the thread of vCPU %u",
                               vcpu->index);
    vcpu->thread_started = true;
    char name[16];
    snprintf(name, sizeof(name), "kvmc-vcpu%u", vcpu->index);
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
    struct kvm_regs r;
#define COPY_IN(f) r.f = in->f;
    REGS_FIELDS(COPY_IN)
#undef COPY_IN
    if (ioctl(vm->vcpus[index].fd, KVM_SET_REGS, &r) < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "KVM_SET_REGS on vCPU %u", index);
    return KVMC_OK;
}
