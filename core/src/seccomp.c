/* Installs the seccomp allow-list of the calling thread's role. The lists
 * themselves, and why each call is on them, are in core/tools/seccomp_policy.c,
 * which compiles them to BPF with libseccomp at build time; here they are
 * only picked and loaded. */
#include "seccomp.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "error.h"
#include "kvmc/kvmc.h"
#include "seccomp_filters.h"

static enum seccomp_filter_id filter_of(enum seccomp_role role, unsigned io_extras)
{
    switch (role) {
    case SECCOMP_ROLE_VCPU:
        return SECCOMP_FILTER_VCPU;
    case SECCOMP_ROLE_IO:
        if (io_extras & SECCOMP_IO_INET)
            return SECCOMP_FILTER_IO_INET;
        return io_extras ? SECCOMP_FILTER_IO_UNIX : SECCOMP_FILTER_IO;
    case SECCOMP_ROLE_CONSOLE:
        return SECCOMP_FILTER_CONSOLE;
    case SECCOMP_ROLE_CONTROL:
        break;
    }
    return SECCOMP_FILTER_CONTROL;
}

bool seccomp_available(void)
{
    return seccomp_filters[SECCOMP_FILTER_CONTROL].len != 0;
}

int seccomp_unavailable(void)
{
    return kvmc_fail(KVMC_ENOTSUP, "seccomp: this libkvmc was built without libseccomp, so "
                     "it has no filters to install (rebuild with libseccomp's headers)");
}

static int confine(enum seccomp_role role, unsigned io_extras)
{
    if (!seccomp_available())
        return seccomp_unavailable();
    const struct seccomp_filter_code *f = &seccomp_filters[filter_of(role, io_extras)];
    struct sock_fprog prog = {.len = f->len, .filter = (struct sock_filter *)f->code};
    /* no_new_privs first: without it, an unprivileged thread may not install
     * a filter, and with it no exec could regain privileges anyway. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        return kvmc_fail_errno(KVMC_ENOTSUP, errno, "installing the seccomp filter");
    return KVMC_OK;
}

int seccomp_confine(enum seccomp_role role) { return confine(role, 0); }

int seccomp_confine_io(unsigned extras) { return confine(SECCOMP_ROLE_IO, extras); }

int kvmc_seccomp_confine_control_thread(void)
{
    return seccomp_confine(SECCOMP_ROLE_CONTROL);
}
