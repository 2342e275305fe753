#include "jail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

static const char *const ns_names[6] = {"mnt", "pid", "net", "ipc", "uts", "user"};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (e && n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n, ": %s", strerror(e));
    return -1;
}

static void read_namespaces(unsigned long ino[6])
{
    for (unsigned i = 0; i < 6; i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof(path), "/proc/self/ns/%s", ns_names[i]);
        ino[i] = stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
    }
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Not root: a user namespace where we are root, mapped to ourselves. */
static int enter_user_namespace(char *err, size_t errlen)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    char map[64];
    if (unshare(CLONE_NEWUSER) < 0)
        return fail(err, errlen, "--jail: new user namespace (needed when not root)");
    snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
    if (write_file("/proc/self/setgroups", "deny") < 0 ||
        write_file("/proc/self/uid_map", map) < 0)
        return fail(err, errlen, "--jail: mapping uid %u", (unsigned)uid);
    snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
    if (write_file("/proc/self/gid_map", map) < 0)
        return fail(err, errlen, "--jail: mapping gid %u", (unsigned)gid);
    return 0;
}

/* A cgroup v2 child of our own with memory.max and pids.max, if the host
 * has a cgroup2 hierarchy we may write; otherwise a note saying why not. */
static void make_cgroup(struct jail *j)
{
    struct statfs fs;
    if (statfs("/sys/fs/cgroup", &fs) < 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
        snprintf(j->cgroup_note, sizeof(j->cgroup_note), "no cgroup v2 at /sys/fs/cgroup");
        return;
    }
    char line[256] = "", *self = NULL;
    FILE *f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = 0;
            self = line + 3;
            break;
        }
    if (f)
        fclose(f);
    char dir[sizeof(j->cgroup)], value[32];
    if (!self || snprintf(dir, sizeof(dir), "/sys/fs/cgroup%s/kvmc-%d",
                          strcmp(self, "/") ? self : "", (int)getpid()) >= (int)sizeof(dir)) {
        snprintf(j->cgroup_note, sizeof(j->cgroup_note), "own cgroup not found");
        return;
    }
    if (mkdir(dir, 0755) < 0) {
        snprintf(j->cgroup_note, sizeof(j->cgroup_note), "mkdir %.100s: %.40s", dir,
                 strerror(errno));
        return;
    }
    char path[sizeof(dir) + 16];
    snprintf(path, sizeof(path), "%s/memory.max", dir);
    snprintf(value, sizeof(value), "%llu", (unsigned long long)j->memory_limit);
    bool ok = !j->memory_limit || write_file(path, value) == 0;
    snprintf(path, sizeof(path), "%s/pids.max", dir);
    snprintf(value, sizeof(value), "%u", j->pids_limit);
    ok = ok && write_file(path, value) == 0;
    if (!ok) {
        snprintf(j->cgroup_note, sizeof(j->cgroup_note),
                 "memory or pids controller not enabled for %.100s", dir);
        rmdir(dir);
        return;
    }
    snprintf(j->cgroup, sizeof(j->cgroup), "%s", dir);
}

/* A prepared root's mount points, made in it by jail_fork when missing:
 * bit i of j->made says mount_points[i] was. */
static const char *const mount_points[2] = {"dev", "proc"};

