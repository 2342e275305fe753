#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kick.h"

static _Thread_local char last_error[512];

static void set_message(const char *fmt, va_list ap, int errno_value)
{
    int n = vsnprintf(last_error, sizeof(last_error), fmt, ap);
    if (errno_value && n >= 0 && (size_t)n < sizeof(last_error))
        snprintf(last_error + n, sizeof(last_error) - (size_t)n, ": %s",
                 strerror(errno_value));
}

int kvmc_fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap, 0);
    va_end(ap);
    return err;
}

int kvmc_fail_errno(int err, int errno_value, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(fmt, ap, errno_value);
    va_end(ap);
    return err;
}

void kvmc_clear_error(void) { last_error[0] = '\0'; }

int kvmc_fail_prefix(int err, const char *fmt, ...)
{
    char rest[sizeof(last_error)];
    memcpy(rest, last_error, sizeof(rest));
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n < sizeof(last_error) ? (size_t)n : sizeof(last_error) - 1;
    /* Truncating a long message is fine: it is one line for a human. */
    size_t room = sizeof(last_error) - used;
    if (room > 2) {
        memcpy(last_error + used, ": ", 2);
        size_t take = strnlen(rest, room - 3);
        memcpy(last_error + used + 2, rest, take);
        last_error[used + 2 + take] = '\0';
    }
    return err;
}

void kvmc_error_save(struct kvmc_saved_error *saved)
{
    snprintf(saved->message, sizeof(saved->message), "%s", last_error);
}

int kvmc_error_restore(const struct kvmc_saved_error *saved, int err)
{
    snprintf(last_error, sizeof(last_error), "%s", saved->message);
    return err;
}

const char *kvmc_last_error(void) { return last_error; }

const char *kvmc_strerror(int err)
{
    switch (err) {
    case KVMC_OK: return "success";
    case KVMC_EINVAL: return "invalid argument";
    case KVMC_ENOMEM: return "out of memory";
    case KVMC_EIO: return "I/O error";
    case KVMC_EKVM: return "KVM error";
    case KVMC_EFORMAT: return "bad image format";
    case KVMC_ESTATE: return "invalid state for this call";
    case KVMC_EBUSY: return "range already in use";
    case KVMC_ETIMEDOUT: return "timed out";
    case KVMC_ENOTSUP: return "not supported";
    default: return "unknown error";
    }
}

const char *kvmc_version_string(void) { return KVMC_VERSION_STRING; }

int kvmc_kick_signal(void) { return kick_signal(); }

const char *kvmc_exit_reason_name(kvmc_exit_reason reason)
{
    static const char *const names[] = {
        [KVMC_EXIT_NONE] = "none", [KVMC_EXIT_POWEROFF] = "poweroff",
        [KVMC_EXIT_RESET] = "reset", [KVMC_EXIT_STOPPED] = "stopped",
        [KVMC_EXIT_TRIPLE_FAULT] = "triple_fault", [KVMC_EXIT_INTERNAL_ERROR] = "internal_error",
        [KVMC_EXIT_FAIL_ENTRY] = "fail_entry", [KVMC_EXIT_VMM_ERROR] = "vmm_error",
        [KVMC_EXIT_GUEST_PANIC] = "guest_panic",
    };
    unsigned r = (unsigned)reason;
    return r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}
