/* kvmc-firecracker's backend: the API's requests done on one libkvmc VM.
 * The API's thread (fc_api), confined to sockets and memory, hands each
 * request that touches the host (files, KVM, threads) to the VMM thread
 * (fc_vmm) and waits for it: the VMM thread creates and drives the VM. The
 * main thread waits for the VM to start (fc_vmm_wait_started), then for it
 * to end. The VM is never destroyed before the process exits. */
#ifndef KVMC_FC_VMM_H
#define KVMC_FC_VMM_H

#include <pthread.h>
#include <stdbool.h>

#include "fc_api.h"
#include "kvmc/kvmc.h"

struct fc_vmm {
    bool seccomp;       /* confine the VM's threads (kvmc_vm_set_seccomp) */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started;       /* vm runs (or was restored and started paused) */
    bool stopping;      /* fc_vmm_stop was called */
    kvmc_vm *vm;
    kvmc_stats flushed; /* the counters at the last metrics flush */
    /* The job the VMM thread runs next (one at a time, under lock). */
    int (*job)(struct fc_vmm *v, void *arg, char *err, size_t errlen);
    void *job_arg;
    char *job_err;
    size_t job_errlen;
    int job_rc;
    bool job_done;
    pthread_cond_t job_cond;
    pthread_t worker;
};

void fc_vmm_init(struct fc_vmm *v, bool seccomp);
/* Starts the VMM thread (with the caller's signal mask): 0 or -1. */
int fc_vmm_start_worker(struct fc_vmm *v);
struct fc_backend fc_vmm_backend(struct fc_vmm *v);
/* SIGTERM: stops the VM if it runs, and ends fc_vmm_wait_started. */
void fc_vmm_stop(struct fc_vmm *v);
bool fc_vmm_stopping(struct fc_vmm *v);
/* The VM once started; NULL after timeout_ms, or at once when stopping. */
kvmc_vm *fc_vmm_wait_started(struct fc_vmm *v, int timeout_ms);

#endif
