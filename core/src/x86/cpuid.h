/* The CPUID table each vCPU gets: what KVM supports, patched per vCPU. */
#ifndef KVMC_CPUID_H
#define KVMC_CPUID_H

struct kvm_cpuid2;

/* KVM_GET_SUPPORTED_CPUID; NULL (message set) on failure. The caller frees. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);
/* APIC IDs, topology leaves and the hypervisor leaf for vCPU index of ncpus. */
void cpuid_patch_for_vcpu(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus);

#endif
