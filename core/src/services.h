/* What a device or transport may use of the VM it belongs to. Devices get
 * a `const struct vm_services *` when they are created and never see
 * struct kvmc_vm: the same device runs against a fake in a unit test or a
 * fuzzer. The VM (vm.c) fills one in for itself; it outlives every device.
 *
 * Threads: every function here may be called from any thread (vCPU, I/O
 * thread, workers), including from inside a bus dispatch. */
#ifndef KVMC_SERVICES_H
#define KVMC_SERVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "kvmc/kvmc.h"

struct bus;
struct console_out;
struct guest_memory;
struct iothread;

#define SVC_ANY_DATA (~0ull)

struct vm_services {
    const struct guest_memory *mem;
    struct bus *pio;
    struct bus *mmio;
    struct iothread *io;          /* the VM's I/O thread (and its worker pool) */
    struct console_out *console;  /* where the guest's console output goes */

    /* Interrupts by GSI (an I/O APIC pin). set_irq drives a level; pulse is
     * one edge (raise then lower). */
    void (*set_irq)(void *ctx, unsigned gsi, int level);
    void (*pulse_irq)(void *ctx, unsigned gsi);
    /* Binds an eventfd so that a write to it pulses gsi inside the kernel.
     * KVMC_ENOTSUP where that is not the fastest path (kvmc's own I/O APIC):
     * the caller pulses instead. */
    int (*irqfd)(void *ctx, int fd, unsigned gsi);
    /* Has KVM signal fd on a guest write of len bytes at addr (equal to
     * datamatch, unless that is SVC_ANY_DATA; len 0: any length, no match),
     * without an exit to user space; assign=false takes it away again.
     * Failure is not fatal: the write then reaches the bus as usual. */
    int (*ioeventfd)(void *ctx, uint64_t addr, unsigned len, uint64_t datamatch, int fd,
                     bool assign);
    /* Delivers one message-signalled interrupt (KVM_SIGNAL_MSI). */
    int (*signal_msi)(void *ctx, uint64_t address, uint32_t data);
    /* Ends the run with this reason (first one wins). */
    void (*request_exit)(void *ctx, const kvmc_exit_info *info);
    void *ctx;
};

/* request_exit with a formatted message, from no particular vCPU. */
void services_exit(const struct vm_services *svc, kvmc_exit_reason reason, int32_t code,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
