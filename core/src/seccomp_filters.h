/* The seccomp filters kvmc's threads install, as BPF compiled at build time
 * by core/tools/seccomp_policy.c (with libseccomp) into seccomp_filters.c in
 * the build tree. One filter per thread role and, for the I/O thread, per set
 * of socket rights its devices need. */
#ifndef KVMC_SECCOMP_FILTERS_H
#define KVMC_SECCOMP_FILTERS_H

#include <linux/filter.h>

enum seccomp_filter_id {
    SECCOMP_FILTER_VCPU,
    SECCOMP_FILTER_IO,
    SECCOMP_FILTER_IO_UNIX, /* + Unix sockets (vsock, virtio-console) */
    SECCOMP_FILTER_IO_INET, /* + Unix and IP sockets (libslirp) */
    SECCOMP_FILTER_CONSOLE,
    SECCOMP_FILTER_CONTROL,
    SECCOMP_FILTER_COUNT
};

struct seccomp_filter_code {
    const struct sock_filter *code;
    unsigned short len; /* instructions */
};

extern const struct seccomp_filter_code seccomp_filters[SECCOMP_FILTER_COUNT];

#endif
