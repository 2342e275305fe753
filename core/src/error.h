/* Thread-local error messages behind kvmc_last_error(). */
#ifndef KVMC_ERROR_H
#define KVMC_ERROR_H

#include "kvmc/kvmc.h"

/* Records a formatted message for kvmc_last_error() and returns err, so a
 * failure path reads: return kvmc_fail(KVMC_EINVAL, "cpus %u > %u", ...). */
int kvmc_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with ": strerror(errno_value)" appended. */
int kvmc_fail_errno(int err, int errno_value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kvmc_clear_error(void);
/* Puts "<formatted>: " before the current message and returns err: a
 * caller adds what it knows (the file name) to a callee's failure. */
int kvmc_fail_prefix(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Keeps the current message across cleanup that may overwrite it:
 *   struct kvmc_saved_error saved; kvmc_error_save(&saved);
 *   cleanup(); return kvmc_error_restore(&saved, err); */
struct kvmc_saved_error {
    char message[512];
};
void kvmc_error_save(struct kvmc_saved_error *saved);
int kvmc_error_restore(const struct kvmc_saved_error *saved, int err);

#endif
