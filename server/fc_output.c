/* kvmc-firecracker's log and metrics outputs (fc_output.h). */
#include "fc_output.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"Off", "Error", "Warning", "Info", "Debug", "Trace"};

void fc_output_init(struct fc_output *o)
{
    *o = (struct fc_output){.fd = -1, .level = FC_LEVEL_INFO};
}

int fc_output_level(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
        if (!strcasecmp(name, level_names[i]))
            return i;
    return -1;
}

int fc_output_open_file(const char *path, char *err, size_t errlen)
{
    /* A FIFO opened read-write never fails for want of a reader, and the
     * open itself never blocks; no O_CREAT: the client makes the file, as
     * with Firecracker. */
    int fd = open(path, O_RDWR | O_APPEND | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %.300s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode))) {
        close(fd);
        snprintf(err, errlen, "%.300s is neither a file nor a named pipe", path);
        return -1;
    }
    return fd;
}

void fc_output_set_fd(struct fc_output *o, int fd)
{
    if (o->fd >= 0)
        close(o->fd);
    o->fd = fd;
}

void fc_output_set_log(struct fc_output *o, const char *level, bool show_level)
{
    o->level = level ? (enum fc_level)fc_output_level(level) : FC_LEVEL_INFO;
    o->show_level = show_level;
}

void fc_output_write(struct fc_output *o, const char *line, size_t len)
{
    if (o->fd < 0)
        return;
    ssize_t n = write(o->fd, line, len);
    if (n != (ssize_t)len)
        o->missed++; /* a full pipe (or disk): lines are whole or not at all on a pipe */
}

void fc_output_vlog(struct fc_output *o, const char *id, enum fc_level level, const char *fmt,
                    va_list ap)
{
    if (o->fd < 0 || level > o->level || level == FC_LEVEL_OFF)
        return;
    char line[1024];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    char thread[16] = "";
    pthread_getname_np(pthread_self(), thread, sizeof(thread));
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%09ld [%s:%s%s%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, now.tv_nsec, id, thread, o->show_level ? ":" : "",
                     o->show_level ? level_names[level] : "");
    if (n < 0)
        return;
    size_t used = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    int m = vsnprintf(line + used, sizeof(line) - used, fmt, ap);
    used = m < 0 ? used : used + (size_t)m;
    if (used > sizeof(line) - 2)
        used = sizeof(line) - 2; /* cut: still one line */
    for (size_t i = 0; i < used; i++)
        if (line[i] == '\n')
            line[i] = ' ';
    line[used++] = '\n';
    fc_output_write(o, line, used);
}

void fc_output_close(struct fc_output *o)
{
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
}
