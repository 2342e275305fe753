/* kvmc: command-line front end of libkvmc. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmc/kvmc.h"
#include "terminal.h"
#include "jail.h"
#include "options.h"

extern const unsigned char kvmc_default_guest[], kvmc_default_guest_end[];

enum {
    EXIT_GUEST_OK = 0,       /* guest powered off with status 0, or reset */
    EXIT_GUEST_FAILED = 1,   /* guest powered off with a non-zero status */
    EXIT_USAGE = 2,          /* bad option or configuration */
    EXIT_VM_ERROR = 3,       /* triple fault, KVM or VMM error */
    EXIT_GUEST_PANIC = 4,    /* the guest kernel panicked (pvpanic) */
    EXIT_SNAPSHOT = 5,       /* saved on SIGUSR2 (--snapshot-on-signal) and stopped */
    EXIT_INTERRUPTED = 130,  /* SIGINT/SIGTERM stopped the VM */
};

static const char usage_main[] =
    "usage: kvmc <command> [options]\n"
    "\n"
    "kvmc creates and runs KVM guests without QEMU.\n"
    "\n"
    "commands:\n"
    "  run        boot a kernel (or the built-in test guest) and wait for it\n"
    "  version    print the kvmc version\n"
    "  help       show this help; 'kvmc run --help' explains run's options\n"
    "\n"
    "options: -h, --help; -V, --version\n";

static const char usage_run[] =
    "usage: kvmc run [--kernel PATH] [--initrd PATH] [--cmdline STR]\n"
    "                [--mem SIZE] [--cpus N] [--console stdio|none|file:PATH]\n"
    "                [--console-limit SIZE]\n"
    "                [--boot auto|linux|pvh] [--mem-backing anon|memfd|hugetlb]\n"
    "                [--disk PATH[,ro][,nolock][,serial=ID]]... [--rng] [--net SPEC]...\n"
    "                [--vsock cid=N,uds=PATH] [--virtio-console socket:PATH] [--pit]\n"
    "                [--transport mmio|pci] [--vfio ADDRESS]...\n"
    "                [--seccomp on|off] [--jail] [--jail-user UID[:GID]] [--jail-report]\n"
    "\n"
    "Boots a guest and waits until it powers off, resets or fails.\n"
    "Without --kernel, boots the built-in test guest, which prints what it\n"
    "found (memory map, CPUs, command line) and powers off.\n"
    "\n"
    "options:\n";

static const char usage_run_after[] =
    "\n"
    "exit status:\n"
    "  0    the guest powered off (ACPI S5, or status 0 on port 0x501),\n"
    "       or reset itself (i8042 or ACPI reset)\n"
    "  1    the guest powered off with a non-zero status\n"
    "  2    bad option, or the VM could not be created (message says why)\n"
    "  3    the VM failed: triple fault, KVM internal or emulation error\n"
    "  4    the guest kernel panicked (reported through the pvpanic device;\n"
    "       Linux needs its pvpanic-mmio driver)\n"
    "  5    saved on SIGUSR2 (--snapshot-on-signal) and stopped; continue it\n"
    "       with kvmc run --restore DIR and the same options\n"
    "  130  interrupted by SIGINT, SIGTERM or SIGHUP\n"
    "\n"
    "examples:\n"
    "  kvmc run\n"
    "  kvmc run --kernel bzImage --initrd initrd.cpio --cmdline \"console=ttyS0\" \\\n"
    "           --mem 512M --cpus 2\n"
    "  kvmc run --kernel bzImage --initrd initrd.cpio --disk rootfs.ext4 --rng \\\n"
    "           --net user,hostfwd=tcp::2222-:22 --vsock cid=3,uds=/tmp/vm.sock\n"
    "  kvmc run --kernel bzImage --initrd initrd.cpio --vfio 0000:00:03.0\n"
    "  kvmc run --mem 512M --snapshot-on-signal /tmp/snap &   # later: kill -USR2 $!\n"
    "  kvmc run --mem 512M --restore /tmp/snap\n";

/* A thread that turns SIGINT, SIGTERM and SIGHUP into kvmc_vm_stop(), and
 * SIGUSR2 into a snapshot (--snapshot-on-signal). */
