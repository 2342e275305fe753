/* Console output never blocks the guest or the VMM: a reader that stops
 * reading costs output, not liveness, and a console file has a size limit. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "guest_run.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* waitpid with a deadline; kills the child and fails if it is not done. */
static int wait_within(pid_t pid, double seconds, const char *what)
{
    double end = now_s() + seconds;
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_s() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            cr_assert_fail("%s: still running after %.0f s", what, seconds);
        }
        usleep(10000);
    }
    return status;
}

/* Reads until text shows up (the guest is printing), then stops reading. */
static void read_until(int fd, const char *text)
{
    char buf[8192];
    size_t have = 0;
    double end = now_s() + 30;
    while (now_s() < end) {
        ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
        cr_assert(n > 0, "the console pipe closed before '%s'", text);
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, text))
            return;
        if (have > sizeof(buf) / 2) { /* keep the tail */
            memmove(buf, buf + have - 64, 64);
            have = 64;
        }
    }
    cr_assert_fail("never saw '%s'", text);
}

static void run_cli_with_blocked_console(int sig, int want_status)
{
    int out[2], err[2];
    cr_assert_eq(pipe(out), 0);
    cr_assert_eq(pipe(err), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execl(KVMC_CLI, KVMC_CLI, "run", "--cmdline", "kvmc.test=flood", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    fcntl(out[0], F_SETPIPE_SZ, 4096); /* fills sooner */
    read_until(out[0], "flood line 3 ");
    /* Stop reading: the pipe and kvmc's buffer fill up, then kvmc drops. */
    read_until(err[0], "console output is being dropped");
    kill(pid, sig);
    int status = wait_within(pid, 5, "kvmc with a console nobody reads");
    cr_assert(WIFEXITED(status), "kvmc died of signal %d", WTERMSIG(status));
    cr_assert_eq(WEXITSTATUS(status), want_status);
    close(out[0]);
    close(err[0]);
}

Test(console_output, sigterm_stops_kvmc_whose_console_nobody_reads)
{
    run_cli_with_blocked_console(SIGTERM, 130);
}

Test(console_output, sighup_is_treated_like_sigterm)
{
    run_cli_with_blocked_console(SIGHUP, 130);
}

/* The library: stop, wait and destroy all return although the console fd
 * is a pipe that is never read. */
Test(console_output, stop_wait_destroy_return_with_a_blocked_console_fd)
{
    int out[2];
    cr_assert_eq(pipe(out), 0);
    struct guest_spec spec = {.cmdline = "kvmc.test=flood"};
    kvmc_config *cfg = guest_config(&spec, NULL);
    cr_assert_eq(kvmc_config_set_console_fd(cfg, out[1]), KVMC_OK);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    fcntl(out[0], F_SETPIPE_SZ, 4096);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    read_until(out[0], "flood line 3 ");
    usleep(300000);
    /* The guest keeps running with its output dropped: pause and resume. */
    cr_assert_eq(kvmc_vm_pause(vm), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_resume(vm), KVMC_OK);
    double t0 = now_s();
    cr_assert_eq(kvmc_vm_stop(vm), KVMC_OK);
    kvmc_exit_info info;
    cr_assert_eq(kvmc_vm_wait(vm, 5000, &info), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(info.reason, KVMC_EXIT_STOPPED);
    kvmc_vm_destroy(vm);
    cr_assert_lt(now_s() - t0, 3.0, "stop to destroyed took %.1f s", now_s() - t0);
    close(out[0]);
    close(out[1]);
}

/* A reader that keeps reading gets every byte, the last line included. */
Test(console_output, a_reader_that_reads_gets_everything)
{
    int out[2];
    cr_assert_eq(pipe(out), 0);
    struct guest_spec spec = {.cmdline = "kvmc.test=flood:1000"};
    kvmc_config *cfg = guest_config(&spec, NULL);
    cr_assert_eq(kvmc_config_set_console_fd(cfg, out[1]), KVMC_OK);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    /* A slow reader: 4 KiB every 2 ms. */
    size_t total = 0;
    char buf[4096], tail[64] = "";
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t n = read(out[0], buf, sizeof(buf));
        if (n > 0) {
            total += (size_t)n;
            size_t keep = n < 63 ? (size_t)n : 63;
            memcpy(tail, buf + n - keep, keep);
            tail[keep] = '\0';
        } else if (kvmc_vm_get_state(vm) == KVMC_STATE_EXITED) {
            break;
        }
        usleep(2000);
    }
    kvmc_exit_info info;
    cr_assert_eq(kvmc_vm_wait(vm, 5000, &info), KVMC_OK);
    for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;)
        total += (size_t)n;
    kvmc_vm_destroy(vm);
    cr_assert_eq(info.reason, KVMC_EXIT_POWEROFF, "%s", info.message);
    /* 1000 lines of the flood, plus the boot report before them. */
    cr_assert_gt(total, 1000u * 60, "got %zu bytes", total);
    close(out[0]);
    close(out[1]);
}

Test(console_output, a_console_file_stops_at_its_limit)
{
    char path[] = "/tmp/kvmc-console-limit-XXXXXX";
    close(mkstemp(path));
    struct guest_spec spec = {.cmdline = "kvmc.test=flood:1000"};
    kvmc_config *cfg = guest_config(&spec, NULL);
    cr_assert_eq(kvmc_config_set_console_file(cfg, path), KVMC_OK);
    cr_assert_eq(kvmc_config_set_console_limit(cfg, 30000), KVMC_OK);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK);
    kvmc_exit_info info;
    cr_assert_eq(kvmc_vm_wait(vm, 60000, &info), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(info.reason, KVMC_EXIT_POWEROFF, "the guest is not slowed down: %s",
                 info.message);
    kvmc_vm_destroy(vm);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    const char note[] = "\n[kvmc: console file limit reached; later output dropped]\n";
    cr_assert_eq(st.st_size, (off_t)(30000 + sizeof(note) - 1), "size %lld",
                 (long long)st.st_size);
    FILE *f = fopen(path, "r");
    char tail[128] = "";
    fseek(f, -(long)(sizeof(note) - 1), SEEK_END);
    cr_assert_eq(fread(tail, 1, sizeof(note) - 1, f), sizeof(note) - 1);
    fclose(f);
    cr_assert_str_eq(tail, note);
    unlink(path);
}
