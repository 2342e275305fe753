/* libFuzzer: `kvmc run`'s argument parser (cli/options.c), which also runs
 * every --net spec through the library's parser. The input is split at NUL
 * bytes into arguments. The buffer is a fresh allocation each time, so a
 * parser that kept a pointer into a previous command line (getopt's state)
 * is caught by ASan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[MAX_ARGS + 2] = {"kvmc-run"};
    int argc = 1;
    for (char *p = buf; p <= buf + size && argc <= MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    static struct run_options o;
    char err[256];
    if (!parse_run_options(argc, argv, &o, err, sizeof(err)) && !memchr(err, 0, sizeof(err)))
        abort(); /* the message must be a terminated string */
    free(buf);
    return 0;
}
