/* Snapshot and restore through the public API and the CLI: the test guest
 * counts numbered lines on COM1 (kvmc.test=flood); it is paused, saved,
 * its VM (or process) ends, and a new one restored from the files must
 * continue the count where it stopped, byte for byte. Then what must be
 * refused: every state but paused, a VM that differs from the snapshot's,
 * truncated or corrupt files, devices that cannot be saved yet. Needs
 * /dev/kvm (fails without it). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvmc/kvmc.h"

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

struct vm_opts {
    unsigned cpus;
    uint64_t memory;
    bool pit, rng, memfd;
};

static void capture_init(struct capture *c)
{
    c->text = malloc(OUT_MAX);
    c->len = 0;
    pthread_mutex_init(&c->lock, NULL);
}

static kvmc_vm *flood_vm(struct capture *c, struct vm_opts o)
{
    kvmc_config *cfg;
    kvmc_vm *vm;
    if (c)
        capture_init(c);
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_kernel(cfg, KVMC_TEST_GUEST_ELF), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory(cfg, o.memory ? o.memory : RAM), KVMC_OK);
    cr_assert_eq(kvmc_config_set_cpus(cfg, o.cpus ? o.cpus : 1), KVMC_OK);
    cr_assert_eq(kvmc_config_set_pit(cfg, o.pit), KVMC_OK);
    cr_assert_eq(kvmc_config_set_rng(cfg, o.rng), KVMC_OK);
    if (o.memfd)
        cr_assert_eq(kvmc_config_set_memory_flags(cfg, KVMC_MEM_MEMFD), KVMC_OK);
    cr_assert_eq(kvmc_config_set_cmdline(cfg, "kvmc.test=flood"), KVMC_OK);
    if (c)
        cr_assert_eq(kvmc_config_set_console_callback(cfg, capture, c), KVMC_OK);
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "/dev/kvm is needed: %s",
                 kvmc_last_error());
    kvmc_config_free(cfg);
    return vm;
}

/* text is flood output: "flood line N " and 48 dots per line, cut
 * anywhere at both ends. Checks that the lines it holds are consecutive
 * and whole; returns how many whole lines. */
static unsigned assert_consecutive(const char *text, size_t len)
{
    const char *p = memchr(text, '\n', len), *end = text + len;
    cr_assert(p, "no line in [%.80s]", text);
    p++;
    /* The guest's banner comes first. */
    while (p < end && strncmp(p, "flood line ", 11) != 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        cr_assert(nl, "no flood line in the output");
        p = nl + 1;
    }
    long last = -1;
    unsigned lines = 0;
    for (;;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        long n;
        int used = 0;
        cr_assert_eq(sscanf(p, "flood line %ld %n", &n, &used), 1, "not a flood line: [%.*s]",
                     (int)(nl - p), p);
        cr_assert(last < 0 || n == last + 1, "line %ld after line %ld: [%.*s]", n, last,
                  (int)(nl - p), p);
        for (const char *d = p + used; d < nl; d++)
            cr_assert_eq(*d, '.', "a torn line: [%.*s]", (int)(nl - p), p);
        last = n;
        lines++;
        p = nl + 1;
    }
    return lines;
}

static char *temp_dir(void)
{
    char *dir = strdup("/tmp/kvmc-snap-XXXXXX");
    cr_assert(mkdtemp(dir));
    return dir;
}

static void remove_dir(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/state", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/memory", dir);
    unlink(path);
    rmdir(dir);
}

/* Saves a paused VM of options o into a new directory and returns it; the
 * guest's output up to the pause is in *c. */
