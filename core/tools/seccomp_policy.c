/* kvmc's seccomp policy, compiled to BPF at build time.
 *
 * Each kvmc thread installs an allow-list for its role: a vCPU thread may run
 * the guest and emulate devices but not open files or sockets, fork, exec or
 * map executable memory; the I/O thread may do block I/O on descriptors it
 * already has; and so on. Anything else kills the process (SIGSYS) rather
 * than returning an error a compromised thread could probe with.
 *
 * This program builds each list with libseccomp and writes the BPF out as C
 * arrays (seccomp_filters.c, see core/src/seccomp_filters.h), which
 * core/src/seccomp.c installs with one seccomp(2) call. So the library needs
 * no libseccomp at run time: no filter is built per thread, and no library
 * is mapped into every VMM process for it (the approach of Firecracker's
 * seccompiler).
 *
 * Usage: kvmc_seccomp_policy OUTPUT.c */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/vfio.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>

#include "../src/seccomp_filters.h"

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
 * out, after the VM has ended. poll: the CLI's terminal reader waits for
 * keys and for its stop eventfd. */
static const int control_syscalls[] = {
    SCMP_SYS(close), SCMP_SYS(rt_sigtimedwait), SCMP_SYS(newfstatat),
    SCMP_SYS(fstat), SCMP_SYS(lseek), SCMP_SYS(unlink), SCMP_SYS(poll), SCMP_SYS(ppoll),
};

/* The KVM ioctls each role may issue (argument 1 of ioctl). */
static const unsigned long vcpu_ioctls[] = {
    KVM_RUN, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_IRQ_LINE,
    KVM_SIGNAL_MSI, KVM_SET_GSI_ROUTING, /* kvmc's I/O APIC, from guest MMIO */
    KVM_IOEVENTFD, /* a guest moving a virtio-pci BAR moves its notify eventfds */
    /* VFIO: the guest turning MSI-X on or off (VFIO_DEVICE_SET_IRQS), moving
     * a vector (KVM_IRQFD on its MSI route) or a BAR (its memory slot). */
    VFIO_DEVICE_SET_IRQS, KVM_IRQFD, KVM_SET_USER_MEMORY_REGION,
};
/* VFIO: BAR and config accesses the guest makes are pread/pwrite on the
 * device's fd, from the vCPU that exited. */
static const int vcpu_syscalls[] = {SCMP_SYS(pread64), SCMP_SYS(pwrite64)};
static const unsigned long io_ioctls[] = {KVM_IRQ_LINE, KVM_SIGNAL_MSI};
/* TCGETS/TCSETS*: the CLI puts its terminal back (tcsetattr) on the way out. */
static const unsigned long control_ioctls[] = {KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS,
                                               TCGETS, TCSETS, TCSETSW, TCSETSF};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define LIST(a) a, COUNT(a)

enum socket_rights { NO_SOCKETS, UNIX_SOCKETS, UNIX_AND_IP_SOCKETS };

struct filter_spec {
    const char *name; /* SECCOMP_FILTER_<name>, and the array filter_<name> */
    const int *calls;
    size_t ncalls;
    const unsigned long *ioctls; /* ioctl is allowed only with these requests */
    size_t nioctls;
    enum socket_rights sockets;
};

static const struct filter_spec specs[] = {
    {"VCPU", LIST(vcpu_syscalls), LIST(vcpu_ioctls), NO_SOCKETS},
    {"IO", LIST(io_syscalls), LIST(io_ioctls), NO_SOCKETS},
    {"IO_UNIX", LIST(io_syscalls), LIST(io_ioctls), UNIX_SOCKETS},
    {"IO_INET", LIST(io_syscalls), LIST(io_ioctls),
     UNIX_AND_IP_SOCKETS},
    {"CONSOLE", LIST(console_syscalls), LIST(io_ioctls),
     NO_SOCKETS},
    {"CONTROL", LIST(control_syscalls), LIST(control_ioctls),
     NO_SOCKETS},
};
_Static_assert(COUNT(specs) == SECCOMP_FILTER_COUNT, "one spec per filter id");

static int allow(scmp_filter_ctx ctx, int call)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, call, 0);
}

static int allow_all(scmp_filter_ctx ctx, const int *calls, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = allow(ctx, calls[i]);
    return rc;
}

