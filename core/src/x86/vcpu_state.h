/* A vCPU's whole architectural state as KVM holds it, read out and written
 * back: what a snapshot saves per vCPU (issue 18), and what a fast reset
 * puts back.
 *
 * Read from a stopped vCPU (its thread parked or never started). Restore
 * order follows what KVM needs: special registers (with the APIC base)
 * before the local APIC, XSAVE (the only way PVM restores XMM) and XCR0
 * through KVM_SET_XCRS, MSRs, then MP state and pending events last.
 * The TSC is restored as an MSR; PVM ignores that write (the guest's TSC
 * is the host's), and says so nowhere.
 *
 * Threads: the caller keeps the vCPU from running meanwhile. */
#ifndef KVMC_VCPU_STATE_H
#define KVMC_VCPU_STATE_H

#include <linux/kvm.h>
#include <stdint.h>

#define VCPU_STATE_MAX_MSRS 128
#define MSR_TSC 0x10u                   /* IA32_TSC */
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01u /* the guest's kvm-clock page */

struct vcpu_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    /* The legacy 4 KiB XSAVE area (struct kvm_xsave, whose header ends in
     * a flexible array): what PVM offers. */
    uint32_t xsave[1024];
    struct kvm_xcrs xcrs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    struct kvm_debugregs debugregs;
    struct kvm_mp_state mp_state;
    uint32_t nmsrs;
    struct kvm_msr_entry msrs[VCPU_STATE_MAX_MSRS];
};

/* The MSRs KVM saves and restores (KVM_GET_MSR_INDEX_LIST on kvm_fd), at
 * most max. Returns how many, or a negative kvmc_error. */
int vcpu_state_msr_list(int kvm_fd, uint32_t *out, unsigned max);

/* Reads every part; MSRs from `msrs` that KVM cannot read are left out. */
int vcpu_state_save(int vcpu_fd, const uint32_t *msrs, unsigned nmsrs, struct vcpu_state *s);
/* Writes it all back but the TSC: KVMC_EKVM naming the part KVM refused. */
int vcpu_state_restore(int vcpu_fd, const struct vcpu_state *s);
/* Writes the TSC, once (KVM takes a second host write within a second as
 * a synchronisation and keeps the first offset): for every vCPU right
 * before the KVM clock is set, so the guest's TSC and kvm-clock go on from
 * the same moment (a gap between them is a TSC/kvm-clock skew, which
 * Linux's clocksource watchdog reports by marking the TSC unstable). */
int vcpu_state_restore_tsc(int vcpu_fd, const struct vcpu_state *s);

#endif
