/* A vCPU's whole state, saved and put back on /dev/kvm (the groundwork of
 * snapshots and fast reset): the test guest counts on COM1; paused at some
 * line, its vCPU state and RAM are saved; it runs on, is paused again, gets
 * both back, and runs again. A deterministic guest put back in the same
 * state must write the same bytes it wrote the first time after that
 * point. Needs /dev/kvm (fails without it). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvmc/kvmc.h"
#include "vm.h"
#include "x86/vcpu_state.h"

#define RAM (32u << 20)
#define OUT_MAX (4u << 20)

struct capture {
    pthread_mutex_t lock;
    char *text;
    size_t len;
};

static void capture(void *opaque, const uint8_t *data, size_t len)
{
    struct capture *c = opaque;
    pthread_mutex_lock(&c->lock);
    if (c->len + len <= OUT_MAX) {
        memcpy(c->text + c->len, data, len);
        c->len += len;
    }
    pthread_mutex_unlock(&c->lock);
}

static size_t out_len(struct capture *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->len;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Waits until the console has grown past `len` bytes. */
static void wait_for(struct capture *c, size_t len)
{
    for (int i = 0; i < 3000 && out_len(c) < len; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cr_assert_geq(out_len(c), len, "the guest stopped writing (%zu bytes)", out_len(c));
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static kvmc_vm *flood_vm(struct capture *c)
{
    kvmc_config *cfg;
    kvmc_vm *vm;
    c->text = malloc(OUT_MAX);
    c->len = 0;
    pthread_mutex_init(&c->lock, NULL);
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_kernel(cfg, KVMC_TEST_GUEST_ELF), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory(cfg, RAM), KVMC_OK);
    cr_assert_eq(kvmc_config_set_cmdline(cfg, "kvmc.test=flood"), KVMC_OK);
    cr_assert_eq(kvmc_config_set_console_callback(cfg, capture, c), KVMC_OK);
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "/dev/kvm is needed: %s",
                 kvmc_last_error());
    kvmc_config_free(cfg);
    return vm;
}

/* VM 1 counts, is paused at some line and saved (vCPU state and RAM), then
 * runs on: the reference. VM 2, new, gets both before it starts and must
 * write what VM 1 wrote after the pause, byte for byte: a port write the
 * pause cut short would be repeated or lost, a register, MSR or XMM not
 * restored would change the count. */
Test(vcpu_state, a_new_vm_given_the_state_continues_byte_for_byte, .timeout = 60)
{
    struct capture c1, c2;
    kvmc_vm *vm = flood_vm(&c1);
    uint32_t msrs[VCPU_STATE_MAX_MSRS];
    int nmsrs = vcpu_state_msr_list(vm->kvm_fd, msrs, VCPU_STATE_MAX_MSRS);
    cr_assert_gt(nmsrs, 0, "%s", kvmc_last_error());

    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_for(&c1, 20000);
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    size_t mark = out_len(&c1);
    struct vcpu_state *saved = malloc(sizeof(*saved));
    uint8_t *ram = malloc(RAM);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(vcpu_state_save(vm->vcpus[0].fd, msrs, (unsigned)nmsrs, saved), KVMC_OK, "%s",
                 kvmc_last_error());
    double save_ms = ms_since(&t0);
    cr_assert_eq(kvmc_vm_read_memory(vm, 0, ram, RAM), KVMC_OK);
    cr_assert_gt(saved->nmsrs, 0);
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    wait_for(&c1, mark + 20000);
    cr_assert_eq(kvmc_vm_stop(vm), KVMC_OK);
    kvmc_vm_wait(vm, -1, NULL);
    kvmc_vm_destroy(vm);

    kvmc_vm *vm2 = flood_vm(&c2);
    cr_assert_eq(kvmc_vm_write_memory(vm2, 0, ram, RAM), KVMC_OK);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(vcpu_state_restore(vm2->vcpus[0].fd, saved), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(vcpu_state_restore_tsc(vm2->vcpus[0].fd, saved), KVMC_OK, "%s",
                 kvmc_last_error());
    double restore_ms = ms_since(&t0);
    struct vcpu_state *now = malloc(sizeof(*now));
    cr_assert_eq(vcpu_state_save(vm2->vcpus[0].fd, msrs, (unsigned)nmsrs, now), KVMC_OK);
    cr_assert_eq(now->regs.rip, saved->regs.rip);
    cr_assert_eq(memcmp(&now->sregs, &saved->sregs, sizeof(now->sregs)), 0, "sregs differ");
    cr_assert_eq(memcmp(now->xsave, saved->xsave, 512), 0,
                 "the FXSAVE part (x87, XMM) differs");
    cr_assert_eq(now->xcrs.xcrs[0].value, saved->xcrs.xcrs[0].value, "XCR0 differs");
    cr_assert_eq(kvmc_vm_start(vm2), KVMC_OK);
    wait_for(&c2, 20000);
    cr_assert_eq(kvmc_vm_stop(vm2), KVMC_OK);
    kvmc_vm_wait(vm2, -1, NULL);
    cr_assert_eq(memcmp(c2.text, c1.text + mark, 20000), 0,
                 "the new VM wrote [%.60s...], the first one after the pause [%.60s...]",
                 c2.text, c1.text + mark);
    cr_log_info("vCPU state: %u MSRs; save %.3f ms, restore %.3f ms", saved->nmsrs, save_ms,
                restore_ms);
    kvmc_vm_destroy(vm2);
    free(now);
    free(saved);
    free(ram);
    free(c1.text);
    free(c2.text);
}