static int make_mount_points(struct jail *j, char *err, size_t errlen)
{
    int dir = open(j->root_from, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0)
        return fail(err, errlen, "--jail %s", j->root_from);
    for (unsigned i = 0; i < 2; i++) {
        struct stat st;
        if (fstatat(dir, mount_points[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                close(dir);
                errno = 0;
                return fail(err, errlen, "--jail %s: %s is not a directory (kvmc mounts its "
                                         "own there)", j->root_from, mount_points[i]);
            }
        } else if (mkdirat(dir, mount_points[i], 0755) == 0) {
            j->made |= 1u << i;
        } else {
            int e = errno;
            close(dir);
            errno = e;
            return fail(err, errlen, "--jail %s: mkdir %s", j->root_from, mount_points[i]);
        }
    }
    close(dir);
    return 0;
}

/* The parent, once the child has ended: removes the mount points it made,
 * through a descriptor of the root, never following a link the child may
 * have put in their place. Not empty: left as it is. */
static void remove_mount_points(const struct jail *j)
{
    int dir = j->made ? open(j->root_from, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    for (unsigned i = 0; dir >= 0 && i < 2; i++)
        if (j->made & (1u << i))
            unlinkat(dir, mount_points[i], AT_REMOVEDIR);
    if (dir >= 0)
        close(dir);
}

static pid_t jailed_child;
static void forward_signal(int sig)
{
    if (jailed_child > 0)
        kill(jailed_child, sig);
}

/* The parent's half of the vsock broker: one request is a port number; the
 * answer is one byte (0, or an errno value) with the connected socket
 * attached when it is 0. */
static void serve_vsock_request(const struct jail *j, int broker)
{
    uint32_t port;
    ssize_t n = recv(broker, &port, sizeof(port), MSG_DONTWAIT);
    if (n != sizeof(port))
        return;
    char path[PATH_MAX];
    int fd = -1, err = ENAMETOOLONG;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (j->vsock_uds && snprintf(path, sizeof(path), "%s_%u", j->vsock_uds, port) <
                            (int)sizeof(sa.sun_path)) {
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        err = fd < 0 ? errno : 0;
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    uint8_t status = (uint8_t)(err > 255 ? 255 : err);
    struct iovec iov = {.iov_base = &status, .iov_len = 1};
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof(control.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    sendmsg(broker, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (fd >= 0)
        close(fd);
}

int jail_vsock_connect(void *opaque, uint32_t port)
{
    struct jail *j = opaque;
    if (send(j->broker_fd, &port, sizeof(port), MSG_NOSIGNAL) != sizeof(port))
        return -1;
    uint8_t status = 255;
    struct iovec iov = {.iov_base = &status, .iov_len = 1};
    union {
        struct cmsghdr hdr;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    if (recvmsg(j->broker_fd, &msg, MSG_CMSG_CLOEXEC) != 1 || status != 0)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    int fd = -1;
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

/* The parent: serves the child's vsock requests until it ends, then ends
 * with its status. */
_Noreturn static void supervise(struct jail *j, pid_t child, int release_fd, int broker)
{
    jailed_child = child;
    struct sigaction sa = {.sa_handler = forward_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (j->cgroup[0]) {
        char path[sizeof(j->cgroup) + 16], pid[16];
        snprintf(path, sizeof(path), "%s/cgroup.procs", j->cgroup);
        snprintf(pid, sizeof(pid), "%d", (int)child);
        if (write_file(path, pid) < 0)
            fprintf(stderr, "kvmc: --jail: moving the VM into %s: %s\n", j->cgroup,
                    strerror(errno));
    }
    if (write(release_fd, "1", 1) != 1) /* the child goes on */
        fprintf(stderr, "kvmc: --jail: releasing the VM: %s\n", strerror(errno));
    close(release_fd);
    int status = 0;
    int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
    while (pidfd >= 0) { /* without pidfds (Linux < 5.3): no vsock broker */
        struct pollfd fds[2] = {{.fd = pidfd, .events = POLLIN},
                                {.fd = broker, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break;
        if (fds[1].revents & POLLIN)
            serve_vsock_request(j, broker);
        else if (fds[1].revents)
            broker = -1; /* the child's end is gone; wait for it */
    }
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (j->on_child_exit)
        j->on_child_exit(); /* the child may have died before it could */
    for (unsigned i = 0; i < 2; i++)
        if (j->cleanup[i])
            unlink(j->cleanup[i]);
    if (j->root_from)
        remove_mount_points(j);
    else
        rmdir(j->root_dir);
    if (j->cgroup[0])
        rmdir(j->cgroup);
    fflush(NULL);
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

int jail_fork(struct jail *j, char *err, size_t errlen)
{
    read_namespaces(j->ns_before);
    j->as_root = geteuid() == 0;
    if (!j->as_root && enter_user_namespace(err, errlen) < 0)
        return -1;
    if (unshare(CLONE_NEWPID) < 0)
        return fail(err, errlen, "--jail: new PID namespace");
    make_cgroup(j);
    /* Built by the child in its mount namespace, removed by the parent. */
    snprintf(j->root_dir, sizeof(j->root_dir), "/tmp/kvmc-jail-%d", (int)getpid());
    if (j->root_from && make_mount_points(j, err, errlen) < 0)
        return -1;
    int sync[2], broker[2];
    if (pipe2(sync, O_CLOEXEC) < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, broker) < 0)
        return fail(err, errlen, "--jail: pipe");
    pid_t child = fork();
    if (child < 0)
        return fail(err, errlen, "--jail: fork");
    if (child > 0) {
        close(sync[0]);
        close(broker[1]);
        supervise(j, child, sync[1], broker[0]);
    }
    close(sync[1]);
    close(broker[0]);
    j->broker_fd = broker[1];
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char byte = 0;
    ssize_t n;
    while ((n = read(sync[0], &byte, 1)) < 0 && errno == EINTR) {
    }
    close(sync[0]);
    if (n != 1)
        _exit(EXIT_FAILURE); /* the parent died before it released us */
    return 0;
}

/* Makes root the process's root. pivot_root(".", "."): the old root ends up
 * on top and is detached. From an initramfs, pivot_root is refused
 * (EINVAL: rootfs cannot be unmounted); then the new root is moved over
 * "/" and chrooted into, as switch_root does. The old root stays below it
 * in this private mount namespace, out of reach once the capabilities are
 * gone (CAP_SYS_CHROOT is needed to climb out of a chroot). */
static int enter_root(const char *root)
{
    if (chdir(root) < 0)
        return -1;
    if (syscall(SYS_pivot_root, ".", ".") == 0)
        return umount2(".", MNT_DETACH) < 0 || chdir("/") < 0 ? -1 : 0;
    if (errno != EINVAL)
        return -1;
    return mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0 ? -1 : 0;
}

static int build_root(struct jail *j, char *err, size_t errlen)
{
    const char *root = j->root_dir;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail(err, errlen, "--jail: making mounts private");
    if (mkdir(root, 0700) < 0 && errno != EEXIST)
        return fail(err, errlen, "--jail: mkdir %s", root);
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755") < 0)
        return fail(err, errlen, "--jail: tmpfs on %s", root);
    const unsigned long locked = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (enter_root(root) < 0)
        return fail(err, errlen, "--jail: pivot_root (or chroot) into %s", root);
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked, NULL) < 0)
        return fail(err, errlen, "--jail: making the new root read-only");
    return 0;
}

/* The mount flags a bind remount must keep (those locked in a user
 * namespace): read-only and the atime ones. */
static unsigned long kept_flags(const char *path)
{
    struct statvfs v;
    if (statvfs(path, &v) < 0)
        return 0;
    return (v.f_flag & ST_RDONLY ? MS_RDONLY : 0) | (v.f_flag & ST_NOATIME ? MS_NOATIME : 0) |
           (v.f_flag & ST_NODIRATIME ? MS_NODIRATIME : 0) |
           (v.f_flag & ST_RELATIME ? MS_RELATIME : 0);
}

/* A device of the host in the jail's /dev (a tmpfs): a node of our own,
 * owned by the jail's user, when root (as Firecracker's jailer makes);
 * otherwise, in a user namespace where mknod is refused, a bind of the
 * host's. Missing on the host and not required: nothing. */
static int add_device(struct jail *j, const char *host, const char *name, bool required,
                      char *err, size_t errlen)
{
    struct stat st;
    if (stat(host, &st) < 0 || !S_ISCHR(st.st_mode)) {
        if (!required)
            return 0;
        return fail(err, errlen, "--jail: %s", host);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/dev/%s", j->root_from, name);
    if (j->as_root) {
        if (mknod(path, S_IFCHR | 0600, st.st_rdev) < 0 || chown(path, j->uid, j->gid) < 0)
            return fail(err, errlen, "--jail: mknod %s", path);
        return 0;
    }
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail(err, errlen, "--jail: %s", path);
    close(fd);
    if (mount(host, path, NULL, MS_BIND, NULL) < 0)
        return fail(err, errlen, "--jail: bind %s on %s", host, path);
    return 0;
}

/* root_from as the root: itself bound (nosuid, nodev, noexec), a tmpfs at
 * dev with /dev/kvm and /dev/net/tun, and a proc of the PID namespace
 * (without one, diff snapshots fail: said in proc_note). */
static int build_root_from(struct jail *j, char *err, size_t errlen)
{
    const char *root = j->root_from;
    char path[PATH_MAX];
    const unsigned long locked = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail(err, errlen, "--jail: making mounts private");
    if (mount(root, root, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | locked | kept_flags(root), NULL) < 0)
        return fail(err, errlen, "--jail: binding %s", root);
    snprintf(path, sizeof(path), "%s/dev", root);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755") < 0)
        return fail(err, errlen, "--jail: tmpfs on %s", path);
    snprintf(path, sizeof(path), "%s/dev/net", root);
    if (mkdir(path, 0755) < 0)
        return fail(err, errlen, "--jail: mkdir %s", path);
    if (add_device(j, "/dev/kvm", "kvm", true, err, errlen) < 0 ||
        add_device(j, "/dev/net/tun", "net/tun", false, err, errlen) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/dev", root);
    if (mount(NULL, path, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
        return fail(err, errlen, "--jail: making %s read-only", path);
    snprintf(path, sizeof(path), "%s/proc", root);
    if (mount("proc", path, "proc", locked, NULL) < 0)
        snprintf(j->proc_note, sizeof(j->proc_note), "mounting proc: %s", strerror(errno));
    if (enter_root(root) < 0)
        return fail(err, errlen, "--jail: pivot_root (or chroot) into %s", root);
    return 0;
}

static int drop_privileges(struct jail *j, char *err, size_t errlen)
{
    /* The bounding set needs CAP_SETPCAP, so it goes before the uid. */
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return fail(err, errlen, "--jail: dropping capability %d", cap);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (j->as_root && (setgroups(0, NULL) < 0 || setresgid(j->gid, j->gid, j->gid) < 0 ||
                       setresuid(j->uid, j->uid, j->uid) < 0))
        return fail(err, errlen, "--jail: switching to uid %u gid %u", j->uid, j->gid);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct none[2] = {{0}};
    if (syscall(SYS_capset, &hdr, none) < 0)
        return fail(err, errlen, "--jail: clearing capabilities");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail(err, errlen, "--jail: PR_SET_NO_NEW_PRIVS");
    /* The kernel forgets the parent-death signal when credentials change:
     * set again, or a parent killed with SIGKILL would leave the VM
     * running. The parent may have died in between: then its end of the
     * broker has hung up. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return fail(err, errlen, "--jail: PR_SET_PDEATHSIG");
    struct pollfd parent = {.fd = j->broker_fd, .events = POLLIN};
    if (poll(&parent, 1, 0) == 1 && (parent.revents & POLLHUP))
        _exit(EXIT_FAILURE);
    return 0;
}

int jail_lock_down(struct jail *j, char *err, size_t errlen)
{
    int flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
    if (!j->keep_host_network)
        flags |= CLONE_NEWNET;
    if (unshare(flags) < 0)
        return fail(err, errlen, "--jail: new mount/IPC/UTS%s namespaces",
                    j->keep_host_network ? "" : "/network");
    read_namespaces(j->ns_after);
    if (sethostname("kvmc-jail", 9) < 0)
        return fail(err, errlen, "--jail: sethostname");
    if ((j->root_from ? build_root_from(j, err, errlen) : build_root(j, err, errlen)) < 0)
        return -1;
    return drop_privileges(j, err, errlen);
}

void jail_report(const struct jail *j, FILE *out)
{
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    getresuid(&ruid, &euid, &suid);
    getresgid(&rgid, &egid, &sgid);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct caps[2] = {{0}};
    syscall(SYS_capget, &hdr, caps);
    unsigned long long eff = caps[0].effective | (unsigned long long)caps[1].effective << 32;
    unsigned long long prm = caps[0].permitted | (unsigned long long)caps[1].permitted << 32;
    int bounding = 0;
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        bounding += prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1;
    char host[64] = "";
    gethostname(host, sizeof(host) - 1);
    fprintf(out, "jail: pid=%d uid=%u gid=%u groups=%d caps=%llx/%llx bounding=%d "
                 "no_new_privs=%d hostname=%s root=[",
            (int)getpid(), (unsigned)euid, (unsigned)egid, getgroups(0, NULL), eff, prm,
            bounding, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), host);
    DIR *d = opendir("/");
    const char *sep = "";
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            fprintf(out, "%s%s", sep, e->d_name);
            sep = ",";
        }
    if (d)
        closedir(d);
    fprintf(out, "] root_writable=%d netifs=[", access("/", W_OK) == 0);
    struct if_nameindex *ifs = if_nameindex();
    sep = "";
    for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
        fprintf(out, "%s%s", sep, i->if_name);
        sep = ",";
    }
    if (ifs)
        if_freenameindex(ifs);
    fprintf(out, "] new_ns=[");
    sep = "";
    for (unsigned i = 0; i < 6; i++) {
        /* PID: the child's namespace came with the fork; getpid() shows it. */
        bool changed = i == 1 ? getpid() == 1 : j->ns_after[i] != j->ns_before[i];
        if (changed) {
            fprintf(out, "%s%s", sep, ns_names[i]);
            sep = ",";
        }
    }
    if (j->cgroup[0])
        fprintf(out, "] cgroup=%s memory.max=%llu pids.max=%u\n", j->cgroup,
                (unsigned long long)j->memory_limit, j->pids_limit);
    else
        fprintf(out, "] cgroup=none (%s)\n", j->cgroup_note);
    fflush(out);
}
