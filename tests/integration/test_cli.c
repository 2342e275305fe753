/* The kvmc command as a user runs it: exit statuses, one-line errors that
 * name the bad input, --help that explains every option. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "kvmc/kvmc.h"
#include <unistd.h>

#include "cli_run.h"

/* Runs kvmc with the NULL-terminated arguments, stdin from /dev/null. */
static void run_cli(struct cli_result *r, ...)
{
    char *argv[32] = {KVMC_CLI};
    va_list ap;
    va_start(ap, r);
    for (int i = 1; i < 31 && (argv[i] = va_arg(ap, char *)); i++)
        ;
    va_end(ap);
    cli_run(r, argv);
}

static void assert_one_line_error(const struct cli_result *r, const char *want)
{
    cr_assert_eq(r->status, 2, "status %d, stderr: %s", r->status, r->err);
    cr_assert(strncmp(r->err, "kvmc: ", 6) == 0, "stderr: %s", r->err);
    cr_assert(strstr(r->err, want), "stderr '%s' lacks '%s'", r->err, want);
    char *nl = strchr(r->err, '\n');
    cr_assert(nl && nl[1] == '\0', "expected exactly one line, got: %s", r->err);
}

Test(cli, run_boots_the_embedded_default_guest)
{
    struct cli_result r;
    run_cli(&r, "run", NULL);
    cr_assert_eq(r.status, 0, "status %d\nstdout:\n%s\nstderr:\n%s", r.status, r.out, r.err);
    cr_assert(strstr(r.out, "kvmc test guest: booted via PVH entry"), "%s", r.out);
    cr_assert(strstr(r.out, "memory: 268041216 bytes usable (255 MiB)"), "%s", r.out);
    cr_assert(strstr(r.out, "cpus: 1 in MP table"), "%s", r.out);
    cr_assert(strstr(r.out, "self-check: ok"), "%s", r.out);
    cr_assert_str_empty(r.err);
}

Test(cli, run_with_options)
{
    struct cli_result r;
    run_cli(&r, "run", "--mem", "128M", "--cpus", "2", "--cmdline", "hello from cli", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "cmdline: hello from cli\n"), "%s", r.out);
    cr_assert(strstr(r.out, "smp: 2 of 2 cpus running"), "%s", r.out);
    cr_assert(strstr(r.out, "(127 MiB)"), "%s", r.out);
}

Test(cli, run_bzimage_kernel)
{
    struct cli_result r;
    run_cli(&r, "run", "--kernel", KVMC_TEST_GUEST_BZIMAGE, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "booted via Linux 64-bit entry"), "%s", r.out);
}

Test(cli, pit_is_opt_in)
{
    struct cli_result r;
    run_cli(&r, "run", "--cmdline", "kvmc.test=pit", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "pit: absent\n"), "%s", r.out);
    run_cli(&r, "run", "--pit", "--cmdline", "kvmc.test=pit", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "pit: counting\n"), "%s", r.out);
}

Test(cli, help_explains_every_option)
{
    struct cli_result r;
    run_cli(&r, "run", "--help", NULL);
    cr_assert_eq(r.status, 0);
    const char *opts[] = {"--kernel", "--initrd", "--cmdline", "--mem", "--cpus",
                          "--console", "--boot", "--disk", "--rng", "--mem-backing",
                          "--net", "--vsock", "--virtio-console", "--seccomp", "--jail",
                          "--jail-user", "--jail-report", "--pit", "--transport", "exit status",
                          "examples"};
    for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        cr_assert(strstr(r.out, opts[i]), "--help lacks %s", opts[i]);
    run_cli(&r, "--help", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.out, "run"));
    run_cli(&r, NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "usage"));
    const char *versions[][2] = {{"--version", NULL}, {"-V", NULL}, {"version", NULL},
                                 {"run", "--version"}};
    for (unsigned i = 0; i < 4; i++) {
        run_cli(&r, versions[i][0], versions[i][1], NULL);
        cr_assert_eq(r.status, 0, "%s %s", versions[i][0], versions[i][1]);
        cr_assert(strncmp(r.out, "kvmc " KVMC_VERSION_STRING, 5 + strlen(KVMC_VERSION_STRING)) == 0,
                  "%s", r.out);
    }
}

