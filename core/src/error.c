#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
