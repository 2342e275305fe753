/* Where kvmc-firecracker's log and metrics lines go: a file or a named
 * pipe a client reads, written without ever blocking (a line that does not
 * fit is dropped and counted, as Firecracker does). */
#ifndef KVMC_FC_OUTPUT_H
#define KVMC_FC_OUTPUT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum fc_level { FC_LEVEL_OFF, FC_LEVEL_ERROR, FC_LEVEL_WARNING, FC_LEVEL_INFO, FC_LEVEL_DEBUG,
                FC_LEVEL_TRACE };

struct fc_output {
    int fd;                   /* -1: none */
    enum fc_level level;      /* the log's */
    bool show_level;
    unsigned long long missed;
};

void fc_output_init(struct fc_output *o);
/* The level named (case-insensitive), or -1. */
int fc_output_level(const char *name);
/* Opens path (which must exist: a file or a FIFO) for non-blocking
 * appends: the fd, or -1 with err. */
int fc_output_open_file(const char *path, char *err, size_t errlen);
/* Makes fd (from fc_output_open_file) the output's, closing its old one. */
void fc_output_set_fd(struct fc_output *o, int fd);
/* The logger's settings (level NULL: Info). show_log_origin is accepted
 * and has nothing to change: kvmc's lines carry no source location. */
void fc_output_set_log(struct fc_output *o, const char *level, bool show_level);
/* One whole line, or nothing (counted in missed). */
void fc_output_write(struct fc_output *o, const char *line, size_t len);
/* "<UTC time> [id:thread:LEVEL] message\n" when level is enabled. */
void fc_output_vlog(struct fc_output *o, const char *id, enum fc_level level, const char *fmt,
                    va_list ap) __attribute__((format(printf, 4, 0)));
void fc_output_close(struct fc_output *o);

#endif
