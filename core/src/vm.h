/* The VM object shared by the core's files. Not part of the public API. */
#ifndef KVMC_VM_H
#define KVMC_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "boot/boot.h"
#include "config.h"
#include "bus.h"
#include "console.h"
#include "guest_memory.h"
#include "net_spec.h"
#include "kvmc/kvmc.h"
#include "iothread.h"

struct kvm_run;
struct kvm_cpuid2;
struct virtio_mmio;
struct virtio_device_ops;

struct vcpu {
    struct kvmc_vm *vm;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool thread_started;
    bool exited; /* its thread left the run loop (under vm->lock): no more kicks */
};

struct kvmc_vm {
    int kvm_fd;
    int vm_fd;
    size_t run_size;
    struct guest_memory mem;
    struct bus pio;
    struct bus mmio;
    unsigned ncpus;
    struct vcpu *vcpus;
    struct boot_entry boot;

    struct console_out console;
    struct serial *serial;
    struct ioapic *ioapic;  /* split irqchip; NULL with the kernel's (--pit) */
    bool ioapic_routes_warned; /* KVM refused the level routes once (vCPU threads) */
    struct iothread io;
    bool seccomp;           /* kvmc's threads confine themselves at start */
    struct virtio_mmio *virtio[KVMC_MAX_VIRTIO_DEVICES];
    unsigned nvirtio;
    void *vconsole;         /* the virtio-console's state, for input */

    pthread_mutex_t lock;   /* guards everything below */
    pthread_cond_t cond;    /* state changes, parked and finished vCPUs */
    kvmc_vm_state state;
    bool stop_requested;    /* read without the lock on the exit path */
    bool pause_requested;
    unsigned parked;        /* vCPU threads waiting in a pause */
    unsigned live_threads;  /* vCPU threads that have not returned */
    bool joined;
    kvmc_exit_info exit;
    kvmc_event_fn event_fn;
    void *event_opaque;
};

/* Ends the run: records the first exit reason, tells every vCPU to stop.
 * Safe from any thread, including a device callback on a vCPU thread. */
void vm_request_exit(struct kvmc_vm *vm, const kvmc_exit_info *info);
void vm_emit_event(struct kvmc_vm *vm, kvmc_event event);

int vm_check_extension(int kvm_fd, int cap, const char *name);

/* irqchip.c: the interrupt controllers. The local APICs are always in the
 * kernel; the I/O APIC is kvmc's (devices/ioapic.c), unless a PIT is
 * wanted, which needs the kernel's PIC and I/O APIC. */
int irqchip_create(struct kvmc_vm *vm, bool pit);
/* One edge on gsi (raise, then lower), from any thread. */
void vm_pulse_irq(struct kvmc_vm *vm, unsigned gsi);
void irqchip_destroy(struct kvmc_vm *vm);

/* vcpu.c */
int vcpu_create(struct kvmc_vm *vm, unsigned index);
int vcpu_configure(struct vcpu *vcpu, const struct kvm_cpuid2 *cpuid);
void vcpu_destroy(struct vcpu *vcpu);
int vcpu_start_thread(struct vcpu *vcpu);
/* Interrupts KVM_RUN on that vCPU so it re-reads the VM's flags. */
void vcpu_kick(struct vcpu *vcpu);
void vcpu_fill_exit_regs(struct vcpu *vcpu, kvmc_exit_info *info);

/* cpuid.c: the CPUID table each vCPU gets, patched per vCPU index. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);
void cpuid_patch_for_vcpu(struct kvm_cpuid2 *cpuid, unsigned index, unsigned ncpus);

/* Devices built into every VM (devices/). */
int serial_create(struct kvmc_vm *vm, uint16_t base, unsigned irq, int in_fd,
                  struct serial **out);
void serial_destroy(struct serial *s);
int serial_start_input(struct serial *s);
int i8042_create(struct kvmc_vm *vm);
int debug_exit_create(struct kvmc_vm *vm);
int acpi_pm_create(struct kvmc_vm *vm);
int pvpanic_create(struct kvmc_vm *vm);
int virtio_blk_open(const char *path, unsigned flags, const char *serial,
                    const struct virtio_device_ops **ops, void **impl);
const struct virtio_device_ops *virtio_rng_ops(void);
int virtio_console_open(const struct vconsole_config *cfg,
                        const struct virtio_device_ops **ops, void **impl);
int virtio_console_write(void *impl, const void *data, size_t len, size_t *written);
int virtio_vsock_open(const struct vsock_config *cfg, const struct virtio_device_ops **ops,
                      void **impl);
int virtio_net_open(const struct net_config *cfg, unsigned index,
                    const struct virtio_device_ops **ops, void **impl);
/* Where virtio device i lives: the same plan for ACPI and for creation. */
unsigned virtio_plan(const kvmc_config *cfg, struct mmio_device_desc *out);

#endif
