#include "kick.h"

#include <signal.h>

int kick_signal(void) { return SIGRTMIN + 6; }

static void kick_handler(int sig) { (void)sig; }

static void install_once(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = kick_handler;
    sa.sa_flags = SA_ONSTACK; /* Go's runtime requires it of foreign handlers */
    sigemptyset(&sa.sa_mask);
    sigaction(kick_signal(), &sa, NULL);
}

void kick_install(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install_once);
}

void kick_unblock(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kick_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int kick_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                       void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    /* Faults are the thread's own and cannot wait. */
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGSYS); /* seccomp's kill must not be held back */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(thread, attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

void kick_thread(pthread_t thread) { pthread_kill(thread, kick_signal()); }
