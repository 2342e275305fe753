/* Which VM the calling thread serves. kvmc's own threads (vCPUs, the I/O
 * thread and its workers, console input) mark themselves when they start,
 * so that a call that waits for those threads (kvmc_vm_wait, _pause,
 * _destroy) can refuse to run on one of them instead of deadlocking: a
 * device or console callback that calls them would wait for itself. */
#ifndef KVMC_THREAD_ROLE_H
#define KVMC_THREAD_ROLE_H

#include <stdbool.h>

/* Marks the calling thread as serving owner (a struct kvmc_vm). */
void thread_role_set(const void *owner);
/* Whether the calling thread serves owner. */
bool thread_role_serves(const void *owner);

#endif
