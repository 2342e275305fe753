/* The seccomp allow-lists kvmc's threads install: each child process below
 * confines itself with a real list, then makes one system call. Forbidden
 * ones must kill it with SIGSYS; the ones its role needs must not. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seccomp.h"
#include "seccomp_filters.h"

/* Runs body in a child, confined with role (and, for the I/O role, extras)
 * if confine; returns its wait status. */
static int in_child(bool confine, enum seccomp_role role, unsigned io_extras,
                    void (*body)(void))
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int rc = !confine ? 0
                 : role == SECCOMP_ROLE_IO ? seccomp_confine_io(io_extras)
                                           : seccomp_confine(role);
        if (rc != 0)
            _exit(100);
        body();
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return status;
}

static int confined_with(enum seccomp_role role, unsigned io_extras, void (*body)(void))
{
    return in_child(true, role, io_extras, body);
}

static int unconfined(void (*body)(void)) { return in_child(false, 0, 0, body); }

static int confined(enum seccomp_role role, void (*body)(void))
{
    return confined_with(role, 0, body);
}

static void assert_killed(int status, const char *what)
{
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS,
              "%s: expected death by SIGSYS, got status 0x%x", what, status);
}

static void assert_lived(int status, const char *what)
{
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "%s: expected a normal exit, got status 0x%x", what, status);
}

static void open_a_file(void) { open("/etc/hostname", O_RDONLY); }
static void make_a_socket(void) { socket(AF_INET, SOCK_STREAM, 0); }
static void make_a_unix_socket(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || close(fd) != 0)
        _exit(1);
}
static void make_an_inet_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int n = 0;
    if (fd < 0 || ioctl(fd, FIONREAD, &n) != 0 || close(fd) != 0)
        _exit(1);
}
static void fork_again(void) { fork(); }
static void exec_a_shell(void) { execl("/bin/sh", "sh", "-c", "true", (char *)NULL); }
static void map_executable(void) { mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }
static void create_a_vm(void) { ioctl(3, KVM_CREATE_VM, 0); }
static void protect_executable(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
}
static void write_and_read(void)
{
    void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p, 4096, PROT_READ) != 0 || munmap(p, 1 << 20) != 0)
        _exit(2);
    char c = 'x';
    if (write(2, "", 0) < 0 || read(-1, &c, 0) > 0)
        _exit(1);
}
/* The classic ways around a filter written for one ABI: the same call
 * through the x32 numbers, or through the 32-bit int 0x80 entry, whose
 * numbers differ (20 is getpid there, write here). */
static void x32_getpid(void) { syscall(0x40000000 | __NR_getpid); }
static void i386_getpid(void)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    (void)ret;
}
static void kvm_irq_line(void)
{
    struct kvm_irq_level irq = {.irq = 4, .level = 0};
    ioctl(-1, KVM_IRQ_LINE, &irq); /* allowed: fails with EBADF, no SIGSYS */
}

Test(seccomp, vcpu_threads_cannot_open_fork_exec_or_network)
{
    assert_killed(confined(SECCOMP_ROLE_VCPU, open_a_file), "open");
    assert_killed(confined(SECCOMP_ROLE_VCPU, make_a_socket), "socket");
    assert_killed(confined(SECCOMP_ROLE_VCPU, fork_again), "fork");
    assert_killed(confined(SECCOMP_ROLE_VCPU, exec_a_shell), "execve");
    assert_killed(confined(SECCOMP_ROLE_VCPU, map_executable), "mmap PROT_EXEC");
    assert_killed(confined(SECCOMP_ROLE_VCPU, protect_executable), "mprotect PROT_EXEC");
    assert_killed(confined(SECCOMP_ROLE_VCPU, create_a_vm), "ioctl KVM_CREATE_VM");
}

Test(seccomp, what_each_role_needs_is_allowed)
{
    assert_lived(confined(SECCOMP_ROLE_VCPU, write_and_read), "vCPU read/write");
    assert_lived(confined(SECCOMP_ROLE_VCPU, kvm_irq_line), "vCPU KVM_IRQ_LINE");
    assert_lived(confined(SECCOMP_ROLE_IO, write_and_read), "I/O read/write");
    assert_lived(confined(SECCOMP_ROLE_CONTROL, write_and_read), "control read/write");
}

Test(seccomp, io_and_control_threads_are_confined_too)
{
    assert_killed(confined(SECCOMP_ROLE_IO, open_a_file), "I/O open");
    assert_killed(confined(SECCOMP_ROLE_IO, make_a_socket), "I/O socket");
    assert_killed(confined(SECCOMP_ROLE_CONSOLE, fork_again), "input fork");
    assert_killed(confined(SECCOMP_ROLE_CONTROL, exec_a_shell), "control execve");
    assert_killed(confined(SECCOMP_ROLE_CONTROL, create_a_vm), "control KVM_CREATE_VM");
}

Test(seccomp, io_socket_rights_follow_the_devices)
{
    /* vsock and virtio-console: Unix sockets only. */
    assert_lived(confined_with(SECCOMP_ROLE_IO, SECCOMP_IO_UNIX, make_a_unix_socket),
                 "I/O with Unix extras: AF_UNIX socket");
    assert_killed(confined_with(SECCOMP_ROLE_IO, SECCOMP_IO_UNIX, make_a_socket),
                  "I/O with Unix extras: AF_INET socket");
    assert_killed(confined_with(SECCOMP_ROLE_IO, SECCOMP_IO_UNIX, open_a_file),
                  "I/O with Unix extras: open");
    /* User networking: IP sockets and what libslirp asks of them. */
    assert_lived(confined_with(SECCOMP_ROLE_IO, SECCOMP_IO_UNIX | SECCOMP_IO_INET,
                               make_an_inet_socket), "I/O with IP extras: AF_INET socket");
    assert_killed(confined_with(SECCOMP_ROLE_IO, SECCOMP_IO_INET, exec_a_shell),
                  "I/O with IP extras: execve");
}

Test(seccomp, other_syscall_abis_are_refused_by_every_role)
{
    /* Both work without a filter, so a death below is the filter's doing. */
    assert_lived(unconfined(x32_getpid), "x32 getpid, unconfined");
    assert_lived(unconfined(i386_getpid), "int 0x80 getpid, unconfined");
    for (enum seccomp_role role = SECCOMP_ROLE_VCPU; role <= SECCOMP_ROLE_CONTROL; role++) {
        assert_killed(confined(role, x32_getpid), "x32 getpid");
        assert_killed(confined(role, i386_getpid), "int 0x80 getpid");
    }
}

/* The build-time compiled filters each start by checking the architecture,
 * before they look at a system call number. */
Test(seccomp, every_compiled_filter_checks_the_architecture_first)
{
    for (int id = 0; id < SECCOMP_FILTER_COUNT; id++) {
        const struct seccomp_filter_code *f = &seccomp_filters[id];
        cr_assert(f->len >= 3 && f->len <= BPF_MAXINSNS, "filter %d: %u instructions", id, f->len);
        cr_assert_eq(f->code[0].code, BPF_LD | BPF_W | BPF_ABS, "filter %d", id);
        cr_assert_eq(f->code[0].k, offsetof(struct seccomp_data, arch), "filter %d", id);
        cr_assert_eq(f->code[1].code, BPF_JMP | BPF_JEQ | BPF_K, "filter %d", id);
        cr_assert_eq(f->code[1].k, AUDIT_ARCH_X86_64, "filter %d", id);
    }
}