static int allow_ioctl(scmp_filter_ctx ctx, unsigned long request)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                            SCMP_A1(SCMP_CMP_EQ, request, 0));
}

static int allow_socket_family(scmp_filter_ctx ctx, int family)
{
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)family, 0));
}

/* Each helper returns 0 or libseccomp's negative errno; (rc = a) || (rc = b)
 * keeps the first failure's. */
static int allow_sockets(scmp_filter_ctx ctx, enum socket_rights rights)
{
    int rc = 0;
    if (rights == NO_SOCKETS)
        return 0;
    if ((rc = allow_all(ctx, LIST(socket_syscalls))) || (rc = allow_socket_family(ctx, AF_UNIX)))
        return rc;
    if (rights == UNIX_SOCKETS)
        return 0;
    /* libslirp asks how much a socket holds, and sets O_NONBLOCK */
    if ((rc = allow_all(ctx, LIST(inet_syscalls))) || (rc = allow_socket_family(ctx, AF_INET)) ||
        (rc = allow_socket_family(ctx, AF_INET6)) || (rc = allow_ioctl(ctx, FIONREAD)))
        return rc;
    return allow_ioctl(ctx, FIONBIO);
}

static int add_rules(scmp_filter_ctx ctx, const struct filter_spec *s)
{
    /* malloc's arenas and thread stacks need mmap and mprotect; nothing in
     * kvmc needs executable memory, so those two calls never get PROT_EXEC. */
    int rc = 0;
    if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                               SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) ||
        (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                               SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) ||
        (rc = allow_all(ctx, LIST(common_syscalls))) ||
        (rc = allow_all(ctx, s->calls, s->ncalls)))
        return rc;
    for (size_t i = 0; i < s->nioctls && !rc; i++)
        rc = allow_ioctl(ctx, s->ioctls[i]);
    return rc ? rc : allow_sockets(ctx, s->sockets);
}

/* Compiles one list and writes it to out as a C array named after it. */
static int emit_filter(FILE *out, const struct filter_spec *s)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx) {
        fprintf(stderr, "seccomp_init failed for the %s filter: does this kernel have "
                        "SECCOMP_RET_KILL_PROCESS (Linux 4.14 or later)?\n", s->name);
        return -1;
    }
    FILE *bpf = tmpfile();
    int rc = bpf ? add_rules(ctx, s) : -errno;
    if (!rc)
        rc = seccomp_export_bpf(ctx, fileno(bpf));
    seccomp_release(ctx);
    if (rc) {
        fprintf(stderr, "compiling the %s filter: %s\n", s->name, strerror(-rc));
        if (bpf)
            fclose(bpf);
        return -1;
    }
    rewind(bpf);
    fprintf(out, "static const struct sock_filter filter_%s[] = {\n", s->name);
    struct sock_filter insn;
    size_t n = 0;
    while (fread(&insn, sizeof insn, 1, bpf) == 1) {
        fprintf(out, "    {0x%04x, %u, %u, 0x%08x},\n", insn.code, insn.jt, insn.jf, insn.k);
        n++;
    }
    fclose(bpf);
    fprintf(out, "};\n\n");
    if (n == 0 || n > BPF_MAXINSNS) {
        fprintf(stderr, "the %s filter has %zu instructions\n", s->name, n);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT.c\n", argv[0]);
        return 2;
    }
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    const struct scmp_version *v = seccomp_version();
    fprintf(out,
            "/* Generated by core/tools/seccomp_policy.c with libseccomp %u.%u.%u.\n"
            " * Do not edit: change the policy there. */\n"
            "#include \"seccomp_filters.h\"\n\n",
            v->major, v->minor, v->micro);
    int rc = 0;
    for (size_t i = 0; i < COUNT(specs) && !rc; i++)
        rc = emit_filter(out, &specs[i]);
    fprintf(out, "const struct seccomp_filter_code seccomp_filters[SECCOMP_FILTER_COUNT] = {\n");
    for (size_t i = 0; i < COUNT(specs); i++) {
        const char *n = specs[i].name;
        fprintf(out,
                "    [SECCOMP_FILTER_%s] = {filter_%s, sizeof filter_%s / sizeof filter_%s[0]},\n",
                n, n, n, n);
    }
    fprintf(out, "};\n");
    if (fclose(out) != 0 || rc) {
        remove(argv[1]);
        return 1;
    }
    return 0;
}
