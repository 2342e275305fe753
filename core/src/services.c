#include "services.h"

#include <stdarg.h>
#include <stdio.h>

void services_exit(const struct vm_services *svc, kvmc_exit_reason reason, int32_t code,
                   const char *fmt, ...)
{
    kvmc_exit_info info = {.reason = reason, .code = code, .vcpu = -1};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(info.message, sizeof(info.message), fmt, ap);
    va_end(ap);
    svc->request_exit(svc->ctx, &info);
}