struct signal_watch {
    kvmc_vm *vm;
    bool confine;
    const char *snapshot_dir;
    sigset_t set;
    volatile sig_atomic_t interrupted;
    volatile sig_atomic_t saved;
};

/* Pause, save, stop; or, if saving fails, say why and run on. */
static bool snapshot_and_stop(struct signal_watch *w)
{
    if (kvmc_vm_pause(w->vm) != KVMC_OK)
        return false; /* it exited meanwhile: nothing to save */
    if (kvmc_vm_snapshot(w->vm, w->snapshot_dir) != KVMC_OK) {
        fprintf(stderr, "kvmc: %s; the guest runs on\n", kvmc_last_error());
        kvmc_vm_resume(w->vm);
        return false;
    }
    fprintf(stderr, "kvmc: saved the guest into %s\n", w->snapshot_dir);
    w->saved = 1;
    kvmc_vm_stop(w->vm);
    return true;
}

/* Ctrl-A x on the console (terminal.h). */
static void quit_from_console(void *opaque)
{
    struct signal_watch *w = opaque;
    w->interrupted = 1;
    kvmc_vm_stop(w->vm);
}

static void *signal_thread(void *arg)
{
    struct signal_watch *w = arg;
    /* Writing a snapshot takes more than the control thread's list allows
     * (files, KVM's state ioctls): that thread stays unconfined. */
    if (w->confine && !w->snapshot_dir && kvmc_seccomp_confine_control_thread() != KVMC_OK)
        fprintf(stderr, "kvmc: %s\n", kvmc_last_error());
    int sig;
    while (sigwait(&w->set, &sig) == 0 && sig != SIGUSR1) {
        if (sig == SIGUSR2) {
            if (snapshot_and_stop(w))
                break;
            continue;
        }
        w->interrupted = 1;
        kvmc_vm_stop(w->vm);
        break;
    }
    return NULL;
}

static int configure(const struct run_options *o, struct jail *jail, int console_in,
                     kvmc_config *cfg)
{
    int err = KVMC_OK;
    if (o->kernel)
        err = kvmc_config_set_kernel(cfg, o->kernel);
    else
        err = kvmc_config_set_kernel_image(
            cfg, kvmc_default_guest, (size_t)(kvmc_default_guest_end - kvmc_default_guest));
    if (!err && o->initrd)
        err = kvmc_config_set_initrd(cfg, o->initrd);
    if (!err && o->cmdline)
        err = kvmc_config_set_cmdline(cfg, o->cmdline);
    if (!err)
        err = kvmc_config_set_memory(cfg, o->memory);
    if (!err)
        err = kvmc_config_set_memory_flags(cfg, o->mem_flags);
    for (unsigned i = 0; i < o->ndisks && !err; i++)
        err = kvmc_config_add_disk(cfg, o->disks[i].path,
                                   (o->disks[i].read_only ? KVMC_DISK_READ_ONLY : 0) |
                                       (o->disks[i].no_lock ? KVMC_DISK_NO_LOCK : 0),
                                   o->disks[i].serial);
    if (!err && o->rng)
        err = kvmc_config_set_rng(cfg, 1);
    if (!err)
        err = kvmc_config_set_virtio_transport(cfg, o->transport);
    if (!err && o->pit)
        err = kvmc_config_set_pit(cfg, 1);
    if (!err && o->vconsole_socket)
        err = kvmc_config_set_virtio_console_socket(cfg, o->vconsole_socket);
    if (!err && o->vsock_cid)
        err = kvmc_config_set_vsock(cfg, o->vsock_cid, o->vsock_path);
    if (!err && o->vsock_cid && o->jail) /* the jail has no path to connect to */
        err = kvmc_config_set_vsock_connector(cfg, jail_vsock_connect, jail);
    for (unsigned i = 0; i < o->nnets && !err; i++)
        err = kvmc_config_add_net(cfg, o->nets[i]);
    for (unsigned i = 0; i < o->nvfio && !err; i++)
        err = kvmc_config_add_vfio(cfg, o->vfio[i]);
    if (!err)
        err = kvmc_config_set_cpus(cfg, o->cpus);
    if (!err)
        err = kvmc_config_set_boot_protocol(cfg, o->boot);
    if (!err) {
        switch (o->console) {
        case CONSOLE_OPT_STDIO:
            err = kvmc_config_set_console_fd(cfg, STDOUT_FILENO);
            if (!err)
                err = kvmc_config_set_console_input_fd(cfg, console_in);
            break;
        case CONSOLE_OPT_FILE:
            err = kvmc_config_set_console_file(cfg, o->console_path);
            if (!err && o->console_limit_set)
                err = kvmc_config_set_console_limit(cfg, o->console_limit);
            break;
        case CONSOLE_OPT_NONE:
            break;
        }
    }
    return err;
}

