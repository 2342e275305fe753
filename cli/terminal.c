#include "terminal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#define CTRL_A 0x01

static struct termios saved;
static int saved_fd = -1;

static void restore_and_reraise(int sig)
{
    terminal_restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

bool terminal_raw(int fd)
{
    struct termios t;
    if (!isatty(fd) || tcgetattr(fd, &t) < 0)
        return false;
    saved = t;
    saved_fd = fd;
    /* Input raw: no line editing, no echo, no signals from keys, no flow
     * control, bytes as typed. Output keeps its processing (the guest may
     * print bare newlines). */
    t.c_iflag &= ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(unsigned)(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSAFLUSH, &t) < 0) {
        saved_fd = -1;
        return false;
    }
    atexit(terminal_restore);
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGQUIT};
    for (unsigned i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++) {
        struct sigaction sa = {.sa_handler = restore_and_reraise, .sa_flags = SA_RESETHAND};
        sigemptyset(&sa.sa_mask);
        sigaction(fatal[i], &sa, NULL);
    }
    return true;
}

void terminal_restore(void)
{
    if (saved_fd >= 0)
        tcsetattr(saved_fd, TCSAFLUSH, &saved); /* async-signal-safe */
}

unsigned escape_filter(unsigned char byte, bool *pending_escape, unsigned char out[2],
                       bool *quit, bool *help)
{
    if (!*pending_escape) {
        if (byte == CTRL_A) {
            *pending_escape = true;
            return 0;
        }
        out[0] = byte;
        return 1;
    }
    *pending_escape = false;
    switch (byte) {
    case 'x':
    case 'X':
        *quit = true;
        return 0;
    case 'h':
    case 'H':
    case '?':
        *help = true;
        return 0;
    case CTRL_A:
        out[0] = CTRL_A;
        return 1;
    default: /* not an escape: both go to the guest */
        out[0] = CTRL_A;
        out[1] = byte;
        return 2;
    }
}

struct escape_reader {
    int in_fd, pipe_out, stop_fd;
    void (*on_quit)(void *);
    void *opaque;
    bool confine, started;
    pthread_t thread;
};

static const char help_text[] =
    "\r\nkvmc console escapes:\r\n"
    "  Ctrl-A x       stop the VM and exit\r\n"
    "  Ctrl-A Ctrl-A  send Ctrl-A to the guest\r\n"
    "  Ctrl-A h       this help\r\n";

static bool write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void *reader_main(void *arg)
{
    struct escape_reader *r = arg;
    bool pending = false;
    if (r->confine && kvmc_seccomp_confine_control_thread() != KVMC_OK) {
        static const char msg[] = "kvmc: console input: seccomp refused; no console input\n";
        write_all(STDERR_FILENO, (const unsigned char *)msg, sizeof(msg) - 1);
        return NULL;
    }
    for (;;) {
        struct pollfd fds[2] = {{.fd = r->in_fd, .events = POLLIN},
                                {.fd = r->stop_fd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            break;
        unsigned char buf[256], out[512];
        ssize_t n = read(r->in_fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break; /* the terminal went away: the guest gets no more input */
        size_t m = 0;
        bool quit = false, help = false;
        for (ssize_t i = 0; i < n && !quit; i++)
            m += escape_filter(buf[i], &pending, out + m, &quit, &help);
        if (help)
            write_all(STDERR_FILENO, (const unsigned char *)help_text, sizeof(help_text) - 1);
        if (m && !write_all(r->pipe_out, out, m))
            break;
        if (quit) {
            r->on_quit(r->opaque);
            break;
        }
    }
    close(r->pipe_out); /* the guest sees the end of its input */
    r->pipe_out = -1;
    return NULL;
}

struct escape_reader *escape_reader_new(int in_fd, int *guest_in, void (*on_quit)(void *),
                                        void *opaque)
{
    struct escape_reader *r = calloc(1, sizeof(*r));
    int p[2];
    if (!r || pipe2(p, O_CLOEXEC) < 0) {
        free(r);
        return NULL;
    }
    *r = (struct escape_reader){.in_fd = in_fd, .pipe_out = p[1], .on_quit = on_quit,
                                .opaque = opaque};
    r->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (r->stop_fd < 0) {
        close(p[0]);
        close(p[1]);
        free(r);
        return NULL;
    }
    *guest_in = p[0];
    return r;
}

bool escape_reader_start(struct escape_reader *r, bool confine)
{
    r->confine = confine;
    if (pthread_create(&r->thread, NULL, reader_main, r) != 0)
        return false;
    pthread_setname_np(r->thread, "kvmc-stdin");
    r->started = true;
    return true;
}

void escape_reader_stop(struct escape_reader *r)
{
    if (!r)
        return;
    if (r->started) {
        uint64_t one = 1;
        if (write(r->stop_fd, &one, sizeof(one)) != sizeof(one)) {
            /* cannot fail below the counter's maximum */
        }
        pthread_join(r->thread, NULL);
    }
    if (r->pipe_out >= 0)
        close(r->pipe_out);
    close(r->stop_fd);
    free(r);
}
