#include "vcpu_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../error.h"

int vcpu_state_msr_list(int kvm_fd, uint32_t *out, unsigned max)
{
    struct kvm_msr_list *list = calloc(1, sizeof(*list) + max * sizeof(uint32_t));
    if (!list)
        return kvmc_fail(KVMC_ENOMEM, "MSR index list");
    list->nmsrs = max;
    int rc = ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list);
    int e = errno;
    unsigned n = list->nmsrs;
    if (rc == 0)
        memcpy(out, list->indices, n * sizeof(uint32_t));
    free(list);
    if (rc < 0)
        return kvmc_fail_errno(KVMC_EKVM, e, "KVM_GET_MSR_INDEX_LIST (%u entries)", max);
    return (int)n;
}

/* KVM_GET_MSRS stops at the first MSR it cannot read: read them one group
 * at a time, skipping the refused one. */
/* struct kvm_msrs ends in a flexible array: room for ours behind it. */
union msr_buf {
    struct kvm_msrs head;
    uint8_t bytes[sizeof(struct kvm_msrs) + VCPU_STATE_MAX_MSRS * sizeof(struct kvm_msr_entry)];
};

static void save_msrs(int fd, const uint32_t *index, unsigned n, struct vcpu_state *s)
{
    union msr_buf buf;
    unsigned at = 0;
    s->nmsrs = 0;
    if (n > VCPU_STATE_MAX_MSRS)
        n = VCPU_STATE_MAX_MSRS;
    while (at < n) {
        memset(&buf, 0, sizeof(buf));
        buf.head.nmsrs = n - at;
        for (unsigned i = 0; i < n - at; i++)
            buf.head.entries[i].index = index[at + i];
        int got = ioctl(fd, KVM_GET_MSRS, &buf);
        if (got < 0)
            got = 0;
        memcpy(&s->msrs[s->nmsrs], buf.head.entries, (size_t)got * sizeof(s->msrs[0]));
        s->nmsrs += (uint32_t)got;
        at += (unsigned)got + 1; /* past the one it could not read */
    }
}

#define GET(req, field, what)                                                        \
    do {                                                                             \
        if (ioctl(vcpu_fd, req, field) < 0)                                          \
            return kvmc_fail_errno(KVMC_EKVM, errno, "saving the vCPU's %s", what);   \
    } while (0)

int vcpu_state_save(int vcpu_fd, const uint32_t *msrs, unsigned nmsrs, struct vcpu_state *s)
{
    memset(s, 0, sizeof(*s));
    GET(KVM_GET_REGS, &s->regs, "registers");
    GET(KVM_GET_SREGS, &s->sregs, "special registers");
    GET(KVM_GET_XSAVE, (struct kvm_xsave *)s->xsave, "XSAVE area");
    GET(KVM_GET_XCRS, &s->xcrs, "XCRs");
    GET(KVM_GET_LAPIC, &s->lapic, "local APIC");
    GET(KVM_GET_VCPU_EVENTS, &s->events, "pending events");
    GET(KVM_GET_DEBUGREGS, &s->debugregs, "debug registers");
    GET(KVM_GET_MP_STATE, &s->mp_state, "MP state");
    save_msrs(vcpu_fd, msrs, nmsrs, s);
    return KVMC_OK;
}

#define SET(req, field, what)                                                         \
    do {                                                                              \
        if (ioctl(vcpu_fd, req, field) < 0)                                           \
            return kvmc_fail_errno(KVMC_EKVM, errno, "restoring the vCPU's %s", what); \
    } while (0)

int vcpu_state_restore(int vcpu_fd, const struct vcpu_state *s)
{
    if (s->nmsrs > VCPU_STATE_MAX_MSRS)
        return kvmc_fail(KVMC_EINVAL, "vCPU state with %u MSRs (at most %u)", s->nmsrs,
                         VCPU_STATE_MAX_MSRS);
    SET(KVM_SET_SREGS, &s->sregs, "special registers");
    SET(KVM_SET_REGS, &s->regs, "registers");
    SET(KVM_SET_XSAVE, (const struct kvm_xsave *)s->xsave, "XSAVE area");
    SET(KVM_SET_XCRS, &s->xcrs, "XCRs");
    SET(KVM_SET_DEBUGREGS, &s->debugregs, "debug registers");
    SET(KVM_SET_LAPIC, &s->lapic, "local APIC");
    /* Every MSR but the TSC: KVM takes a second host write of the TSC
     * within a second of the first as a synchronisation and keeps the
     * first one's offset, so the TSC is written once, by
     * vcpu_state_restore_tsc, right before the clock. */
    union msr_buf buf;
    memset(&buf, 0, sizeof(buf));
    for (uint32_t i = 0; i < s->nmsrs; i++)
        if (s->msrs[i].index != MSR_TSC)
            buf.head.entries[buf.head.nmsrs++] = s->msrs[i];
    int set = ioctl(vcpu_fd, KVM_SET_MSRS, &buf);
    if (set < 0)
        return kvmc_fail_errno(KVMC_EKVM, errno, "restoring the vCPU's MSRs");
    if ((uint32_t)set != buf.head.nmsrs)
        return kvmc_fail(KVMC_EKVM, "restoring the vCPU's MSRs: KVM refused MSR 0x%x",
                         buf.head.entries[set].index);
    SET(KVM_SET_MP_STATE, &s->mp_state, "MP state");
    struct kvm_vcpu_events events = s->events;
    events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
    SET(KVM_SET_VCPU_EVENTS, &events, "pending events");
    return KVMC_OK;
}

int vcpu_state_restore_tsc(int vcpu_fd, const struct vcpu_state *s)
{
    for (uint32_t i = 0; i < s->nmsrs && i < VCPU_STATE_MAX_MSRS; i++) {
        if (s->msrs[i].index != MSR_TSC)
            continue;
        union msr_buf buf;
        memset(&buf, 0, sizeof(buf));
        buf.head.nmsrs = 1;
        buf.head.entries[0] = s->msrs[i];
        if (ioctl(vcpu_fd, KVM_SET_MSRS, &buf) != 1)
            return kvmc_fail_errno(KVMC_EKVM, errno, "restoring the vCPU's TSC");
    }
    return KVMC_OK;
}