static int exit_status_for(const kvmc_exit_info *info, bool interrupted)
{
    switch (info->reason) {
    case KVMC_EXIT_POWEROFF:
        if (info->code == 0)
            return EXIT_GUEST_OK;
        fprintf(stderr, "kvmc: %s\n", info->message);
        return EXIT_GUEST_FAILED;
    case KVMC_EXIT_RESET:
        return EXIT_GUEST_OK;
    case KVMC_EXIT_GUEST_PANIC:
        fprintf(stderr, "kvmc: %s\n", info->message);
        return EXIT_GUEST_PANIC;
    case KVMC_EXIT_STOPPED:
        return interrupted ? EXIT_INTERRUPTED : EXIT_VM_ERROR;
    default:
        fprintf(stderr, "kvmc: VM failed (%s): %s\n", kvmc_exit_reason_name(info->reason),
                info->message);
        return EXIT_VM_ERROR;
    }
}

/* Fills the jail's plan from the options: where the parent makes vsock
 * connections for the guest, whether the host network is needed, the
 * limits. */
static bool plan_jail(struct run_options *o, struct jail *j, char *err, size_t errlen)
{
    static char vsock_dir[PATH_MAX], vsock_abs[PATH_MAX + 64];
    *j = (struct jail){.uid = o->jail_uid, .gid = o->jail_gid,
                       .memory_limit = o->memory + (256ull << 20),
                       .pids_limit = 64 + 2 * o->cpus,
                       .cleanup = {o->vconsole_socket, o->vsock_path}};
    for (unsigned i = 0; i < o->nnets; i++)
        if (strncmp(o->nets[i], "user", 4) == 0)
            j->keep_host_network = true; /* slirp connects out from the host */
    if (o->vsock_path) {
        /* Guest connections open "<uds>_<port>" by path, from the parent
         * outside, which may run in another directory: make it absolute. */
        char copy[PATH_MAX];
        snprintf(copy, sizeof(copy), "%s", o->vsock_path);
        const char *base = strrchr(o->vsock_path, '/');
        if (!realpath(dirname(copy), vsock_dir)) {
            snprintf(err, errlen, "--vsock %.256s: its directory: %s", o->vsock_path,
                     strerror(errno));
            return false;
        }
        snprintf(vsock_abs, sizeof(vsock_abs), "%s/%s", vsock_dir, base ? base + 1 : o->vsock_path);
        o->vsock_path = vsock_abs;
        j->cleanup[1] = vsock_abs;
        j->vsock_uds = vsock_abs;
    }
    return true;
}

