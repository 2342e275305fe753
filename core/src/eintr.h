/* ioctl again when a signal interrupts it. A library inside a Go program
 * sees signals all the time (the runtime preempts goroutines with SIGURG),
 * and some KVM ioctls (KVM_CREATE_VM, seen in the Go soak) return EINTR
 * instead of restarting. A storm of signals that never ends gets the error
 * after 1000 tries. */
#ifndef KVMC_EINTR_H
#define KVMC_EINTR_H

#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>

static inline int ioctl_retry(int fd, unsigned long request, void *arg)
{
    int rc = -1;
    for (int i = 0; i < 1000; i++) {
        rc = ioctl(fd, request, arg);
        if (rc >= 0 || errno != EINTR)
            break;
    }
    return rc;
}

#endif
