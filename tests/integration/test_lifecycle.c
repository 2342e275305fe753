/* Start, pause, resume, stop, wait with timeouts, events, memory access and
 * many VMs per process. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest_run.h"

/* A guest that waits for console input forever: kvmc.test=echo, no input. */
static kvmc_vm *idle_guest(struct console_capture *cap)
{
    struct guest_spec spec = {.cmdline = "kvmc.test=echo", .cpus = 2};
    kvmc_config *cfg = guest_config(&spec, cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    return vm;
}

struct event_log {
    pthread_mutex_t lock;
    kvmc_event events[16];
    unsigned n;
};

static void log_event(void *opaque, kvmc_vm *vm, kvmc_event ev)
{
    struct event_log *log = opaque;
    (void)vm;
    pthread_mutex_lock(&log->lock);
    if (log->n < 16)
        log->events[log->n++] = ev;
    pthread_mutex_unlock(&log->lock);
}

Test(lifecycle, pause_resume_stop_with_events)
{
    struct console_capture cap = {0};
    kvmc_vm *vm = idle_guest(&cap);
    struct event_log log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    cr_assert_eq(kvmc_vm_set_event_callback(vm, log_event, &log), KVMC_OK);
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_CREATED);
    cr_assert_eq(kvmc_vm_wait(vm, 0, NULL), KVMC_ESTATE, "wait before start");
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_ESTATE, "pause before start");

    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_ESTATE, "second start");
    console_capture_wait(&cap, "echo: ready\n");
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_RUNNING);
    cr_assert_eq(kvmc_vm_wait(vm, 50, NULL), KVMC_ETIMEDOUT);

    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_PAUSED);
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_ESTATE, "pause while paused");
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_RUNNING);
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_ESTATE, "resume while running");

    cr_assert_eq(kvmc_vm_stop(vm), KVMC_OK);
    kvmc_exit_info info;
    cr_assert_eq(kvmc_vm_wait(vm, 5000, &info), KVMC_OK);
    cr_assert_eq(info.reason, KVMC_EXIT_STOPPED);
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_EXITED);
    cr_assert_eq(kvmc_vm_wait(vm, 0, &info), KVMC_OK, "wait again after exit");
    kvmc_vm_destroy(vm);

    kvmc_event want[] = {KVMC_EVENT_STARTED, KVMC_EVENT_PAUSED, KVMC_EVENT_RESUMED,
                         KVMC_EVENT_EXITED};
    cr_assert_eq(log.n, 4, "got %u events", log.n);
    for (unsigned i = 0; i < 4; i++)
        cr_assert_eq(log.events[i], want[i], "event %u", i);
    free(cap.data);
}

Test(lifecycle, stop_while_paused)
{
    struct console_capture cap = {0};
    kvmc_vm *vm = idle_guest(&cap);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    console_capture_wait(&cap, "echo: ready\n");
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_stop(vm), KVMC_OK);
    kvmc_exit_info info;
    cr_assert_eq(kvmc_vm_wait(vm, 5000, &info), KVMC_OK);
    cr_assert_eq(info.reason, KVMC_EXIT_STOPPED);
    kvmc_vm_destroy(vm);
    free(cap.data);
}

Test(lifecycle, destroy_a_running_vm)
{
    struct console_capture cap = {0};
    kvmc_vm *vm = idle_guest(&cap);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    console_capture_wait(&cap, "echo: ready\n");
    kvmc_vm_destroy(vm); /* must stop and join on its own */
    free(cap.data);
}

Test(lifecycle, destroy_without_start)
{
    kvmc_vm *vm = idle_guest(NULL);
    kvmc_vm_destroy(vm);
    kvmc_vm_destroy(NULL);
}

Test(lifecycle, guest_memory_read_write_is_bounds_checked)
{
    struct guest_spec spec = {.memory = 4ull << 30};
    kvmc_config *cfg = guest_config(&spec, NULL);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    const char pattern[] = "kvmc memory pattern";
    char back[sizeof(pattern)] = {0};
    cr_assert_eq(kvmc_vm_write_memory(vm, 0x2000000, pattern, sizeof(pattern)), KVMC_OK);
    cr_assert_eq(kvmc_vm_read_memory(vm, 0x2000000, back, sizeof(back)), KVMC_OK);
    cr_assert_str_eq(back, pattern);
    /* RAM above the hole: 4 GiB..5 GiB. */
    cr_assert_eq(kvmc_vm_write_memory(vm, 0x100000000ull, pattern, sizeof(pattern)), KVMC_OK);
    cr_assert_eq(kvmc_vm_read_memory(vm, 0x13fffffffull, back, 1), KVMC_OK);
    /* The hole, the end, straddling, overflow. */
    cr_assert_eq(kvmc_vm_read_memory(vm, 0xd0000000ull, back, 1), KVMC_EINVAL);
    cr_assert_eq(kvmc_vm_read_memory(vm, 0xbffffff0ull, back, 0x20), KVMC_EINVAL);
    cr_assert_eq(kvmc_vm_read_memory(vm, 0x140000000ull, back, 1), KVMC_EINVAL);
    cr_assert_eq(kvmc_vm_read_memory(vm, 0x13ffffff0ull, back, 0x20), KVMC_EINVAL);
    cr_assert_eq(kvmc_vm_read_memory(vm, 0xffffffffffffffffull, back, 2), KVMC_EINVAL);
    kvmc_vm_destroy(vm);
}

