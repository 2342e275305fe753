/* `kvmc run --jail`, checked from inside the jailed process (the
 * --jail-report line it prints just before starting the VM) and by what the
 * guest can still do: disks, rng and vsock in both directions work jailed.
 * These tests run as root, as CI does: then kvmc also switches to uid and
 * gid 65534. One test drops to an unprivileged user first, the other way
 * kvmc jails itself. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_run.h"

static void assert_report_has(const struct cli_result *r, const char *want)
{
    cr_assert(strstr(r->err, want), "jail report lacks '%s':\n%s", want, r->err);
}

Test(jail, every_property_holds_inside_and_the_guest_still_runs)
{
    cr_assert_eq(geteuid(), 0, "these tests need root, as in CI");
    char disk[] = "/tmp/kvmc-jail-disk-XXXXXX";
    int fd = mkstemp(disk);
    cr_assert(fd >= 0 && ftruncate(fd, 64 * 512) == 0);
    close(fd);
    char disk_arg[64];
    snprintf(disk_arg, sizeof(disk_arg), "%s,serial=jailed", disk);
    char *argv[] = {KVMC_CLI, "run", "--jail-report", "--kernel", KVMC_TEST_GUEST_ELF,
                    "--mem", "64M", "--disk", disk_arg, "--rng", "--cmdline",
                    "kvmc.test=virtio", NULL};
    struct cli_result r;
    cli_run(&r, argv);
    unlink(disk);
    cr_assert_eq(r.status, 0, "status %d\nstdout:\n%s\nstderr:\n%s", r.status, r.out, r.err);
    cr_assert(strstr(r.out, "sector 5 write+read ok, serial jailed"), "%s", r.out);
    cr_assert(strstr(r.out, "virtio: 2 devices"), "%s", r.out);

    assert_report_has(&r, "jail: pid=1 ");            /* PID namespace, and init in it */
    assert_report_has(&r, " uid=65534 gid=65534 groups=0 ");
    assert_report_has(&r, " caps=0/0 bounding=0 ");   /* no capabilities at all */
    assert_report_has(&r, " no_new_privs=1 ");
    assert_report_has(&r, " hostname=kvmc-jail ");    /* UTS namespace */
    assert_report_has(&r, " root=[] root_writable=0 "); /* empty read-only root */
    assert_report_has(&r, " netifs=[lo] ");           /* no host interfaces */
    assert_report_has(&r, " new_ns=[mnt,pid,net,ipc,uts] ");
    struct statfs fs;
    if (statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
        assert_report_has(&r, " memory.max=335544320 pids.max=66");
    else
        assert_report_has(&r, " cgroup=none (no cgroup v2 at /sys/fs/cgroup)");
}

static void child_fail(const char *what)
{
    perror(what);
    _exit(126);
}

/* In the child: /dev/kvm usable by uid 65534 (a private bind mount of a new
 * node, so the host's /dev/kvm keeps its mode), then become uid 65534 with
 * no groups and no capabilities, as an unprivileged caller would be. */
static void become_unprivileged_with_kvm(void)
{
    struct stat st;
    if (stat("/dev/kvm", &st) < 0)
        child_fail("stat /dev/kvm");
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail("private mount namespace");
    char dir[] = "/tmp/kvmc-jail-node-XXXXXX", node[64];
    if (!mkdtemp(dir))
        child_fail("mkdtemp");
    snprintf(node, sizeof(node), "%s/kvm", dir);
    if (mknod(node, S_IFCHR | 0600, st.st_rdev) < 0 || chown(node, 65534, 65534) < 0 ||
        mount(node, "/dev/kvm", NULL, MS_BIND, NULL) < 0)
        child_fail("a /dev/kvm for uid 65534");
    unlink(node); /* the mount keeps the inode */
    rmdir(dir);
    if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
        setresuid(65534, 65534, 65534) < 0)
        child_fail("dropping to uid 65534");
}

/* Not root: kvmc makes a user namespace (mapping the caller to 0 inside,
 * with no capabilities) and the rest of the jail inside it. */
