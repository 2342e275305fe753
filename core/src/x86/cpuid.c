/* CPUID for each vCPU: what KVM supports, with the topology (one socket,
 * N cores, one thread each), the vCPU's APIC ID and the KVM hypervisor leaf
 * filled in so the guest counts its CPUs right. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../error.h"
#include "cpuid.h"

#define CPUID_MAX_ENTRIES 256
#define LEAF1_ECX_HYPERVISOR (1u << 31)
#define LEAF1_EDX_HTT (1u << 28)
#define EXT1_ECX_CMP_LEGACY (1u << 1)
#define TOPO_LEVEL_SMT 1
#define TOPO_LEVEL_CORE 2

struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd)
{
    for (unsigned n = CPUID_MAX_ENTRIES; n <= 4 * CPUID_MAX_ENTRIES; n *= 2) {
        struct kvm_cpuid2 *c =
            calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
        if (!c) {
            kvmc_fail(KVMC_ENOMEM, "allocating the CPUID table");
            return NULL;
        }
        c->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        int e = errno;
        free(c);
        if (e != E2BIG) {
            kvmc_fail_errno(KVMC_EKVM, e, "KVM_GET_SUPPORTED_CPUID");
            return NULL;
        }
    }
    kvmc_fail(KVMC_EKVM, "KVM_GET_SUPPORTED_CPUID: table too large");
    return NULL;
}

static unsigned bits_for(unsigned count)
{
    unsigned bits = 0;
    while ((1u << bits) < count)
        bits++;
    return bits;
}

static void patch_topology_leaf(struct kvm_cpuid_entry2 *e, unsigned apic_id,
                                unsigned ncpus)
{
    e->edx = apic_id;
    switch (e->index) {
    case 0: /* SMT level: one thread per core */
        e->eax = 0;
        e->ebx = 1;
        e->ecx = (TOPO_LEVEL_SMT << 8) | e->index;
        break;
    case 1: /* core level: all CPUs in one package */
        e->eax = bits_for(ncpus);
        e->ebx = ncpus;
        e->ecx = (TOPO_LEVEL_CORE << 8) | e->index;
        break;
    default: /* no more levels */
        e->eax = e->ebx = 0;
        e->ecx = e->index;
        break;
    }
}

void cpuid_patch_for_vcpu(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus)
{
    const unsigned apic_id = index;
    for (unsigned i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        switch (e->function) {
        case 1:
            e->ebx = (e->ebx & 0xffffu) | (apic_id << 24) |
                     ((ncpus > 255 ? 255 : ncpus) << 16);
            e->ecx |= LEAF1_ECX_HYPERVISOR;
            if (ncpus > 1)
                e->edx |= LEAF1_EDX_HTT;
            break;
        case 4: { /* deterministic cache parameters */
            unsigned level = (e->eax >> 5) & 7;
            unsigned sharing = level >= 3 ? ncpus - 1 : 0;
            e->eax = (e->eax & 0x3fffu) | ((sharing & 0xfff) << 14) |
                     (((ncpus - 1) & 0x3f) << 26);
            break;
        }
        case 0xb:
        case 0x1f:
            patch_topology_leaf(e, apic_id, ncpus);
            break;
        case 0x40000000:
            e->eax = 0x40000001;
            memcpy(&e->ebx, "KVMK", 4);
            memcpy(&e->ecx, "VMKV", 4);
            memcpy(&e->edx, "M\0\0\0", 4);
            break;
        case 0x80000001:
            if (ncpus > 1)
                e->ecx |= EXT1_ECX_CMP_LEGACY;
            break;
        case 0x80000008: /* AMD: cores per package, APIC ID bits */
            e->ecx = (e->ecx & ~0xf0ffu) | (bits_for(ncpus) << 12) |
                     ((ncpus - 1) & 0xff);
            break;
        case 0x8000001e: /* AMD: extended APIC ID, core ID */
            e->eax = apic_id;
            e->ebx = (e->ebx & ~0xff00ffu) | (apic_id & 0xff);
            e->ecx = 0;
            break;
        }
    }
}
