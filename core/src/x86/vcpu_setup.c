/* x86 vCPU state at power-on: CPUID, MSRs, FPU, local APIC, and for the
 * boot CPU the registers at the kernel's entry point (64-bit long mode with
 * identity paging, or 32-bit protected mode for PVH). */
#include "vcpu_setup.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../error.h"
#include "cpuid.h"
#include "layout.h"

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

struct vcpu_ref {
    int fd;
    unsigned index;
};

static int set_msrs(struct vcpu_ref *vcpu)
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

static int set_fpu(struct vcpu_ref *vcpu)
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
static int set_lapic(struct vcpu_ref *vcpu)
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
static int set_entry_state(struct vcpu_ref *vcpu, const struct boot_entry *boot)
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

int vcpu_setup_x86(int fd, unsigned index, unsigned ncpus, const struct kvm_cpuid2 *supported,
                   const struct boot_entry *boot)
{
    struct vcpu_ref ref = {.fd = fd, .index = index}, *vcpu = &ref;
    size_t size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
    struct kvm_cpuid2 *cpuid = malloc(size);
    if (!cpuid)
        return kvmc_fail(KVMC_ENOMEM, "allocating CPUID for vCPU %u", vcpu->index);
    memcpy(cpuid, supported, size);
    cpuid_patch_for_vcpu(cpuid, index, ncpus);
    int rc = ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid);
    int e = errno;
    free(cpuid);
    if (rc < 0)
        return kvmc_fail_errno(KVMC_EKVM, e, "KVM_SET_CPUID2 on vCPU %u", vcpu->index);
    int err;
    if ((err = set_msrs(vcpu)) || (err = set_fpu(vcpu)) || (err = set_lapic(vcpu)))
        return err;
    return boot ? set_entry_state(vcpu, boot) : KVMC_OK;
}
