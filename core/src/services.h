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
    /* MSI routes, for interrupts that reach KVM without kvmc (VFIO's
     * eventfds): *gsi < 0 allocates a GSI (KVMC_ENOTSUP when all are
     * taken), then routes it to this message. A rewrite of KVM's table:
     * call it when a vector changes, never per interrupt. */
    int (*msi_route)(void *ctx, int *gsi, uint64_t address, uint32_t data);
    void (*msi_route_free)(void *ctx, unsigned gsi);
    /* KVM_IRQFD on an MSI route (also with kvmc's I/O APIC): a write to fd
     * interrupts inside the kernel. assign=false detaches it; the eventfd
     * keeps counting, and KVM delivers what it counted when attached again
     * (how a masked vector's interrupt stays pending). */
    int (*msi_irqfd)(void *ctx, int fd, unsigned gsi, bool assign);
    /* Maps host memory (a device's BAR, mmapped) into the guest at gpa as a
     * KVM memory slot, so accesses never exit. KVMC_EINVAL if the range is
     * not page-aligned or overlaps guest RAM, KVMC_EBUSY when no slot is
     * left. unmap_host takes the slot away again. */
    int (*map_host)(void *ctx, uint64_t gpa, uint64_t size, void *host, unsigned *slot);
    void (*unmap_host)(void *ctx, unsigned slot);
    /* The VM's counters (stats.h); NULL when nobody counts (fakes). */
    struct vm_stats *stats;
    /* Ends the run with this reason (first one wins). */
    void (*request_exit)(void *ctx, const kvmc_exit_info *info);
    void *ctx;
};

/* request_exit with a formatted message, from no particular vCPU. */
void services_exit(const struct vm_services *svc, kvmc_exit_reason reason, int32_t code,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
