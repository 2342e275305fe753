/* The API thread's seccomp list: what serving HTTP on a Unix socket and
 * answering from memory needs (sockets it has, poll, memory, futexes, file
 * metadata for checking paths), nothing that opens, creates or runs
 * anything: every request that touches the host goes to the VMM thread. */
#ifndef KVMC_FC_SECCOMP_H
#define KVMC_FC_SECCOMP_H

#include <stddef.h>

/* Confines the calling thread (only it): 0, or -1 with err. A call outside
 * the list kills the process. */
int fc_seccomp_confine_api_thread(char *err, size_t errlen);

#endif
