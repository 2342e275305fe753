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
