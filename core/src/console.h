/* Where a guest console's output goes: nowhere, an fd, a file kvmc opened,
 * or a user callback. Shared by the serial port and (later) virtio-console. */
#ifndef KVMC_CONSOLE_H
#define KVMC_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "kvmc/kvmc.h"

enum console_kind { CONSOLE_NONE, CONSOLE_FD, CONSOLE_FILE, CONSOLE_CALLBACK };

struct console_sink {
    enum console_kind kind;
    int fd;          /* FD and FILE */
    kvmc_console_fn fn;
    void *opaque;
};

/* Opens the file for CONSOLE_FILE (truncating it). */
int console_sink_open_file(struct console_sink *sink, const char *path);
void console_sink_close(struct console_sink *sink);
void console_sink_write(const struct console_sink *sink, const uint8_t *data, size_t len);

#endif
