/* The signal that interrupts one of kvmc's threads in a blocking system
 * call: KVM_RUN on a vCPU thread, write() on a console output thread. Its
 * handler does nothing and is installed without SA_RESTART, so the call
 * returns EINTR (KVM_RUN: with immediate_exit set, it returns at once). */
#ifndef KVMC_KICK_H
#define KVMC_KICK_H

#include <pthread.h>

/* SIGRTMIN + 6, the number the public header documents. */
int kick_signal(void);
/* Installs the handler (once per process); call before the first kick. */
void kick_install(void);
/* Unblocks the kick signal in the calling thread. */
void kick_unblock(void);
/* pthread_create for kvmc's own threads: the new thread starts with every
 * asynchronous signal blocked (the caller's mask is left as it was), so a
 * process-directed SIGINT, SIGTERM or SIGCHLD goes to one of the
 * application's threads, never to a vCPU or I/O thread (where an
 * interpreter's handler could not act on it: Python's, for one, then lost
 * Ctrl-C). Threads that are kicked unblock the kick signal themselves. */
int kick_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                       void *arg);
/* Sends the kick signal to thread. */
void kick_thread(pthread_t thread);

#endif
