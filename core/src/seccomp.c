/* seccomp allow-lists, built with libseccomp and installed per thread: a
 * vCPU thread may run the guest and emulate devices but not open files or
 * sockets, fork, exec or map executable memory; the I/O thread may do block
 * I/O on descriptors it already has; and so on. Anything else kills the
 * process (SIGSYS) rather than returning an error a compromised thread could
 * probe with. */
#include "seccomp.h"

#include <errno.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "error.h"
#include "kvmc/kvmc.h"

/* What every kvmc thread needs: memory management by malloc and the thread
 * library, futexes, signals for kicks, time, and exiting. */
static const int common_syscalls[] = {
    SCMP_SYS(futex), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(restart_syscall), SCMP_SYS(exit), SCMP_SYS(exit_group),
    SCMP_SYS(madvise), SCMP_SYS(munmap), SCMP_SYS(brk), SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(sched_yield),
    SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(tgkill), SCMP_SYS(write),
    SCMP_SYS(read), SCMP_SYS(sigaltstack), SCMP_SYS(getrandom),
};

static const int io_syscalls[] = {
    SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(pread64),
    SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(preadv2),
    SCMP_SYS(pwritev2), SCMP_SYS(fdatasync),
    SCMP_SYS(fallocate), SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(readv),
    SCMP_SYS(writev),
};
/* Sockets the I/O thread already has or accepts, and Unix sockets it
 * connects to (vsock's guest-initiated connections). socket() is limited
 * by address family below. */
static const int socket_syscalls[] = {
    SCMP_SYS(accept4), SCMP_SYS(accept), SCMP_SYS(connect), SCMP_SYS(close),
    SCMP_SYS(shutdown), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(sendto),
    SCMP_SYS(recvfrom), SCMP_SYS(fcntl), SCMP_SYS(getsockopt), SCMP_SYS(setsockopt),
    SCMP_SYS(getsockname), SCMP_SYS(getpeername),
};
/* libslirp also binds and listens (FTP data, port forwards added later). */
static const int inet_syscalls[] = {SCMP_SYS(bind), SCMP_SYS(listen)};
static const int console_syscalls[] = {SCMP_SYS(poll), SCMP_SYS(ppoll)};
/* unlink: the CLI removes its vsock and console socket files on the way
 * out, after the VM has ended. */
static const int control_syscalls[] = {
    SCMP_SYS(close), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(newfstatat),
    SCMP_SYS(fstat), SCMP_SYS(lseek), SCMP_SYS(unlink),
};

/* The KVM ioctls each role may issue (argument 1 of ioctl). */
static const unsigned long vcpu_ioctls[] = {
    KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_IRQ_LINE,
    KVM_SIGNAL_MSI, KVM_SET_GSI_ROUTING, /* kvmc's I/O APIC, from guest MMIO */
};
static const unsigned long io_ioctls[] = {KVM_IRQ_LINE, KVM_SIGNAL_MSI};
static const unsigned long control_ioctls[] = {KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct role_list {
    const int *calls;
    size_t ncalls;
    const unsigned long *ioctls; /* ioctl is allowed only with these requests */
    size_t nioctls;
};

static const struct role_list roles[] = {
    [SECCOMP_ROLE_VCPU] = {NULL, 0, vcpu_ioctls, COUNT(vcpu_ioctls)},
    [SECCOMP_ROLE_IO] = {io_syscalls, COUNT(io_syscalls), io_ioctls, COUNT(io_ioctls)},
    [SECCOMP_ROLE_CONSOLE_INPUT] = {console_syscalls, COUNT(console_syscalls), io_ioctls,
                                    COUNT(io_ioctls)},
    [SECCOMP_ROLE_CONTROL] = {control_syscalls, COUNT(control_syscalls), control_ioctls,
                              COUNT(control_ioctls)},
};

static int add_calls(scmp_filter_ctx ctx, const int *calls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, calls[i], 0))
            return -1;
    return 0;
}

static int add_rules(scmp_filter_ctx ctx, const struct role_list *r)
{
    /* malloc's arenas and thread stacks need mmap and mprotect; nothing in
     * kvmc needs executable memory, so those two calls never get PROT_EXEC. */
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) ||
        seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)))
        return -1;
    if (add_calls(ctx, common_syscalls, COUNT(common_syscalls)) ||
        add_calls(ctx, r->calls, r->ncalls))
        return -1;
    for (size_t i = 0; i < r->nioctls; i++)
        if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_EQ, r->ioctls[i])))
            return -1;
    return 0;
}

static int add_socket_family(scmp_filter_ctx ctx, int family)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)family));
}

static int add_io_extras(scmp_filter_ctx ctx, unsigned extras)
{
    if (!extras)
        return 0;
    if (add_calls(ctx, socket_syscalls, COUNT(socket_syscalls)) ||
        add_socket_family(ctx, AF_UNIX))
        return -1;
    if (extras & SECCOMP_IO_INET)
        return add_calls(ctx, inet_syscalls, COUNT(inet_syscalls)) ||
               add_socket_family(ctx, AF_INET) || add_socket_family(ctx, AF_INET6) ||
               /* libslirp asks how much a socket holds, and sets O_NONBLOCK */
               seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                SCMP_A1(SCMP_CMP_EQ, FIONREAD)) ||
               seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                SCMP_A1(SCMP_CMP_EQ, FIONBIO));
    return 0;
}

static int confine(enum seccomp_role role, unsigned io_extras)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx)
        return kvmc_fail(KVMC_ENOMEM, "seccomp_init");
    int rc = add_rules(ctx, &roles[role]);
    if (!rc)
        rc = add_io_extras(ctx, io_extras);
    if (!rc)
        rc = seccomp_load(ctx); /* sets no_new_privs first */
    seccomp_release(ctx);
    if (rc)
        return kvmc_fail_errno(KVMC_ENOTSUP, rc < 0 ? -rc : EINVAL,
                               "installing the seccomp filter");
    return KVMC_OK;
}

int seccomp_confine(enum seccomp_role role) { return confine(role, 0); }

int seccomp_confine_io(unsigned extras) { return confine(SECCOMP_ROLE_IO, extras); }

int kvmc_seccomp_confine_control_thread(void)
{
    return seccomp_confine(SECCOMP_ROLE_CONTROL);
}
