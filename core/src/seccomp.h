/* Per-thread seccomp allow-lists for kvmc's threads. */
#ifndef KVMC_SECCOMP_H
#define KVMC_SECCOMP_H

#include <stdbool.h>

enum seccomp_role {
    SECCOMP_ROLE_VCPU,          /* KVM_RUN loop and device emulation */
    SECCOMP_ROLE_IO,            /* virtio queues: file I/O, eventfds */
    SECCOMP_ROLE_CONSOLE,       /* reads console input, writes console output */
    SECCOMP_ROLE_CONTROL,       /* waits for, stops and pauses VMs */
};

/* What the I/O thread's backends need beyond queues and files. */
#define SECCOMP_IO_UNIX 0x1u /* Unix sockets: accept, connect (vsock, console) */
#define SECCOMP_IO_INET 0x2u /* IP sockets of user-mode networking (libslirp) */

/* Whether this build has filters: a build without libseccomp's headers
 * (the Python wheel's, where they are missing) has none, and every
 * confine then fails with seccomp_unavailable()'s KVMC_ENOTSUP. */
bool seccomp_available(void);
int seccomp_unavailable(void);
/* Installs the list for role on the calling thread. 0 or a kvmc_error. */
int seccomp_confine(enum seccomp_role role);
/* The I/O role plus extras (SECCOMP_IO_*). */
int seccomp_confine_io(unsigned extras);

#endif
