/* The VM object shared by vm.c and vcpu.c. Not part of the public API, and
 * not for devices: they see the VM only through struct vm_services. */
#ifndef KVMC_VM_H
#define KVMC_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "boot/boot.h"
#include "bus.h"
#include "console.h"
#include "devmgr.h"
#include "guest_memory.h"
#include "iothread.h"
#include "kvmc/kvmc.h"
#include "stats.h"
#include "services.h"
#include "x86/irqchip.h"

struct kvm_run;
struct snapshot_keep;
struct kvm_cpuid2;

struct vcpu {
    struct kvmc_vm *vm;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    bool exited; /* its thread left the run loop (under vm->lock): no more kicks */
    _Atomic uint64_t exits[STAT_VCPU_EXITS]; /* by kind (stats.h), this vCPU's */
};

#define VM_HOST_SLOT_BASE 16 /* below: guest RAM */

struct kvmc_vm {
    int kvm_fd;
    int vm_fd;
    size_t run_size;
    struct guest_memory mem;
    struct bus pio;
    struct bus mmio;
    unsigned ncpus;
    struct vcpu *vcpus;
    char vcpu_name[KVMC_VCPU_NAME_MAX + 1]; /* their threads' prefix */
    struct boot_entry boot;

    struct irqchip irq;
    struct console_out console;
    struct iothread io;
    struct vm_services svc;  /* what the devices see of this VM */
    struct vm_stats stats;   /* the devices' counters (svc.stats) */
    struct devmgr devices;
    bool seccomp;            /* kvmc's threads confine themselves at start */
    unsigned user_devices;   /* kvmc_vm_add_pio_device/mmio_device (no save hooks) */
    pthread_mutex_t slot_lock;
    uint64_t host_slots;     /* KVM slots VM_HOST_SLOT_BASE + i used by map_host */

    pthread_mutex_t lock;   /* guards everything below */
    pthread_cond_t cond;    /* state changes, parked and finished vCPUs */
    kvmc_vm_state state;
    bool stop_requested;    /* read without the lock on the exit path */
    bool pause_requested;
    unsigned parked;        /* vCPU threads waiting in a pause */
    unsigned live_threads;  /* vCPU threads that have not returned */
    bool joined;
    bool snapshotting;      /* a snapshot or restore runs: no resume or start */
    bool restore_failed;    /* half restored: never starts */
    bool bootable;          /* a kernel was loaded or a snapshot restored */
    struct snapshot_keep *snapshot; /* the last one taken or restored, for resets */
    kvmc_exit_info exit;
    kvmc_event_fn event_fn;
    void *event_opaque;
};

/* Ends the run: records the first exit reason, tells every vCPU to stop.
 * Safe from any thread, including a device callback on a vCPU thread. */
void vm_request_exit(struct kvmc_vm *vm, const kvmc_exit_info *info);

/* vcpu.c */
int vcpu_create(struct kvmc_vm *vm, unsigned index);
int vcpu_configure(struct vcpu *vcpu, const struct kvm_cpuid2 *cpuid);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start_thread(struct vcpu *vcpu);
/* Interrupts KVM_RUN on that vCPU so it re-reads the VM's flags. */
void vcpu_kick(struct vcpu *vcpu);

#endif