Test(jail, an_unprivileged_caller_is_jailed_in_a_user_namespace)
{
    cr_assert_eq(geteuid(), 0, "this test needs root to set up the unprivileged caller");
    char *argv[] = {KVMC_CLI, "run", "--jail-report", "--mem", "64M", NULL};
    struct cli_result r;
    cli_run_prepared(&r, argv, become_unprivileged_with_kvm);
    cr_assert_eq(r.status, 0, "status %d\nstdout:\n%s\nstderr:\n%s", r.status, r.out, r.err);
    cr_assert(strstr(r.out, "self-check: ok"), "%s", r.out);
    assert_report_has(&r, "jail: pid=1 uid=0 gid=0 ");
    assert_report_has(&r, " caps=0/0 bounding=0 no_new_privs=1 ");
    assert_report_has(&r, " root=[] root_writable=0 netifs=[lo] ");
    assert_report_has(&r, " new_ns=[mnt,pid,net,ipc,uts,user] ");
}

Test(jail, user_networking_keeps_the_host_network_namespace)
{
    char *argv[] = {KVMC_CLI, "run", "--jail-report", "--mem", "64M", "--net", "user", NULL};
    struct cli_result r;
    cli_run(&r, argv);
    cr_assert_eq(r.status, 0, "stderr:\n%s", r.err);
    assert_report_has(&r, " new_ns=[mnt,pid,ipc,uts] ");
    cr_assert_not(strstr(r.err, "netifs=[lo] "), "host interfaces stay visible:\n%s", r.err);
}

/* PCI from inside the jail: the guest moves BARs and enables MSI-X (the
 * vCPU thread registers ioeventfds and signals MSIs under its seccomp
 * list), and virtio-pci devices work. */
Test(jail, virtio_pci_and_a_scribbled_root_complex_work_inside)
{
    char *argv[] = {KVMC_CLI, "run", "--jail", "--mem", "64M", "--transport", "pci", "--rng",
                    "--cmdline", "kvmc.test=pci-scribble", NULL};
    static struct cli_result r;
    cli_run(&r, argv);
    cr_assert_eq(r.status, 0, "stdout:\n%s\nstderr:\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "pci: host bridge intact: yes\n"), "%s", r.out);
    cr_assert(strstr(r.out, "virtio-rng: 64 bytes"), "%s", r.out);
}

Test(jail, bad_jail_user_is_one_line)
{
    char *argv[] = {KVMC_CLI, "run", "--jail", "--jail-user", "0", NULL};
    struct cli_result r;
    cli_run(&r, argv);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "kvmc: --jail-user 0: use UID or UID:GID"), "%s", r.err);
}

/* vsock through the jail, whose root is empty: guest connections reach host
 * listeners through the parent outside (it connects and passes the socket
 * in), and host programs reach the guest through the socket kvmc opened
 * before the jail. */
struct host_side {
    char dir[64], uds[96];
    int echo_listener;
    char seen[64], pong[8];
};

static void *echo_in_capitals(void *arg)
{
    struct host_side *h = arg;
    int c = accept(h->echo_listener, NULL, NULL);
    ssize_t n = c < 0 ? -1 : recv(c, h->seen, sizeof(h->seen) - 1, 0);
    char up[64];
    for (ssize_t i = 0; i < n; i++)
        up[i] = (char)toupper((unsigned char)h->seen[i]);
    if (n > 0)
        send(c, up, (size_t)n, 0);
    char rest[8];
    while (c >= 0 && recv(c, rest, sizeof(rest), 0) > 0) {
    }
    if (c >= 0)
        close(c);
    return NULL;
}

static void *connect_to_guest(void *arg)
{
    struct host_side *h = arg;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", h->uds);
    for (int i = 0; i < 1000; i++, usleep(10000)) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
            close(fd);
            continue;
        }
        char line[32] = {0};
        send(fd, "CONNECT 6000\n", 13, 0);
        for (unsigned n = 0; n < sizeof(line) - 1 && recv(fd, line + n, 1, 0) == 1 &&
                             line[n] != '\n';
             n++) {
        }
        if (strncmp(line, "OK ", 3) == 0 && send(fd, "ping", 4, 0) == 4)
            recv(fd, h->pong, 4, MSG_WAITALL);
        close(fd);
        return NULL;
    }
    return NULL;
}

