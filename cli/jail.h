/* `kvmc run --jail`: least privilege for the VMM process, in two steps.
 *
 * 1. jail_fork(), before the VM exists: new PID namespace (and a user
 *    namespace when not started as root), a cgroup v2 with memory and pids
 *    limits when the host has a writable one, and a fork. The parent stays
 *    outside, waits, and exits with the child's status; the child is PID 1
 *    of the new namespace and goes on to create the VM.
 * 2. jail_lock_down(), after the VM is created, so every file it needs
 *    (kernel, disks, /dev/kvm, taps, listening sockets) is already open:
 *    new mount, IPC, UTS and (unless user networking needs the host's)
 *    network namespaces; an empty read-only tmpfs as the root; then no
 *    supplementary groups, the jail uid/gid (when root), no capabilities,
 *    and PR_SET_NO_NEW_PRIVS. seccomp comes after, as usual.
 *
 * The jailed VMM sees no host file at all.
 *
 * With root_from set (kvmc-firecracker --jail DIR, as Firecracker's
 * jailer), the new root is not an empty tmpfs but DIR itself, writable,
 * where every path the process is given lives: its mount namespace holds
 * DIR, a tmpfs at DIR/dev with only kvm and net/tun, and a proc of its own
 * PID namespace at DIR/proc (diff snapshots read /proc/self/pagemap). jail_fork makes those mount points in DIR
 * (the ones missing), and the parent removes what it made when the child
 * ends. Its vsock guests still reach
 * host programs: a guest connection to port P is made by the parent
 * outside (jail_vsock_connect asks it over a socket pair), which connects
 * to "<uds>_<P>" and passes the connected socket back. The parent makes
 * no other connection, and names no other path, whatever the child asks.
 */
#ifndef KVMC_CLI_JAIL_H
#define KVMC_CLI_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct jail {
    unsigned uid, gid;        /* dropped to when started as root */
    bool keep_host_network;   /* user networking opens host sockets later */
    uint64_t memory_limit;    /* cgroup memory.max, bytes; 0: none */
    unsigned pids_limit;      /* cgroup pids.max */
    const char *vsock_uds;    /* absolute; guest connections go to "<uds>_<port>" */
    const char *cleanup[2];   /* files the parent removes after the child ends */
    const char *root_from;    /* absolute: a prepared root instead of an empty one */
    int broker_fd;            /* child: asks the parent for vsock connections */
    void (*on_child_exit)(void); /* parent: run once the child has ended */
    /* filled in by the steps */
    char root_dir[64];        /* where the new root is built (host /tmp) */
    bool as_root;             /* started as real root: no user namespace */
    char cgroup[256];         /* the cgroup made for the child, or "" */
    char cgroup_note[160];    /* why there is none */
    unsigned long ns_before[6], ns_after[6]; /* namespace inodes */
    unsigned made;            /* root_from's mount points jail_fork made, a mask */
    char proc_note[160];      /* why the jail has no proc of its own, or "" */
};

/* --jail-user UID[:GID] (kvmc run's and kvmc-firecracker's): decimal,
 * neither 0 (root in the jail would own every file root owns in it) nor
 * (uid_t)-1. GID defaults to UID. */
static inline bool jail_parse_user(const char *arg, unsigned *uid, unsigned *gid)
{
    char *end;
    unsigned long u = strtoul(arg, &end, 10), g = u;
    if (*end == ':' && end[1] >= '0' && end[1] <= '9')
        g = strtoul(end + 1, &end, 10);
    if (arg[0] < '0' || arg[0] > '9' || *end || u == 0 || g == 0 || u >= 0xffffffffu ||
        g >= 0xffffffffu)
        return false;
    *uid = (unsigned)u;
    *gid = (unsigned)g;
    return true;
}

/* Step 1. Returns 0 in the child; in the parent it never returns. On error,
 * -1 with a message in err. */
int jail_fork(struct jail *j, char *err, size_t errlen);
/* Step 2. 0, or -1 with a message in err. */
int jail_lock_down(struct jail *j, char *err, size_t errlen);
/* A kvmc_vsock_connect_fn for the jailed child: the parent connects. */
int jail_vsock_connect(void *jail, uint32_t port);
/* One line describing the jail as the process sees it from inside. */
void jail_report(const struct jail *j, FILE *out);

#endif
