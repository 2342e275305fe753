/* Every kvmc_vm_* call in every state a VM can be in: created, running,
 * paused, exited (waited for or not), stopped before it ever started, and
 * with a NULL handle. Each call either works or says KVMC_ESTATE/EINVAL;
 * none may crash or hang. scripts/dev runs this suite with glibc's thread
 * stack cache off, so a call that touches a joined thread faults at once. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest_run.h"

enum vm_kind { CREATED, RUNNING, PAUSED, EXITED_WAITED, EXITED_UNWAITED, STOPPED_UNSTARTED };
static const char *const kind_names[] = {"created", "running", "paused", "exited (waited)",
                                         "exited (not waited)", "stopped before start"};

static uint64_t dev_read(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque, (void)off, (void)size;
    return 0;
}
static const kvmc_device_ops ops = {.version = KVMC_DEVICE_OPS_VERSION, .read = dev_read};

static void wait_for_state(kvmc_vm *vm, kvmc_vm_state want)
{
    for (int i = 0; i < 2000 && kvmc_vm_get_state(vm) != want; i++)
        usleep(5000);
    cr_assert_eq(kvmc_vm_get_state(vm), want);
}

/* A VM in the given state; cap collects its console. */
static kvmc_vm *vm_in(enum vm_kind kind, struct console_capture *cap)
{
    /* kvmc.test=echo waits for console input forever; the default test
     * powers off at once. */
    struct guest_spec spec = {.cmdline = kind == EXITED_WAITED || kind == EXITED_UNWAITED
                                             ? NULL : "kvmc.test=echo",
                              .cpus = 2};
    kvmc_config *cfg = guest_config(&spec, cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    switch (kind) {
    case CREATED:
        break;
    case STOPPED_UNSTARTED:
        cr_assert_eq(kvmc_vm_stop(vm), KVMC_OK);
        break;
    case RUNNING:
    case PAUSED:
        cr_assert_eq(kvmc_vm_start(vm), KVMC_OK, "%s", kvmc_last_error());
        console_capture_wait(cap, "echo: ready\n");
        if (kind == PAUSED)
            cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK, "%s", kvmc_last_error());
        break;
    case EXITED_WAITED:
    case EXITED_UNWAITED:
        cr_assert_eq(kvmc_vm_start(vm), KVMC_OK, "%s", kvmc_last_error());
        if (kind == EXITED_WAITED)
            cr_assert_eq(kvmc_vm_wait(vm, 20000, NULL), KVMC_OK, "%s", kvmc_last_error());
        else
            wait_for_state(vm, KVMC_STATE_EXITED);
        break;
    }
    return vm;
}

static kvmc_vm_state state_of(enum vm_kind kind)
{
    switch (kind) {
    case CREATED: return KVMC_STATE_CREATED;
    case RUNNING: return KVMC_STATE_RUNNING;
    case PAUSED: return KVMC_STATE_PAUSED;
    default: return KVMC_STATE_EXITED;
    }
}