Test(jail, vsock_works_both_ways_from_inside)
{
    struct host_side h = {.dir = "/tmp/kvmc-jail-vsock-XXXXXX"};
    cr_assert(mkdtemp(h.dir));
    chmod(h.dir, 0755); /* the jail user must reach the listeners */
    snprintf(h.uds, sizeof(h.uds), "%s/v.sock", h.dir);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s_5000", h.uds);
    h.echo_listener = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert(bind(h.echo_listener, (struct sockaddr *)&a, sizeof(a)) == 0);
    chmod(a.sun_path, 0777);
    listen(h.echo_listener, 4);
    pthread_t echo, host;
    pthread_create(&echo, NULL, echo_in_capitals, &h);
    pthread_create(&host, NULL, connect_to_guest, &h);
    char vsock_arg[128];
    snprintf(vsock_arg, sizeof(vsock_arg), "cid=3,uds=%s", h.uds);
    char *argv[] = {KVMC_CLI, "run", "--jail-report", "--kernel", KVMC_TEST_GUEST_ELF,
                    "--mem", "64M", "--vsock", vsock_arg, "--cmdline", "kvmc.test=vsock",
                    NULL};
    struct cli_result r;
    cli_run(&r, argv);
    pthread_join(host, NULL);
    shutdown(h.echo_listener, SHUT_RDWR);
    pthread_join(echo, NULL);
    close(h.echo_listener);
    unlink(a.sun_path);
    struct stat st;
    bool uds_left = stat(h.uds, &st) == 0;
    rmdir(h.dir);
    cr_assert_eq(r.status, 0, "stdout:\n%s\nstderr:\n%s", r.out, r.err);
    cr_assert(strstr(r.out, "refused ok, guest->host reply 'HELLO VSOCK', close ok, "
                            "host->guest got 'ping', host closed"),
              "%s", r.out);
    cr_assert_str_eq(h.pong, "pong");
    assert_report_has(&r, " root=[] "); /* not even the sockets' directory (was /tmp) */
    cr_assert_not(uds_left, "the parent outside the jail removed %s", h.uds);
}

/* The jailed VMM dies with the process outside, even by SIGKILL: the
 * kernel forgets the parent-death signal when the jail switches user and
 * drops capabilities, so the jail sets it again after that. */
Test(jail, a_killed_parent_takes_the_jailed_vmm_with_it)
{
    int out[2];
    cr_assert(pipe(out) == 0);
    pid_t parent = fork();
    cr_assert(parent >= 0);
    if (parent == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(KVMC_CLI, KVMC_CLI, "run", "--jail", "--kernel", KVMC_TEST_GUEST_ELF, "--mem",
              "64M", "--cmdline", "kvmc.test=kbd", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char seen[4096] = "";
    size_t used = 0;
    while (!strstr(seen, "kbd: waiting for ctrl-alt-del") && used < sizeof(seen) - 1) {
        ssize_t n = read(out[0], seen + used, sizeof(seen) - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        seen[used] = 0;
    }
    cr_assert(strstr(seen, "kbd: waiting for ctrl-alt-del"), "the guest never waited:\n%s", seen);
    char path[64], children[64] = "";
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)parent, (int)parent);
    FILE *f = fopen(path, "re");
    cr_assert(f && fgets(children, sizeof(children), f), "no %s", path);
    fclose(f);
    int child = atoi(children);
    cr_assert(child > 0, "the jailed VMM: [%s]", children);
    kill(parent, SIGKILL);
    waitpid(parent, NULL, 0);
    /* Gone: reaped by our init once dead, so kill() finds nothing. */
    int i = 0;
    while (kill(child, 0) == 0 && i++ < 300)
        usleep(10000);
    bool outlived = i > 300;
    if (outlived)
        kill(child, SIGKILL); /* not left running after a failure */
    cr_assert_not(outlived, "the jailed VMM %d outlived its parent's SIGKILL by 3 s", child);
    /* Its end of the console pipe is closed too. */
    char rest[256];
    while (read(out[0], rest, sizeof(rest)) > 0) {
    }
    close(out[0]);
}