Test(lifecycle, many_vms_back_to_back)
{
    for (int i = 0; i < 20; i++) {
        struct guest_spec spec = {.memory = 16ull << 20};
        struct guest_result r;
        run_guest(&spec, &r);
        cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "run %d: %s", i, r.exit.message);
        guest_result_free(&r);
    }
}

static void *run_one(void *arg)
{
    struct guest_result *r = arg;
    struct guest_spec spec = {.memory = 32ull << 20, .cpus = 2};
    run_guest(&spec, r);
    return NULL;
}

Test(lifecycle, concurrent_vms_in_one_process)
{
    enum { N = 6 };
    pthread_t t[N];
    struct guest_result r[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, run_one, &r[i]), 0);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(r[i].create_err, KVMC_OK, "%s", r[i].create_msg);
        cr_assert_eq(r[i].exit.reason, KVMC_EXIT_POWEROFF, "vm %d: %s", i, r[i].exit.message);
        cr_assert(strstr(r[i].console.data, "smp: 2 of 2 cpus running"), "vm %d", i);
        guest_result_free(&r[i]);
    }
}

Test(lifecycle, vcpu_registers_while_paused)
{
    struct console_capture cap = {0};
    kvmc_vm *vm = idle_guest(&cap);
    kvmc_regs regs;
    cr_assert_eq(kvmc_vm_get_regs(vm, 0, &regs), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(regs.rip, 0x100000, "before start: the PVH entry");
    cr_assert_eq(regs.version, KVMC_REGS_VERSION, "get_regs says which layout it filled");
    cr_assert_eq(kvmc_vm_get_regs(vm, 2, &regs), KVMC_EINVAL, "no such vCPU");
    /* A struct not started from KVMC_REGS_INIT, or from a newer header. */
    kvmc_regs unversioned = {.rip = 0x100000};
    cr_assert_eq(kvmc_vm_set_regs(vm, 0, &unversioned), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "KVMC_REGS_INIT"), "%s", kvmc_last_error());
    kvmc_regs future = regs;
    future.version = KVMC_REGS_VERSION + 1;
    cr_assert_eq(kvmc_vm_set_regs(vm, 0, &future), KVMC_ENOTSUP);
    kvmc_regs fresh = KVMC_REGS_INIT;
    fresh.rip = regs.rip;
    cr_assert_eq(kvmc_vm_set_regs(vm, 1, &fresh), KVMC_OK);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    console_capture_wait(&cap, "echo: ready\n");
    cr_assert_eq(kvmc_vm_get_regs(vm, 0, &regs), KVMC_ESTATE, "not while running");
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_get_regs(vm, 0, &regs), KVMC_OK, "%s", kvmc_last_error());
    cr_assert(regs.rip >= 0x100000 && regs.rip < 0x200000, "rip 0x%llx",
              (unsigned long long)regs.rip);
    uint64_t r15 = regs.r15;
    regs.r15 = 0x5a5a5a5a5a5a5a5aull;
    cr_assert_eq(kvmc_vm_set_regs(vm, 0, &regs), KVMC_OK);
    kvmc_regs back;
    cr_assert_eq(kvmc_vm_get_regs(vm, 0, &back), KVMC_OK);
    cr_assert_eq(back.r15, 0x5a5a5a5a5a5a5a5aull);
    back.r15 = r15; /* put it back before the guest runs again */
    cr_assert_eq(kvmc_vm_set_regs(vm, 0, &back), KVMC_OK);
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    kvmc_vm_stop(vm);
    kvmc_vm_wait(vm, 5000, NULL);
    cr_assert_eq(kvmc_vm_get_regs(vm, 1, &regs), KVMC_OK, "after exit");
    kvmc_vm_destroy(vm);
    free(cap.data);
}