Test(cli, bad_values_get_one_line_naming_them)
{
    struct cli_result r;
    run_cli(&r, "run", "--kernel", "/nonexistent/bzImage", NULL);
    assert_one_line_error(&r, "/nonexistent/bzImage");
    run_cli(&r, "run", "--kernel", "/etc/os-release", NULL);
    assert_one_line_error(&r, "not a Linux bzImage or ELF kernel");
    run_cli(&r, "run", "--mem", "1M", NULL);
    assert_one_line_error(&r, "--mem 1M: memory 1048576 bytes is below the minimum of 4 MiB");
    run_cli(&r, "run", "--mem", "lots", NULL);
    assert_one_line_error(&r, "--mem lots: not a size");
    run_cli(&r, "run", "--mem", "100T", NULL);
    assert_one_line_error(&r, "more than the host's");
    run_cli(&r, "run", "--cpus", "0", NULL);
    assert_one_line_error(&r, "--cpus 0");
    run_cli(&r, "run", "--cpus", "two", NULL);
    assert_one_line_error(&r, "--cpus two");
    run_cli(&r, "run", "--console", "tty", NULL);
    assert_one_line_error(&r, "--console tty");
    run_cli(&r, "run", "--boot", "bios", NULL);
    assert_one_line_error(&r, "--boot bios");
    run_cli(&r, "run", "--kernel", NULL);
    assert_one_line_error(&r, "--kernel needs a value");
    run_cli(&r, "run", "--frobnicate", NULL);
    assert_one_line_error(&r, "unknown option --frobnicate");
    run_cli(&r, "run", "--disk", "/nonexistent/disk.img", NULL);
    assert_one_line_error(&r, "disk /nonexistent/disk.img");
    run_cli(&r, "run", "--disk", "/tmp,bogus", NULL);
    assert_one_line_error(&r, "unknown option 'bogus'");
    run_cli(&r, "run", "--initrd", "/nonexistent/initrd", NULL);
    assert_one_line_error(&r, "/nonexistent/initrd");
    run_cli(&r, "launch", NULL);
    cr_assert_eq(r.status, 2);
    cr_assert(strstr(r.err, "unknown command 'launch'"));
}

Test(cli, exit_status_reflects_how_the_guest_ended)
{
    struct cli_result r;
    run_cli(&r, "run", "--cmdline", "kvmc.test=reset", NULL);
    cr_assert_eq(r.status, 0, "reset: %s", r.err);
    run_cli(&r, "run", "--cmdline", "kvmc.test=fail", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "status 7"), "%s", r.err);
    run_cli(&r, "run", "--cmdline", "kvmc.test=triplefault", NULL);
    cr_assert_eq(r.status, 3);
    cr_assert(strstr(r.err, "triple fault"), "%s", r.err);
    cr_assert(strstr(r.err, "RIP 0x"), "%s", r.err);
    run_cli(&r, "run", "--cmdline", "kvmc.test=panic", NULL);
    cr_assert_eq(r.status, 4);
    cr_assert(strstr(r.err, "panicked"), "%s", r.err);
    run_cli(&r, "run", "--cmdline", "kvmc.test=acpi-poweroff", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_cli(&r, "run", "--cmdline", "kvmc.test=emulation-failure", NULL);
    cr_assert_eq(r.status, 3);
    cr_assert(strstr(r.err, "emulation failed"), "%s", r.err);
}