static int cmd_run(int argc, char **argv)
{
    struct run_options o;
    char err[512];
    if (!parse_run_options(argc, argv, &o, err, sizeof(err))) {
        fprintf(stderr, "kvmc: %s\n", err);
        return EXIT_USAGE;
    }
    if (o.help) {
        fputs(usage_run, stdout);
        print_run_options(stdout);
        fputs(usage_run_after, stdout);
        return 0;
    }
    if (o.version) {
        printf("kvmc %s\n", kvmc_version_string());
        return 0;
    }
    /* A terminal goes raw before the jail's fork, so that the parent
     * outside, which outlives the child whatever happens to it, restores
     * it too. */
    bool raw = o.console == CONSOLE_OPT_STDIO && terminal_raw(STDIN_FILENO);
    struct jail jail = {.broker_fd = -1, .on_child_exit = terminal_restore};
    if (o.jail && (!plan_jail(&o, &jail, err, sizeof(err)) ||
                   jail_fork(&jail, err, sizeof(err)) < 0)) {
        fprintf(stderr, "kvmc: %s\n", err);
        return EXIT_USAGE;
    }
    struct signal_watch watch = {.confine = !o.seccomp_off};
    int console_in = STDIN_FILENO;
    struct escape_reader *escapes =
        raw ? escape_reader_new(STDIN_FILENO, &console_in, quit_from_console, &watch) : NULL;
    kvmc_config *cfg = NULL;
    kvmc_vm *vm = NULL;
    if (kvmc_config_new(&cfg) || configure(&o, &jail, console_in, cfg) ||
        kvmc_vm_create(cfg, &vm)) {
        fprintf(stderr, "kvmc: %s\n", kvmc_last_error());
        kvmc_config_free(cfg);
        return EXIT_USAGE;
    }
    kvmc_config_free(cfg);
    watch.vm = vm;
    watch.snapshot_dir = o.snapshot_dir;
    if (o.restore && kvmc_vm_restore(vm, o.restore) != KVMC_OK) {
        terminal_restore();
        fprintf(stderr, "kvmc: %s\n", kvmc_last_error());
        fflush(NULL);
        _exit(EXIT_USAGE);
    }
    if (o.jail && jail_lock_down(&jail, err, sizeof(err)) < 0) {
        terminal_restore();
        fprintf(stderr, "kvmc: %s\n", err);
        fflush(NULL);
        _exit(EXIT_USAGE);
    }
    if (o.jail_report)
        jail_report(&jail, stderr);
    if (o.seccomp_off) {
        fprintf(stderr, "kvmc: warning: seccomp is off; kvmc's threads may make any "
                        "system call\n");
    } else if (kvmc_vm_set_seccomp(vm, 1)) {
        fprintf(stderr, "kvmc: %s\n", kvmc_last_error());
        return EXIT_USAGE;
    }

    /* Block the signals in every thread (vCPU threads inherit the mask) and
     * wait for them on a thread of our own. */
    sigemptyset(&watch.set);
    sigaddset(&watch.set, SIGINT);
    sigaddset(&watch.set, SIGTERM);
    sigaddset(&watch.set, SIGHUP); /* the terminal went away: stop as for SIGTERM */
    sigaddset(&watch.set, SIGUSR1); /* used to end the watcher */
    if (o.snapshot_dir)
        sigaddset(&watch.set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &watch.set, NULL);
    pthread_t watcher;
    bool watching = pthread_create(&watcher, NULL, signal_thread, &watch) == 0;
    if (escapes && !escape_reader_start(escapes, !o.seccomp_off)) {
        terminal_restore();
        fprintf(stderr, "kvmc: cannot start the console input thread\n");
        _exit(EXIT_USAGE);
    }

    int status;
    kvmc_exit_info info;
    int rc = kvmc_vm_start(vm);
    if (!rc && !o.seccomp_off)
        rc = kvmc_seccomp_confine_control_thread();
    if (rc || kvmc_vm_wait(vm, -1, &info)) {
        fprintf(stderr, "kvmc: %s\n", kvmc_last_error());
        status = EXIT_VM_ERROR;
    } else {
        status = watch.saved ? EXIT_SNAPSHOT : exit_status_for(&info, watch.interrupted);
    }
    if (watching) {
        pthread_kill(watcher, SIGUSR1);
        pthread_join(watcher, NULL);
    }
    escape_reader_stop(escapes);
    terminal_restore(); /* _exit runs no atexit handler */
    /* The process ends here and the kernel tears the VM down on exit faster
     * than an explicit kvmc_vm_destroy() (measured on PVM: exec-to-exit
     * 12 ms against 24 ms), so the CLI leaves it to the kernel. The vCPU
     * threads have been joined by kvmc_vm_wait(); nothing else is pending.
     * Only the socket files kvmc listened on would outlive it: remove them. */
    if (o.vconsole_socket && !o.jail) /* jailed: the parent outside removes them */
        unlink(o.vconsole_socket);
    if (o.vsock_path && !o.jail)
        unlink(o.vsock_path);
    fflush(NULL);
    _exit(status);
}

int main(int argc, char **argv)
{
    /* One malloc arena: kvmc's threads malloc rarely and never on a hot path
     * (the I/O thread's vsock connections, error messages), and an arena of
     * their own would cost each 30-40 KiB of resident memory (measured when
     * each thread still built its seccomp filter with libseccomp). */
    mallopt(M_ARENA_MAX, 1);
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("kvmc %s\n", kvmc_version_string());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    fprintf(stderr, "kvmc: unknown command '%s'\n\n%s", cmd, usage_main);
    return EXIT_USAGE;
}