static char *save_flood(struct capture *c, struct vm_opts o)
{
    kvmc_vm *vm = flood_vm(c, o);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_for(c, 20000);
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    char *dir = temp_dir();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(kvmc_vm_snapshot(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    cr_log_info("snapshot of %u MiB: %.2f ms", (unsigned)((o.memory ? o.memory : RAM) >> 20),
                ms_since(&t0));
    kvmc_vm_destroy(vm); /* never resumed: nothing after the pause is written */
    return dir;
}

/* Restores dir into a new VM of options o and checks the guest goes on
 * from where the saved one's output in c1 ended. */
static void restore_and_check(const char *dir, struct capture *c1, struct vm_opts o)
{
    struct capture c2;
    kvmc_vm *vm = flood_vm(&c2, o);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(kvmc_vm_restore(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    cr_log_info("restore: %.2f ms", ms_since(&t0));
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_for(&c2, 20000);
    kvmc_vm_stop(vm);
    kvmc_vm_wait(vm, -1, NULL);
    kvmc_vm_destroy(vm);
    size_t len = c1->len + c2.len;
    char *both = malloc(len);
    memcpy(both, c1->text, c1->len);
    memcpy(both + c1->len, c2.text, c2.len);
    unsigned lines = assert_consecutive(both, len);
    cr_assert_gt(lines, 600, "only %u lines", lines);
    cr_assert_neq(memcmp(c2.text, "flood line 0 ", 13), 0, "the restored guest started over");
    free(both);
    free(c2.text);
}

Test(snapshot, a_restored_vm_continues_the_count_where_the_saved_one_paused, .timeout = 60)
{
    struct capture c1;
    struct vm_opts o = {0};
    char *dir = save_flood(&c1, o);
    struct stat st;
    char path[1024];
    snprintf(path, sizeof(path), "%s/memory", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, RAM, "the memory file holds all RAM");
    cr_assert_lt((uint64_t)st.st_blocks * 512, RAM / 2,
                 "pages the guest never wrote are holes (%llu bytes used)",
                 (unsigned long long)st.st_blocks * 512);
    restore_and_check(dir, &c1, o);
    /* A snapshot restores as often as one likes. */
    restore_and_check(dir, &c1, o);
    remove_dir(dir);
    free(dir);
    free(c1.text);
}

Test(snapshot, two_vcpus_and_the_kernels_irqchip_with_a_pit_restore_too, .timeout = 60)
{
    struct capture c1;
    struct vm_opts o = {.cpus = 2, .pit = true};
    char *dir = save_flood(&c1, o);
    restore_and_check(dir, &c1, o);
    remove_dir(dir);
    free(dir);
    free(c1.text);
}

Test(snapshot, memfd_ram_is_restored_by_copy, .timeout = 60)
{
    struct capture c1;
    struct vm_opts o = {0};
    char *dir = save_flood(&c1, o);
    struct capture c2;
    kvmc_config *cfg;
    kvmc_vm *vm;
    capture_init(&c2);
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_kernel(cfg, KVMC_TEST_GUEST_ELF), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory(cfg, RAM), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory_flags(cfg, KVMC_MEM_MEMFD), KVMC_OK);
    cr_assert_eq(kvmc_config_set_console_callback(cfg, capture, &c2), KVMC_OK);
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    cr_assert_eq(kvmc_vm_restore(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_for(&c2, 20000);
    kvmc_vm_stop(vm);
    kvmc_vm_wait(vm, -1, NULL);
    kvmc_vm_destroy(vm);
    char *both = malloc(c1.len + c2.len);
    memcpy(both, c1.text, c1.len);
    memcpy(both + c1.len, c2.text, c2.len);
    assert_consecutive(both, c1.len + c2.len);
    free(both);
    free(c2.text);
    remove_dir(dir);
    free(dir);
    free(c1.text);
}

static void assert_fails(int rc, int want, const char *text)
{
    cr_assert_eq(rc, want, "got %d (%s), wanted %d", rc, kvmc_last_error(), want);
    cr_assert(strstr(kvmc_last_error(), text), "message [%s] lacks [%s]", kvmc_last_error(),
              text);
}

Test(snapshot, only_a_paused_vm_is_saved_and_only_a_new_one_restored, .timeout = 60)
{
    char *dir = temp_dir();
    assert_fails(kvmc_vm_snapshot(NULL, dir), KVMC_EINVAL, "NULL");
    assert_fails(kvmc_vm_restore(NULL, dir), KVMC_EINVAL, "NULL");
    kvmc_vm *vm = flood_vm(NULL, (struct vm_opts){0});
    assert_fails(kvmc_vm_snapshot(vm, NULL), KVMC_EINVAL, "NULL");
    assert_fails(kvmc_vm_snapshot(vm, dir), KVMC_ESTATE, "not paused");
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    assert_fails(kvmc_vm_snapshot(vm, dir), KVMC_ESTATE, "not paused");
    assert_fails(kvmc_vm_restore(vm, dir), KVMC_ESTATE, "started already");
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    assert_fails(kvmc_vm_restore(vm, dir), KVMC_ESTATE, "started already");
    cr_assert_eq(kvmc_vm_snapshot(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    /* Saving again overwrites; the VM stays paused and runs on after. */
    cr_assert_eq(kvmc_vm_snapshot(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_PAUSED);
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    kvmc_vm_stop(vm);
    kvmc_vm_wait(vm, -1, NULL);
    assert_fails(kvmc_vm_snapshot(vm, dir), KVMC_ESTATE, "not paused");
    kvmc_vm_destroy(vm);
    remove_dir(dir);
    free(dir);
}

/* A fresh VM of options o must refuse dir with `want` and `text`, and then
 * refuse to start. */
static void assert_refused(const char *dir, struct vm_opts o, int want, const char *text)
{
    kvmc_vm *vm = flood_vm(NULL, o);
    assert_fails(kvmc_vm_restore(vm, dir), want, text);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_ESTATE, "a VM whose restore failed started");
    kvmc_vm_destroy(vm);
}

static void rewrite(const char *dir, const char *name, long at, const void *bytes, size_t n,
                    off_t truncate_to)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    cr_assert(fd >= 0, "%s", path);
    if (bytes)
        cr_assert_eq(pwrite(fd, bytes, n, at), (ssize_t)n);
    if (truncate_to >= 0)
        cr_assert_eq(ftruncate(fd, truncate_to), 0);
    close(fd);
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name)
{
    char a[1024], b[1024], buf[65536];
    snprintf(a, sizeof(a), "%s/%s", from_dir, name);
    snprintf(b, sizeof(b), "%s/%s", to_dir, name);
    int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(in >= 0 && out >= 0);
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        cr_assert_eq(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

Test(snapshot, a_different_vm_or_a_bad_file_is_refused_naming_why, .timeout = 60)
{
    struct capture c1;
    struct vm_opts o = {0};
    char *dir = save_flood(&c1, o);
    assert_refused(dir, (struct vm_opts){.memory = 64u << 20}, KVMC_EINVAL, "32 MiB");
    assert_refused(dir, (struct vm_opts){.cpus = 2}, KVMC_EINVAL, "1 vCPUs");
    assert_refused(dir, (struct vm_opts){.pit = true}, KVMC_EINVAL, "PIT");
    assert_refused(dir, (struct vm_opts){.rng = true}, KVMC_EINVAL,
                   "this VM has a virtio-rng (virtio device 0), which the snapshot lacks");
    assert_refused("/nonexistent/kvmc-snapshot", o, KVMC_EIO,
                   "restore: /nonexistent/kvmc-snapshot: No such file");

    /* Damage copies of the files, one way each. */
    char *bad = temp_dir();
    struct stat st;
    char path[1024];
    snprintf(path, sizeof(path), "%s/state", dir);
    cr_assert_eq(stat(path, &st), 0);
    copy_file(dir, bad, "memory");
    copy_file(dir, bad, "state");
    rewrite(bad, "state", 0, NULL, 0, st.st_size - 1);
    assert_refused(bad, o, KVMC_EFORMAT, "truncated");
    copy_file(dir, bad, "state");
    rewrite(bad, "state", st.st_size / 2, "\xff", 1, -1);
    assert_refused(bad, o, KVMC_EFORMAT, "checksum");
    copy_file(dir, bad, "state");
    rewrite(bad, "state", 8, "\x09", 1, -1);
    assert_refused(bad, o, KVMC_ENOTSUP, "format 9");
    copy_file(dir, bad, "state");
    rewrite(bad, "state", 0, "KVMCSNAQ", 8, -1);
    assert_refused(bad, o, KVMC_EFORMAT, "not a kvmc snapshot");
    copy_file(dir, bad, "state");
    rewrite(bad, "memory", 0, NULL, 0, RAM / 2);
    assert_refused(bad, o, KVMC_EFORMAT, "the snapshot's RAM is");
    snprintf(path, sizeof(path), "%s/memory", bad);
    unlink(path);
    assert_refused(bad, o, KVMC_EIO, "memory");
    remove_dir(bad);
    free(bad);

    /* The undamaged snapshot still restores after all that. */
    restore_and_check(dir, &c1, o);
    remove_dir(dir);
    free(dir);
    free(c1.text);
}

static uint64_t no_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque, (void)offset, (void)size;
    return 0;
}

Test(snapshot, devices_that_cannot_be_saved_yet_are_named, .timeout = 60)
{
    char *dir = temp_dir();
    kvmc_vm *vm = flood_vm(NULL, (struct vm_opts){0});
    kvmc_pci_device pci = KVMC_PCI_DEVICE_INIT;
    pci.vendor_id = 0x1234;
    pci.device_id = 0x5678;
    pci.bars[0] = (kvmc_pci_bar){4096, KVMC_PCI_BAR_MEM32};
    cr_assert_eq(kvmc_vm_add_pci_device(vm, &pci, NULL, NULL), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    assert_fails(kvmc_vm_snapshot(vm, dir), KVMC_ENOTSUP, "PCI devices (from the program)");
    kvmc_vm_destroy(vm);

    vm = flood_vm(NULL, (struct vm_opts){0});
    kvmc_device_ops ops = KVMC_DEVICE_OPS_INIT;
    ops.read = no_read;
    cr_assert_eq(kvmc_vm_add_pio_device(vm, 0x700, 4, &ops, NULL), KVMC_OK);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    assert_fails(kvmc_vm_snapshot(vm, dir), KVMC_ENOTSUP, "kvmc_vm_add_pio_device");
    kvmc_vm_destroy(vm);
    char path[1024];
    snprintf(path, sizeof(path), "%s/state", dir);
    cr_assert_neq(access(path, F_OK), 0, "a refused snapshot left a state file");
    remove_dir(dir);
    free(dir);
}

/* ------------------------------------------------------------ the CLI */

static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static pid_t spawn_cli(char *const argv[])
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        signal(SIGINT, SIG_DFL);
        execv(KVMC_CLI, argv);
        _exit(127);
    }
    return pid;
}

static void wait_file(const char *path, size_t bytes)
{
    for (int i = 0; i < 3000 && file_size(path) < bytes; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cr_assert_geq(file_size(path), bytes, "%s stayed at %zu bytes", path, file_size(path));
}

static char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    cr_assert(fd >= 0, "%s", path);
    size_t n = file_size(path);
    char *buf = malloc(n + 1);
    cr_assert_eq(read(fd, buf, n), (ssize_t)n);
    close(fd);
    *len = n;
    return buf;
}

Test(snapshot, the_cli_saves_on_sigusr2_and_a_new_process_restores, .timeout = 60)
{
    char *dir = temp_dir();
    char snap[512], out1[512], out2[512], console1[600], console2[600];
    snprintf(snap, sizeof(snap), "%s/snap", dir);
    snprintf(out1, sizeof(out1), "%s/out1", dir);
    snprintf(out2, sizeof(out2), "%s/out2", dir);
    snprintf(console1, sizeof(console1), "file:%s", out1);
    snprintf(console2, sizeof(console2), "file:%s", out2);
    char *run[] = {KVMC_CLI, "run", "--kernel", KVMC_TEST_GUEST_ELF, "--mem", "32M",
                   "--cmdline", "kvmc.test=flood", "--console", console1,
                   "--snapshot-on-signal", snap, NULL};
    pid_t pid = spawn_cli(run);
    wait_file(out1, 20000);
    kill(pid, SIGUSR2);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 5, "status 0x%x", status);

    char *again[] = {KVMC_CLI, "run", "--mem", "32M", "--console", console2, "--restore", snap,
                     NULL};
    pid = spawn_cli(again);
    wait_file(out2, 20000);
    kill(pid, SIGTERM);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status 0x%x", status);

    size_t l1, l2;
    char *a = slurp(out1, &l1), *b = slurp(out2, &l2);
    char *both = malloc(l1 + l2);
    memcpy(both, a, l1);
    memcpy(both + l1, b, l2);
    cr_assert_gt(assert_consecutive(both, l1 + l2), 600);

    /* A VM that differs: one line, status 2. */
    char *wrong[] = {KVMC_CLI, "run", "--mem", "64M", "--console", "none", "--restore", snap,
                     NULL};
    pid = spawn_cli(wrong);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status 0x%x", status);

    free(a);
    free(b);
    free(both);
    unlink(out1);
    unlink(out2);
    remove_dir(snap);
    rmdir(dir);
    free(dir);
}

/* ------------------------------------------------------- fast reset */

static void pause_mark(kvmc_vm *vm, struct capture *c, size_t *mark)
{
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK, "%s", kvmc_last_error());
    *mark = out_len(c);
}

/* The guest after a reset writes exactly what it wrote the first time
 * after the snapshot, its registers are the snapshot's, and what the host
 * wrote into its RAM since is gone. Many times over, on the VM that took
 * the snapshot and on one restored from it. */
static void reset_loop(kvmc_vm *vm, struct capture *c, const char *ref, size_t ref_len,
                       const kvmc_regs *at_snapshot, unsigned rounds)
{
    double total_ms = 0;
    for (unsigned i = 0; i < rounds; i++) {
        size_t mark;
        pause_mark(vm, c, &mark);
        uint64_t junk = 0x5a5a5a5a5a5a5a5aull;
        cr_assert_eq(kvmc_vm_write_memory(vm, 0x1000000, &junk, 8), KVMC_OK);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cr_assert_eq(kvmc_vm_reset_to_snapshot(vm), KVMC_OK, "%s", kvmc_last_error());
        total_ms += ms_since(&t0);
        cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_PAUSED, "a paused VM stays paused");
        kvmc_regs regs = KVMC_REGS_INIT;
        cr_assert_eq(kvmc_vm_get_regs(vm, 0, &regs), KVMC_OK);
        cr_assert_eq(memcmp(&regs, at_snapshot, sizeof(regs)), 0,
                     "round %u: registers differ from the snapshot's (rip 0x%llx, not 0x%llx)",
                     i, (unsigned long long)regs.rip, (unsigned long long)at_snapshot->rip);
        uint64_t back;
        cr_assert_eq(kvmc_vm_read_memory(vm, 0x1000000, &back, 8), KVMC_OK);
        cr_assert_neq(back, junk, "round %u: RAM written after the snapshot survived", i);
        cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
        wait_for(c, mark + ref_len);
        pthread_mutex_lock(&c->lock);
        int same = memcmp(c->text + mark, ref, ref_len);
        pthread_mutex_unlock(&c->lock);
        cr_assert_eq(same, 0, "round %u: after the reset the guest wrote [%.40s...], the first "
                     "time [%.40s...]", i, c->text + mark, ref);
        if (c->len > OUT_MAX - 2 * ref_len) { /* keep the capture from filling */
            pthread_mutex_lock(&c->lock);
            c->len = 0;
            pthread_mutex_unlock(&c->lock);
        }
    }
    cr_log_info("%u resets, %.3f ms each on average", rounds, total_ms / rounds);
}

Test(snapshot, reset_puts_the_vm_back_to_its_snapshot_again_and_again, .timeout = 120)
{
    struct capture c;
    kvmc_vm *vm = flood_vm(&c, (struct vm_opts){0});
    char *dir = temp_dir();
    assert_fails(kvmc_vm_reset_to_snapshot(vm), KVMC_ESTATE, "no snapshot");
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_for(&c, 20000);
    size_t mark;
    pause_mark(vm, &c, &mark);
    cr_assert_eq(kvmc_vm_snapshot(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    kvmc_regs at_snapshot = KVMC_REGS_INIT;
    cr_assert_eq(kvmc_vm_get_regs(vm, 0, &at_snapshot), KVMC_OK);
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    const size_t ref_len = 1500;
    wait_for(&c, mark + ref_len);
    char *ref = malloc(ref_len);
    pthread_mutex_lock(&c.lock);
    memcpy(ref, c.text + mark, ref_len);
    pthread_mutex_unlock(&c.lock);

    reset_loop(vm, &c, ref, ref_len, &at_snapshot, 100);
    /* A running VM: paused for the reset, running after. */
    cr_assert_eq(kvmc_vm_reset_to_snapshot(vm), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_RUNNING);
    kvmc_vm_stop(vm);
    kvmc_vm_wait(vm, -1, NULL);
    assert_fails(kvmc_vm_reset_to_snapshot(vm), KVMC_ESTATE, "exited");
    assert_fails(kvmc_vm_reset_to_snapshot(NULL), KVMC_EINVAL, "NULL");
    kvmc_vm_destroy(vm);

    /* A VM restored from the files resets to them too. */
    struct capture c2;
    kvmc_vm *vm2 = flood_vm(&c2, (struct vm_opts){0});
    cr_assert_eq(kvmc_vm_restore(vm2, dir), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(vm2), KVMC_OK);
    wait_for(&c2, ref_len);
    cr_assert_eq(memcmp(c2.text, ref, ref_len), 0, "the restored VM wrote something else");
    reset_loop(vm2, &c2, ref, ref_len, &at_snapshot, 25);
    kvmc_vm_destroy(vm2);
    remove_dir(dir);
    free(dir);
    free(ref);
    free(c.text);
    free(c2.text);
}

/* --------------------------------------------------- diff snapshots */

static uint64_t disk_use(const char *dir)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof(path), "%s/memory", dir);
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    cr_assert_eq((uint64_t)st.st_size, RAM, "a memory file is RAM-sized");
    return (uint64_t)st.st_blocks * 512;
}


/* Restores dir into vm (new) and checks it goes on from the first `upto`
 * bytes of c's output, and that RAM at gpa holds `page`. */
static void diff_restores(kvmc_vm *vm, struct capture *c2, const char *dir,
                          const struct capture *c, size_t upto, uint64_t gpa,
                          const uint8_t *page)
{
    cr_assert_eq(kvmc_vm_restore(vm, dir), KVMC_OK, "%s: %s", dir, kvmc_last_error());
    uint8_t back[4096];
    cr_assert_eq(kvmc_vm_read_memory(vm, gpa, back, sizeof(back)), KVMC_OK);
    cr_assert_eq(memcmp(back, page, sizeof(back)), 0,
                 "%s: the page the host wrote after the base is not in the diff", dir);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_for(c2, 20000);
    kvmc_vm_stop(vm);
    kvmc_vm_wait(vm, -1, NULL);
    kvmc_vm_destroy(vm);
    char *both = malloc(upto + c2->len);
    memcpy(both, c->text, upto);
    memcpy(both + upto, c2->text, c2->len);
    assert_consecutive(both, upto + c2->len);
    free(both);
    free(c2->text);
}

static void run_on(kvmc_vm *vm, struct capture *c, size_t bytes, size_t *mark)
{
    size_t from = out_len(c);
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    wait_for(c, from + bytes);
    pause_mark(vm, c, mark);
}

/* A diff holds the pages written since its base, by the guest or by the
 * host (a device model writes guest RAM the way kvmc_vm_write_memory
 * does), restores on its base alone, in this process or a new VM, with
 * mapped or memfd RAM; what cannot be a base or a diff is refused. */
Test(snapshot, a_diff_holds_only_what_changed_and_restores_on_its_base, .timeout = 120)
{
    struct capture c;
    kvmc_vm *vm = flood_vm(&c, (struct vm_opts){0});
    char *base = temp_dir(), *diff1 = temp_dir(), *diff2 = temp_dir(), *diff3 = temp_dir();
    kvmc_snapshot_options diff = KVMC_SNAPSHOT_OPTIONS_INIT;
    diff.flags = KVMC_SNAPSHOT_DIFF;
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_for(&c, 20000);
    size_t mark0, mark1, mark2;
    pause_mark(vm, &c, &mark0);
    assert_fails(kvmc_vm_snapshot_ext(vm, diff1, &diff), KVMC_ESTATE, "take a full one first");
    cr_assert_eq(kvmc_vm_snapshot(vm, base), KVMC_OK, "%s", kvmc_last_error());

    const uint64_t gpa = RAM - (1u << 20);
    uint8_t page[4096];
    memset(page, 0xa5, sizeof(page));
    cr_assert_eq(kvmc_vm_write_memory(vm, gpa, page, sizeof(page)), KVMC_OK);
    run_on(vm, &c, 3000, &mark1);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(kvmc_vm_snapshot_ext(vm, diff1, &diff), KVMC_OK, "%s", kvmc_last_error());
    cr_log_info("diff snapshot: %.2f ms, %llu KiB on disk (base %llu KiB)", ms_since(&t0),
                (unsigned long long)disk_use(diff1) >> 10,
                (unsigned long long)disk_use(base) >> 10);
    cr_assert_lt(disk_use(diff1), disk_use(base) / 4, "the diff holds more than what changed");
    cr_assert_geq(disk_use(diff1), 4096u, "the diff holds nothing");
    assert_fails(kvmc_vm_snapshot_ext(vm, base, &diff), KVMC_EINVAL, "base's own directory");

    /* Diffs do not chain: the second holds the first one's pages too. */
    run_on(vm, &c, 3000, &mark2);
    cr_assert_eq(kvmc_vm_snapshot_ext(vm, diff2, &diff), KVMC_OK, "%s", kvmc_last_error());
    kvmc_regs at_diff2 = KVMC_REGS_INIT, regs = KVMC_REGS_INIT;
    cr_assert_eq(kvmc_vm_get_regs(vm, 0, &at_diff2), KVMC_OK);
    /* A fast reset goes back to the last diff. */
    size_t ignore;
    run_on(vm, &c, 3000, &ignore);
    cr_assert_eq(kvmc_vm_reset_to_snapshot(vm), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_get_regs(vm, 0, &regs), KVMC_OK);
    cr_assert_eq(regs.rip, at_diff2.rip, "reset did not go back to the diff");
    cr_assert_eq(memcmp(&regs, &at_diff2, sizeof(regs)), 0, "reset: registers differ");
    uint8_t back[4096];
    cr_assert_eq(kvmc_vm_read_memory(vm, gpa, back, sizeof(back)), KVMC_OK);
    cr_assert_eq(memcmp(back, page, sizeof(back)), 0, "reset lost the diff's page");
    kvmc_vm_destroy(vm);

    struct capture c2;
    diff_restores(flood_vm(&c2, (struct vm_opts){0}), &c2, diff1, &c, mark1, gpa, page);
    diff_restores(flood_vm(&c2, (struct vm_opts){0}), &c2, diff2, &c, mark2, gpa, page);
    diff_restores(flood_vm(&c2, (struct vm_opts){.memfd = true}), &c2, diff1, &c, mark1, gpa, page);

    /* A VM restored from a diff takes diffs on the same base. */
    kvmc_vm *vm3 = flood_vm(&c2, (struct vm_opts){0});
    cr_assert_eq(kvmc_vm_restore(vm3, diff1), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(vm3), KVMC_OK);
    wait_for(&c2, 3000);
    size_t mark3;
    pause_mark(vm3, &c2, &mark3);
    cr_assert_eq(kvmc_vm_snapshot_ext(vm3, diff3, &diff), KVMC_OK, "%s", kvmc_last_error());
    kvmc_vm_destroy(vm3);
    struct capture c1 = c;
    char *joined = malloc(mark1 + mark3);
    memcpy(joined, c.text, mark1);
    memcpy(joined + mark1, c2.text, mark3);
    c1.text = joined;
    free(c2.text);
    struct capture c4;
    diff_restores(flood_vm(&c4, (struct vm_opts){0}), &c4, diff3, &c1, mark1 + mark3, gpa, page);
    free(joined);

    /* A memfd VM cannot tell what it wrote: no diffs. */
    kvmc_vm *m = flood_vm(&c4, (struct vm_opts){.memfd = true});
    cr_assert_eq(kvmc_vm_restore(m, base), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(m), KVMC_OK);
    cr_assert_eq(kvmc_vm_pause(m), KVMC_OK);
    assert_fails(kvmc_vm_snapshot_ext(m, diff3, &diff), KVMC_ENOTSUP, "memfd");
    kvmc_vm_destroy(m);
    free(c4.text);

    /* Options are checked. */
    kvmc_snapshot_options o = diff;
    o.version = 0;
    assert_fails(kvmc_vm_snapshot_ext(NULL, diff3, &o), KVMC_EINVAL, "version 0");
    o.version = 99;
    assert_fails(kvmc_vm_snapshot_ext(NULL, diff3, &o), KVMC_ENOTSUP, "version 99");
    o = diff;
    o.flags = 0x80;
    assert_fails(kvmc_vm_snapshot_ext(NULL, diff3, &o), KVMC_EINVAL, "unknown flags 0x80");

    /* A base replaced by another snapshot, or gone, is named. */
    kvmc_vm *v = flood_vm(NULL, (struct vm_opts){0});
    cr_assert_eq(kvmc_vm_restore(v, diff2), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(v), KVMC_OK);
    cr_assert_eq(kvmc_vm_pause(v), KVMC_OK);
    cr_assert_eq(kvmc_vm_snapshot(v, base), KVMC_OK, "%s", kvmc_last_error());
    kvmc_vm_destroy(v);
    assert_refused(diff1, (struct vm_opts){0}, KVMC_EINVAL, "was replaced by another snapshot");
    remove_dir(base);
    assert_refused(diff1, (struct vm_opts){0}, KVMC_EIO, "the diff's base");
    char *dirs[] = {base, diff1, diff2, diff3};
    for (unsigned i = 0; i < 4; i++) {
        remove_dir(dirs[i]);
        free(dirs[i]);
    }
    free(c.text);
}

/* ---------------------------------------------------- virtio devices */

/* The guest writes, reads back and checks a disk sector and takes rng
 * bytes on every line (kvmc.test=disk-count). */
/* The host's end of the guest's vsock connections: port 5000 answers each
 * read in capitals, then waits for the end of the stream. */
struct echo_server {
    int fd;
    pthread_t thread;
    char path[108];
};

static void *echo_serve(void *opaque)
{
    struct echo_server *e = opaque;
    int c;
    while ((c = accept(e->fd, NULL, NULL)) >= 0) {
        char buf[64];
        ssize_t n = read(c, buf, sizeof(buf));
        for (ssize_t i = 0; i < n; i++)
            buf[i] = (char)toupper((unsigned char)buf[i]);
        if (n > 0 && write(c, buf, (size_t)n) == n)
            while (read(c, buf, sizeof(buf)) > 0) {
            }
        close(c);
    }
    return NULL;
}

static void echo_start(struct echo_server *e, const char *uds)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(e->path, sizeof(e->path), "%s_5000", uds);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->path);
    unlink(e->path);
    e->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(e->fd >= 0);
    cr_assert_eq(bind(e->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(e->fd, 8), 0);
    cr_assert_eq(pthread_create(&e->thread, NULL, echo_serve, e), 0);
}

static void echo_stop(struct echo_server *e)
{
    shutdown(e->fd, SHUT_RDWR); /* accept() returns */
    pthread_join(e->thread, NULL);
    close(e->fd);
    unlink(e->path);
}

static kvmc_virtio_transport transport = KVMC_VIRTIO_MMIO;

static kvmc_vm *disk_vm(struct capture *c, const char *disk, const char *vsock_uds)
{
    kvmc_config *cfg;
    kvmc_vm *vm;
    capture_init(c);
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_kernel(cfg, KVMC_TEST_GUEST_ELF), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory(cfg, RAM), KVMC_OK);
    cr_assert_eq(kvmc_config_set_cmdline(cfg, "kvmc.test=disk-count"), KVMC_OK);
    cr_assert_eq(kvmc_config_add_disk(cfg, disk, 0, "snapdisk"), KVMC_OK);
    cr_assert_eq(kvmc_config_set_rng(cfg, 1), KVMC_OK);
    if (vsock_uds)
        cr_assert_eq(kvmc_config_set_vsock(cfg, 3, vsock_uds), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_config_set_virtio_transport(cfg, transport), KVMC_OK);
    cr_assert_eq(kvmc_config_set_console_callback(cfg, capture, c), KVMC_OK);
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    return vm;
}

static bool has_text(struct capture *c, size_t from, const char *text)
{
    pthread_mutex_lock(&c->lock);
    bool found = c->len > from && memmem(c->text + from, c->len - from, text, strlen(text));
    pthread_mutex_unlock(&c->lock);
    return found;
}

static void wait_text(struct capture *c, size_t from, const char *text)
{
    for (int i = 0; i < 3000 && !has_text(c, from, text); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cr_assert(has_text(c, from, text), "never saw [%s]; the guest wrote [%.300s]", text,
              c->text + (c->len > 300 ? c->len - 300 : 0));
}

/* The "disk line N ok" lines of text: consecutive, none FAILED, none torn.
 * Returns the first and last numbers. */
static void disk_lines_of(const char *label, const char *text, size_t len, long *first,
                          long *last)
{
    const char *p = text, *end = text + len;
    *first = *last = -1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        long n;
        char word[8];
        if (sscanf(p, "disk line %ld %7s", &n, word) == 2) {
            cr_assert_str_eq(word, "ok", "line %ld: %s (%s; around it: [%.200s])", n, word,
                             label, p > text + 100 ? p - 100 : text);
            cr_assert(*last < 0 || n == *last + 1, "disk line %ld after %ld", n, *last);
            if (*first < 0)
                *first = n;
            *last = n;
        } else {
            /* The banner comes first; once counting, every line counts. */
            cr_assert(*first < 0, "a torn line: [%.*s]", (int)(nl - p), p);
        }
        p = nl + 1;
    }
}

static void disk_lines(struct capture *c, size_t from, long *first, long *last)
{
    pthread_mutex_lock(&c->lock);
    const char *p = memchr(c->text + from, '\n', c->len - from); /* skip a cut first line */
    cr_assert(p);
    disk_lines_of("one VM", p + 1, (size_t)(c->text + c->len - p - 1), first, last);
    pthread_mutex_unlock(&c->lock);
}

/* c1's output then c2's from `from`: one unbroken count across the seam. */
static void disk_lines_across(struct capture *c1, struct capture *c2, size_t from, long *last)
{
    size_t n2 = c2->len - from;
    char *both = malloc(c1->len + n2);
    memcpy(both, c1->text, c1->len);
    memcpy(both + c1->len, c2->text + from, n2);
    const char *p = memchr(both, '\n', c1->len + n2);
    long first;
    disk_lines_of(from ? "saved, then reset" : "saved, then restored", p + 1,
                  (size_t)(both + c1->len + n2 - p - 1), &first, last);
    free(both);
}

/* The guest's vsock connections end with a restore or reset: it got one
 * transport reset event (its count is in the lines after), and connected
 * again (every line still "ok"). */
static void assert_vsock_reset_once(struct capture *c, size_t from)
{
    cr_assert(has_text(c, from, "ok vsock resets 1\n"), "no line after the restore says the "
              "guest saw its vsock transport reset");
    cr_assert(!has_text(c, from, "vsock resets 2"), "more than one transport reset");
}

static void disk_rng_and_vsock_across_a_restore_and_resets(void);

Test(snapshot, a_guest_using_its_disk_rng_and_vsock_goes_on_after_a_restore_and_resets,
     .timeout = 120)
{
    disk_rng_and_vsock_across_a_restore_and_resets();
}

/* The same over virtio-pci: config space, BARs, MSI-X table and vector
 * choices come back with the queues. */
Test(snapshot, over_virtio_pci_too, .timeout = 120)
{
    transport = KVMC_VIRTIO_PCI;
    disk_rng_and_vsock_across_a_restore_and_resets();
}

static void disk_rng_and_vsock_across_a_restore_and_resets(void)
{
    char disk[] = "/tmp/kvmc-snapdisk-XXXXXX";
    int fd = mkstemp(disk);
    cr_assert(fd >= 0);
    cr_assert_eq(ftruncate(fd, 1 << 20), 0);
    close(fd);
    char uds[64];
    snprintf(uds, sizeof(uds), "/tmp/kvmc-snapvsock-%d.sock", (int)getpid());
    struct echo_server echo;
    echo_start(&echo, uds);
    struct capture c1, c2;
    kvmc_vm *vm = disk_vm(&c1, disk, uds);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    wait_text(&c1, 0, "disk line 200 ok");
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    char *dir = temp_dir();
    cr_assert_eq(kvmc_vm_snapshot(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    static char saved_disk[1 << 20];
    int sfd = open(disk, O_RDONLY);
    cr_assert(sfd >= 0);
    cr_assert_eq(pread(sfd, saved_disk, sizeof(saved_disk), 0), (ssize_t)sizeof(saved_disk));
    close(sfd);
    long first1, last1;
    disk_lines(&c1, 0, &first1, &last1);
    (void)first1;
    kvmc_vm_destroy(vm);

    cr_assert(!has_text(&c1, 0, "vsock resets"), "a transport reset before any restore");
    vm = disk_vm(&c2, disk, uds);
    cr_assert_eq(kvmc_vm_restore(vm, dir), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    char want[64];
    /* Line last1 + 300 is whole once the next one has begun. */
    snprintf(want, sizeof(want), "disk line %ld ", last1 + 301);
    wait_text(&c2, 0, want);
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    long last2;
    disk_lines_across(&c1, &c2, 0, &last2);
    cr_assert_geq(last2, last1 + 300);
    assert_vsock_reset_once(&c2, 0);
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    /* Reset: the count again from the snapshot's line. A disk image is not
     * part of a snapshot (docs/snapshots.md): the guest wrote on after it,
     * so the image saved with the snapshot is put back first, as a harness
     * does (a copy, or a copy-on-write overlay). */
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    size_t mark = out_len(&c2);
    int dfd = open(disk, O_WRONLY);
    cr_assert(dfd >= 0);
    cr_assert_eq(pwrite(dfd, saved_disk, 1 << 20, 0), 1 << 20);
    close(dfd);
    cr_assert_eq(kvmc_vm_reset_to_snapshot(vm), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    wait_text(&c2, mark, want);
    long last3;
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK);
    disk_lines_across(&c1, &c2, mark, &last3);
    cr_assert_geq(last3, last1 + 300);
    assert_vsock_reset_once(&c2, mark);
    kvmc_vm_destroy(vm);

    /* Another disk size: refused, naming both. */
    cr_assert_eq(truncate(disk, 2 << 20), 0);
    struct capture c3;
    vm = disk_vm(&c3, disk, uds);
    assert_fails(kvmc_vm_restore(vm, dir), KVMC_EINVAL, "disk had 2048 sectors");
    kvmc_vm_destroy(vm);
    /* Without the vsock: refused, naming it. */
    cr_assert_eq(truncate(disk, 1 << 20), 0);
    free(c3.text);
    vm = disk_vm(&c3, disk, NULL);
    assert_fails(kvmc_vm_restore(vm, dir), KVMC_EINVAL,
                 "the snapshot has a virtio-vsock (virtio device 2), which this VM lacks");
    kvmc_vm_destroy(vm);
    unlink(disk);
    remove_dir(dir);
    free(dir);
    echo_stop(&echo);
    free(c1.text);
    free(c2.text);
    free(c3.text);
}
