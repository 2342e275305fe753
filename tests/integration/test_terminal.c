/* `kvmc run` on a terminal: raw input (every key reaches the guest at once,
 * Ctrl-C included, and the terminal does not echo), Ctrl-A x quits, and
 * the terminal's settings are back afterwards, however kvmc ended. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

struct term_run {
    int master, slave;
    pid_t pid;
    char out[16384];
    size_t len;
    struct termios before;
};

static void start_on_terminal(struct term_run *t, char *const argv[])
{
    memset(t, 0, sizeof(*t));
    cr_assert_eq(openpty(&t->master, &t->slave, NULL, NULL, NULL), 0);
    cr_assert_eq(tcgetattr(t->slave, &t->before), 0);
    t->pid = fork();
    if (t->pid == 0) {
        setsid();
        ioctl(t->slave, TIOCSCTTY, 0);
        dup2(t->slave, 0);
        dup2(t->slave, 1);
        dup2(t->slave, 2);
        execv(argv[0], argv);
        _exit(127);
    }
}

/* Reads the terminal until text appears (or fails after 20 s). */
static void read_until(struct term_run *t, const char *text)
{
    for (int i = 0; i < 2000 && !memmem(t->out, t->len, text, strlen(text)); i++) {
        struct pollfd p = {.fd = t->master, .events = POLLIN};
        if (poll(&p, 1, 10) > 0) {
            ssize_t n = read(t->master, t->out + t->len, sizeof(t->out) - 1 - t->len);
            if (n > 0)
                t->len += (size_t)n;
        }
    }
    t->out[t->len] = 0;
    cr_assert(memmem(t->out, t->len, text, strlen(text)), "never saw '%s' in:\n%s", text,
              t->out);
}

static int finish(struct term_run *t)
{
    int status = 0;
    for (int i = 0; i < 2000 && waitpid(t->pid, &status, WNOHANG) == 0; i++) {
        char drain[4096];
        struct pollfd p = {.fd = t->master, .events = POLLIN};
        if (poll(&p, 1, 10) > 0 && read(t->master, drain, sizeof(drain)) > 0) {
        }
    }
    if (waitpid(t->pid, &status, WNOHANG) == 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, &status, 0);
        cr_assert_fail("kvmc did not end");
    }
    struct termios after;
    cr_assert_eq(tcgetattr(t->slave, &after), 0);
    cr_assert_eq(after.c_lflag, t->before.c_lflag, "local modes not restored");
    cr_assert_eq(after.c_iflag, t->before.c_iflag, "input modes not restored");
    close(t->master);
    close(t->slave);
    return status;
}

Test(terminal, keys_reach_the_guest_raw_and_the_terminal_is_restored)
{
    char *argv[] = {KVMC_CLI, "run", "--cmdline", "kvmc.test=echo", NULL};
    struct term_run t;
    start_on_terminal(&t, argv);
    read_until(&t, "echo: ready");
    /* Ctrl-C is a byte for the guest, not a signal that kills kvmc. */
    cr_assert_eq(write(t.master, "ab\x03" "cd\r", 6), 6);
    read_until(&t, "echo: ab\x03" "cd");
    int status = finish(&t);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x: %s", status, t.out);
    /* The guest printed the line once; a cooked terminal would have echoed
     * the keys first (Ctrl-C as "^C"). */
    const char *first = memmem(t.out, t.len, "ab\x03" "cd", 5);
    cr_assert_null(memmem(first + 5, t.len - (size_t)(first + 5 - t.out), "ab\x03" "cd", 5),
                   "the terminal echoed the input:\n%s", t.out);
    cr_assert_null(strstr(t.out, "ab^C"), "the terminal echoed the input:\n%s", t.out);
}

Test(terminal, ctrl_a_x_stops_the_vm)
{
    char *argv[] = {KVMC_CLI, "run", "--cmdline", "kvmc.test=echo", NULL};
    struct term_run t;
    start_on_terminal(&t, argv);
    read_until(&t, "echo: ready");
    cr_assert_eq(write(t.master, "\x01x", 2), 2);
    int status = finish(&t);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status 0x%x: %s", status,
              t.out);
}

Test(terminal, sigterm_and_the_jail_restore_the_terminal_too)
{
    char *argv[] = {KVMC_CLI, "run", "--jail", "--cmdline", "kvmc.test=echo", NULL};
    struct term_run t;
    start_on_terminal(&t, argv);
    read_until(&t, "echo: ready");
    kill(t.pid, SIGTERM); /* the jail's parent forwards it */
    int status = finish(&t);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status 0x%x: %s", status,
              t.out);
}