Test(cli, seccomp_is_on_by_default_and_can_be_turned_off)
{
    struct cli_result r;
    char disk[] = "/tmp/kvmc-cli-disk-XXXXXX";
    int fd = mkstemp(disk);
    cr_assert_eq(ftruncate(fd, 64 * 512), 0);
    close(fd);
    char arg[64];
    snprintf(arg, sizeof(arg), "%s,serial=sc", disk);
    /* Every device busy under the default filters: the run must complete. */
    run_cli(&r, "run", "--cpus", "2", "--disk", arg, "--rng", "--cmdline", "kvmc.test=virtio",
            NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert(strstr(r.out, "sector 5 write+read ok"), "%s", r.out);
    cr_assert(strstr(r.out, "virtio-rng: 64 bytes"), "%s", r.out);
    cr_assert_str_empty(r.err);
    run_cli(&r, "run", "--seccomp", "off", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert(strstr(r.err, "warning: seccomp is off"), "%s", r.err);
    run_cli(&r, "run", "--seccomp", "maybe", NULL);
    assert_one_line_error(&r, "--seccomp maybe");
    unlink(disk);
}

Test(cli, console_to_file)
{
    char path[] = "/tmp/kvmc-cli-console-XXXXXX";
    close(mkstemp(path));
    char arg[64];
    snprintf(arg, sizeof(arg), "file:%s", path);
    struct cli_result r;
    run_cli(&r, "run", "--console", arg, NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_empty(r.out, "nothing on stdout when the console goes to a file");
    char buf[4096] = "";
    FILE *f = fopen(path, "r");
    cr_assert(f);
    buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
    fclose(f);
    unlink(path);
    cr_assert(strstr(buf, "self-check: ok"), "%s", buf);
}

/* A `kvmc run` whose guest waits for console input that never comes. */
struct idle_cli {
    pid_t pid;
    int input[2];
    int out;
    char out_path[32];
};

/* Starts kvmc run in echo mode with the NULL-terminated extra arguments and
 * waits until its guest is idle. */
static void idle_cli_start(struct idle_cli *c, ...)
{
    char *argv[16] = {KVMC_CLI, "run", "--cmdline", "kvmc.test=echo"};
    va_list ap;
    va_start(ap, c);
    for (int i = 4; i < 15 && (argv[i] = va_arg(ap, char *)); i++)
        ;
    va_end(ap);
    snprintf(c->out_path, sizeof(c->out_path), "/tmp/kvmc-cli-idle-XXXXXX");
    c->out = mkstemp(c->out_path);
    cr_assert(c->out >= 0 && pipe(c->input) == 0);
    c->pid = fork();
    if (c->pid == 0) {
        dup2(c->input[0], 0);
        dup2(c->out, 1);
        execv(KVMC_CLI, argv);
        _exit(127);
    }
    char buf[4096] = "";
    for (int i = 0; i < 500 && !strstr(buf, "echo: ready"); i++) {
        usleep(10000);
        FILE *f = fopen(c->out_path, "r");
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    cr_assert(strstr(buf, "echo: ready"), "guest never got ready: %s", buf);
}

/* Sends sig and returns kvmc's wait status. */
static int idle_cli_end(struct idle_cli *c, int sig)
{
    kill(c->pid, sig);
    int status;
    waitpid(c->pid, &status, 0);
    close(c->input[0]);
    close(c->input[1]);
    close(c->out);
    unlink(c->out_path);
    return status;
}

Test(cli, sigterm_stops_the_vm)
{
    struct idle_cli c;
    idle_cli_start(&c, NULL);
    int status = idle_cli_end(&c, SIGTERM);
    cr_assert(WIFEXITED(status), "kvmc died of a signal");
    cr_assert_eq(WEXITSTATUS(status), 130);
}

/* Whether the process maps a file whose name contains what. */
static bool maps_file(pid_t pid, const char *what)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s", path);
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, what) != NULL;
    fclose(f);
    return found;
}

/* Each library mapped costs every VM its resident pages (docs/performance.md,
 * "Memory"): a kvmc process maps libkvmc and libc, libslirp only for user
 * networking, and never libseccomp, whose filters are compiled at build
 * time. */
Test(cli, an_idle_vm_maps_only_the_libraries_it_uses)
{
    struct idle_cli c;
    idle_cli_start(&c, NULL); /* seccomp on: the default */
    cr_assert(maps_file(c.pid, "libkvmc.so"));
    cr_assert(maps_file(c.pid, "libc.so"));
    cr_assert_not(maps_file(c.pid, "libseccomp"), "libseccomp is mapped");
    cr_assert_not(maps_file(c.pid, "libslirp"), "libslirp is mapped without --net user");
    cr_assert_not(maps_file(c.pid, "libglib"), "glib is mapped without --net user");
    idle_cli_end(&c, SIGKILL);

    idle_cli_start(&c, "--net", "user", NULL);
    cr_assert(maps_file(c.pid, "libslirp"), "--net user without libslirp mapped");
    cr_assert_not(maps_file(c.pid, "libseccomp"), "libseccomp is mapped");
    idle_cli_end(&c, SIGKILL);
}

/* The guest's first DNS query to slirp's nameserver killed kvmc with SIGSYS
 * (libslirp opened /etc/resolv.conf on the seccomp-confined I/O thread).
 * With the default configuration and seccomp on, the query is forwarded to
 * the host's resolv.conf server by kvmc, whether or not that answers here. */
Test(cli, a_dns_query_under_the_default_seccomp_lists_does_not_kill_kvmc)
{
    struct cli_result r;
    run_cli(&r, "run", "--net", "user", "--cmdline",
            "kvmc.test=net kvmc.net=10.0.2.15,10.0.2.3,53", NULL);
    cr_assert_neq(r.status, 128 + SIGSYS, "killed by seccomp: %s", r.err);
    cr_assert(r.status == 0 || r.status == 1, "status %d: %s", r.status, r.err);
    cr_assert(strstr(r.out, "virtio-net: mac 56, arp ok, udp "), "%s", r.out);
}

/* The kernel and initrd go from their files straight into guest memory:
 * booting costs the guest pages they fill, not a second, transient copy
 * (the loader used to read both whole into malloc'd buffers first). */
Test(cli, loading_an_initrd_needs_no_transient_copy)
{
    char initrd[] = "/tmp/kvmc-big-initrd-XXXXXX";
    int fd = mkstemp(initrd);
    const size_t size = 96u << 20;
    static char block[1 << 20];
    memset(block, 0x5a, sizeof(block));
    for (size_t done = 0; done < size; done += sizeof(block))
        cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        execl(KVMC_CLI, KVMC_CLI, "run", "--mem", "256M", "--initrd", initrd, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    cr_assert_eq(wait4(pid, &status, 0, &ru), pid);
    unlink(initrd);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x", status);
    long peak_mib = ru.ru_maxrss >> 10;
    cr_assert_lt(peak_mib, 96 + 24, "peak RSS %ld MiB for a 96 MiB initrd", peak_mib);
    cr_assert_geq(peak_mib, 96, "peak RSS %ld MiB: the initrd never reached guest memory",
                  peak_mib);
}
