/* kvmc-firecracker's backend: the API's requests done on one libkvmc VM.
 * The API's thread creates and drives the VM (under the API's lock); the
 * main thread waits for it to start (fc_vmm_wait_started), then for it to
 * end. The VM is never destroyed before the process exits. */
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
};

void fc_vmm_init(struct fc_vmm *v, bool seccomp);
struct fc_backend fc_vmm_backend(struct fc_vmm *v);
/* SIGTERM: stops the VM if it runs, and ends fc_vmm_wait_started. */
void fc_vmm_stop(struct fc_vmm *v);
bool fc_vmm_stopping(struct fc_vmm *v);
/* The VM once started; NULL after timeout_ms, or at once when stopping. */
kvmc_vm *fc_vmm_wait_started(struct fc_vmm *v, int timeout_ms);

#endif
