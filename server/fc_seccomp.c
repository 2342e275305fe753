/* kvmc-firecracker's API thread's seccomp list (fc_seccomp.h), through
 * libseccomp. */
#include "fc_seccomp.h"

#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

int fc_seccomp_confine_api_thread(char *err, size_t errlen)
{
    static const char *const allowed[] = {
        /* HTTP on the sockets libmicrohttpd has */
        "accept", "accept4", "read", "readv", "recvfrom", "recvmsg", "write", "writev",
        "sendto", "sendmsg", "shutdown", "close", "setsockopt", "getsockopt", "getsockname",
        "getpeername", "fcntl", "epoll_wait", "epoll_pwait", "epoll_ctl", "poll",
        "ppoll", "select", "pselect6",
        /* memory, time, threads' synchronisation */
        "mmap", "munmap", "mremap", "brk", "madvise", "futex", "clock_gettime",
        "clock_nanosleep", "nanosleep", "gettimeofday", "gettid", "getpid", "sched_yield",
        "rt_sigprocmask", "rt_sigreturn", "restart_syscall", "exit", "exit_group",
        /* checking the paths a request names (metadata only) */
        "access", "faccessat", "faccessat2", "stat", "lstat", "newfstatat", "fstat", "statx",
        "getrandom",
    };
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    int rc = ctx ? 0 : -ENOMEM;
    for (size_t i = 0; !rc && i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr != __NR_SCMP_ERROR)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    /* The log names the thread: PR_GET_NAME only. */
    if (!rc)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                              SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
    if (!rc)
        rc = seccomp_load(ctx); /* this thread only: no TSYNC */
    if (ctx)
        seccomp_release(ctx);
    if (rc) {
        snprintf(err, errlen, "confining the API thread with seccomp: %s", strerror(-rc));
        return -1;
    }
    return 0;
}