#define EXPECT(call, want)                                                                     \
    do {                                                                                       \
        int got_ = (call);                                                                     \
        cr_expect_eq(got_, (want), "%s: %s returned %d, expected %d (%s)", kind_names[kind], \
                     #call, got_, (want), kvmc_last_error());                                  \
    } while (0)

/* The calls that leave the state as it is. */
static void non_transitions(kvmc_vm *vm, enum vm_kind kind)
{
    bool created = kind == CREATED, running = kind == RUNNING, paused = kind == PAUSED;
    bool exited = !created && !running && !paused;
    cr_expect_eq(kvmc_vm_get_state(vm), state_of(kind), "%s", kind_names[kind]);
    cr_expect_eq(kvmc_vm_cpu_count(vm), 2u);
    cr_expect_eq(kvmc_vm_memory_size(vm), 64ull << 20);
    EXPECT(kvmc_vm_set_event_callback(vm, NULL, NULL), KVMC_OK);
    /* Snapshots: saved only while paused, restored only into a new VM (a
     * created VM's failed restore would keep it from starting: tested in
     * test_snapshot.c). */
    char dir[] = "/tmp/kvmc-matrix-XXXXXX";
    cr_assert(mkdtemp(dir));
    EXPECT(kvmc_vm_snapshot(vm, dir), paused ? KVMC_OK : KVMC_ESTATE);
    if (!created)
        EXPECT(kvmc_vm_restore(vm, dir), KVMC_ESTATE);
    char file[64];
    snprintf(file, sizeof(file), "%s/state", dir);
    unlink(file);
    snprintf(file, sizeof(file), "%s/memory", dir);
    unlink(file);
    rmdir(dir);
    EXPECT(kvmc_vm_start(vm), created ? KVMC_OK : KVMC_ESTATE);
    if (created) { /* that started it: back to a created VM is not possible, so stop here */
        kvmc_vm_stop(vm);
        return;
    }
    kvmc_exit_info info;
    /* Exited: the other vCPU's thread may still be on its way out. */
    EXPECT(kvmc_vm_wait(vm, exited ? 5000 : 0, &info), exited ? KVMC_OK : KVMC_ETIMEDOUT);
    if (exited)
        cr_expect_neq(info.reason, KVMC_EXIT_NONE);
    EXPECT(kvmc_vm_resume(vm), paused ? KVMC_OK : KVMC_ESTATE);
    if (paused)
        EXPECT(kvmc_vm_pause(vm), KVMC_OK);
    else
        EXPECT(kvmc_vm_pause(vm), running ? KVMC_OK : KVMC_ESTATE);
    if (running)
        EXPECT(kvmc_vm_resume(vm), KVMC_OK);
    uint8_t byte = 0x5a;
    EXPECT(kvmc_vm_write_memory(vm, 0x3000000, &byte, 1), KVMC_OK);
    EXPECT(kvmc_vm_read_memory(vm, 0x3000000, &byte, 1), KVMC_OK);
    EXPECT(kvmc_vm_read_memory(vm, 0xd0000000, &byte, 1), KVMC_EINVAL);
    EXPECT(kvmc_vm_virtio_console_write(vm, "x", 1, NULL), KVMC_ESTATE);
    kvmc_regs regs;
    EXPECT(kvmc_vm_get_regs(vm, 1, &regs), running ? KVMC_ESTATE : KVMC_OK);
    if (!running)
        EXPECT(kvmc_vm_set_regs(vm, 1, &regs), KVMC_OK);
    EXPECT(kvmc_vm_get_regs(vm, 2, &regs), KVMC_EINVAL);
    EXPECT(kvmc_vm_set_seccomp(vm, 0), KVMC_ESTATE);
    EXPECT(kvmc_vm_add_pio_device(vm, 0x700, 4, &ops, NULL), KVMC_ESTATE);
    EXPECT(kvmc_vm_add_mmio_device(vm, 0xd1000000, 0x1000, &ops, NULL), KVMC_ESTATE);
    EXPECT(kvmc_vm_set_irq_line(vm, 5, 1), KVMC_OK);
    EXPECT(kvmc_vm_set_irq_line(vm, 5, 0), KVMC_OK);
    EXPECT(kvmc_vm_set_irq_line(vm, 99, 1), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_get_state(vm), state_of(kind), "%s after the calls", kind_names[kind]);
}

static void check_kind(enum vm_kind kind)
{
    struct console_capture cap = {0};
    kvmc_vm *vm = vm_in(kind, &cap);
    non_transitions(vm, kind);
    /* stop works in every state, twice, and the VM then waits cleanly. */
    EXPECT(kvmc_vm_stop(vm), KVMC_OK);
    EXPECT(kvmc_vm_stop(vm), KVMC_OK);
    kvmc_exit_info info;
    EXPECT(kvmc_vm_wait(vm, 10000, &info), KVMC_OK);
    EXPECT(kvmc_vm_wait(vm, -1, &info), KVMC_OK);
    cr_expect_eq(kvmc_vm_get_state(vm), KVMC_STATE_EXITED);
    EXPECT(kvmc_vm_stop(vm), KVMC_OK); /* after the threads are joined */
    EXPECT(kvmc_vm_pause(vm), KVMC_ESTATE);
    EXPECT(kvmc_vm_resume(vm), KVMC_ESTATE);
    EXPECT(kvmc_vm_start(vm), KVMC_ESTATE);
    kvmc_vm_destroy(vm);
    free(cap.data);
}

Test(state_matrix, created) { check_kind(CREATED); }
Test(state_matrix, running) { check_kind(RUNNING); }
Test(state_matrix, paused) { check_kind(PAUSED); }
Test(state_matrix, exited_and_waited) { check_kind(EXITED_WAITED); }
Test(state_matrix, exited_not_waited) { check_kind(EXITED_UNWAITED); }
Test(state_matrix, stopped_before_start) { check_kind(STOPPED_UNSTARTED); }

/* What the Go binding's Close did: wait for the exit, then stop. */
Test(state_matrix, stop_after_wait_has_joined_the_threads)
{
    for (int i = 0; i < 5; i++) {
        struct console_capture cap = {0};
        kvmc_vm *vm = vm_in(EXITED_WAITED, &cap);
        cr_assert_eq(kvmc_vm_stop(vm), KVMC_OK);
        cr_assert_eq(kvmc_vm_pause(vm), KVMC_ESTATE);
        kvmc_vm_destroy(vm);
        free(cap.data);
    }
}

/* Destroy in every state, without anything else first. */
Test(state_matrix, destroy_in_every_state)
{
    for (int kind = CREATED; kind <= STOPPED_UNSTARTED; kind++) {
        struct console_capture cap = {0};
        kvmc_vm *vm = vm_in((enum vm_kind)kind, &cap);
        kvmc_vm_destroy(vm);
        free(cap.data);
    }
}

Test(state_matrix, null_handles_are_refused)
{
    kvmc_exit_info info;
    kvmc_regs regs = KVMC_REGS_INIT;
    uint8_t byte = 0;
    cr_expect_eq(kvmc_vm_get_state(NULL), KVMC_STATE_INVALID);
    cr_expect_eq(kvmc_vm_cpu_count(NULL), 0u);
    cr_expect_eq(kvmc_vm_memory_size(NULL), 0u);
    cr_expect_eq(kvmc_vm_set_event_callback(NULL, NULL, NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_start(NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_wait(NULL, 0, &info), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_stop(NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_pause(NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_resume(NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_read_memory(NULL, 0, &byte, 1), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_write_memory(NULL, 0, &byte, 1), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_virtio_console_write(NULL, "x", 1, NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_get_regs(NULL, 0, &regs), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_set_regs(NULL, 0, &regs), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_set_seccomp(NULL, 1), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_add_pio_device(NULL, 0x700, 1, &ops, NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_add_mmio_device(NULL, 0xd0000000, 1, &ops, NULL), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_set_irq_line(NULL, 0, 1), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_snapshot(NULL, "/tmp"), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_restore(NULL, "/tmp"), KVMC_EINVAL);
    kvmc_vm_destroy(NULL);
    cr_expect_eq(kvmc_config_set_kernel(NULL, "x"), KVMC_EINVAL);
    cr_expect_eq(kvmc_vm_create(NULL, NULL), KVMC_EINVAL);
    kvmc_config_free(NULL);
}

/* A device callback that calls what waits for its own thread gets
 * KVMC_ESTATE instead of a deadlock; destroy only stops the VM. */
struct reentry {
    kvmc_vm *vm;
    int wait_rc, pause_rc;
    bool destroyed;
};

static void reentrant_write(void *opaque, uint64_t off, unsigned size, uint64_t value)
{
    struct reentry *r = opaque;
    (void)off, (void)size, (void)value;
    r->wait_rc = kvmc_vm_wait(r->vm, -1, NULL);
    r->pause_rc = kvmc_vm_pause(r->vm);
    kvmc_vm_destroy(r->vm);
    r->destroyed = true;
}

Test(state_matrix, wait_pause_destroy_from_a_callback_do_not_deadlock)
{
    struct guest_spec spec = {.cmdline = "kvmc.test=devices"};
    struct console_capture cap = {0};
    kvmc_config *cfg = guest_config(&spec, &cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    struct reentry r = {.vm = vm};
    static const kvmc_device_ops reentrant = {.version = KVMC_DEVICE_OPS_VERSION,
                                              .write = reentrant_write};
    cr_assert_eq(kvmc_vm_add_pio_device(vm, 0x600, 4, &reentrant, &r), KVMC_OK);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    kvmc_exit_info info;
    cr_assert_eq(kvmc_vm_wait(vm, 20000, &info), KVMC_OK, "%s", kvmc_last_error());
    cr_expect_eq(r.wait_rc, KVMC_ESTATE);
    cr_expect_eq(r.pause_rc, KVMC_ESTATE);
    cr_expect(r.destroyed);
    cr_expect_eq(info.reason, KVMC_EXIT_STOPPED, "destroy from the callback stops the VM");
    kvmc_vm_destroy(vm); /* the real one, from here */
    free(cap.data);
}
