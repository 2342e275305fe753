/* x86 vCPU state at power-on. */
#ifndef KVMC_VCPU_SETUP_H
#define KVMC_VCPU_SETUP_H

#include "../boot/boot.h"

struct kvm_cpuid2;

/* Sets CPUID (supported, patched for this vCPU), MSRs, FPU and LAPIC of
 * vCPU `index` of `ncpus`; boot != NULL makes it the boot CPU, entering
 * the kernel there. */
int vcpu_setup_x86(int fd, unsigned index, unsigned ncpus, const struct kvm_cpuid2 *supported,
                   const struct boot_entry *boot);

#endif
