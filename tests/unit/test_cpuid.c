#include <criterion/criterion.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include <stdint.h>

#include "x86/cpuid.h"

static struct kvm_cpuid2 *fake_table(void)
{
    static const struct { uint32_t fn, idx, eax, ebx, ecx, edx; } leaves[] = {
        {1, 0, 0x00a00f11, 0x00000800, 0x7ed8320b, 0x078bfbff},
        {4, 0, 0x00000121, 0, 0, 0},  /* L1 */
        {4, 3, 0x00000163, 0, 0, 0},  /* L3 */
        {0xb, 0, 0, 0, 0, 0},
        {0xb, 1, 0, 0, 0, 0},
        {0xb, 2, 0, 0, 0, 0},
        {0x40000000, 0, 0, 0, 0, 0},
        {0x80000008, 0, 0x3030, 0, 0x0000f00f, 0},
        {0x8000001e, 0, 0, 0x0000ff00, 0xff, 0},
    };
    unsigned n = sizeof(leaves) / sizeof(leaves[0]);
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
    c->nent = n;
    for (unsigned i = 0; i < n; i++)
        c->entries[i] = (struct kvm_cpuid_entry2){
            .function = leaves[i].fn, .index = leaves[i].idx, .eax = leaves[i].eax,
            .ebx = leaves[i].ebx, .ecx = leaves[i].ecx, .edx = leaves[i].edx};
    return c;
}

static struct kvm_cpuid_entry2 *leaf(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    for (unsigned i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn && c->entries[i].index == idx)
            return &c->entries[i];
    cr_assert_fail("no leaf 0x%x.%u", fn, idx);
    return NULL;
}

Test(cpuid, topology_and_apic_id_per_vcpu)
{
    struct kvm_cpuid2 *c = fake_table();
    cpuid_patch_for_vcpu(c, 3, 6);
    struct kvm_cpuid_entry2 *l1 = leaf(c, 1, 0);
    cr_assert_eq(l1->ebx >> 24, 3, "initial APIC ID");
    cr_assert_eq((l1->ebx >> 16) & 0xff, 6, "logical processors");
    cr_assert_eq(l1->ebx & 0xffff, 0x0800, "CLFLUSH size kept");
    cr_assert(l1->ecx & (1u << 31), "hypervisor bit");
    cr_assert(l1->edx & (1u << 28), "HTT with more than one CPU");
    cr_assert_eq(leaf(c, 4, 0)->eax >> 26, 5, "cores per package - 1");
    cr_assert_eq((leaf(c, 4, 0)->eax >> 14) & 0xfff, 0, "L1 private");
    cr_assert_eq((leaf(c, 4, 3)->eax >> 14) & 0xfff, 5, "L3 shared by all");
    cr_assert_eq(leaf(c, 0xb, 0)->ebx, 1, "one thread per core");
    cr_assert_eq(leaf(c, 0xb, 0)->edx, 3, "x2APIC ID");
    cr_assert_eq(leaf(c, 0xb, 1)->ebx, 6);
    cr_assert_eq(leaf(c, 0xb, 1)->eax, 3, "shift: 6 CPUs need 3 bits");
    cr_assert_eq((leaf(c, 0xb, 1)->ecx >> 8) & 0xff, 2, "core level");
    cr_assert_eq(leaf(c, 0xb, 2)->ebx, 0, "end of levels");
    struct kvm_cpuid_entry2 *hv = leaf(c, 0x40000000, 0);
    char sig[13] = {0};
    memcpy(sig, &hv->ebx, 4);
    memcpy(sig + 4, &hv->ecx, 4);
    memcpy(sig + 8, &hv->edx, 4);
    cr_assert_str_eq(sig, "KVMKVMKVM");
    cr_assert_eq(leaf(c, 0x80000008, 0)->ecx & 0xff, 5, "AMD: NC = cores - 1");
    cr_assert_eq(leaf(c, 0x8000001e, 0)->eax, 3, "AMD: extended APIC ID");
    free(c);
}

Test(cpuid, single_cpu_has_no_htt)
{
    struct kvm_cpuid2 *c = fake_table();
    cpuid_patch_for_vcpu(c, 0, 1);
    cr_assert_eq(leaf(c, 1, 0)->edx & (1u << 28), 0);
    cr_assert_eq(leaf(c, 0xb, 1)->eax, 0);
    free(c);
}
