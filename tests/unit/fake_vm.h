/* Fake VM services for unit tests: real buses, console, I/O thread and
 * guest memory, with interrupts, ioeventfds, MSIs and exits recorded
 * instead of reaching KVM. */
#ifndef KVMC_TEST_FAKE_VM_H
#define KVMC_TEST_FAKE_VM_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>

#include "bus.h"
#include "console.h"
#include "guest_memory.h"
#include "iothread.h"
#include "services.h"

#define FAKE_MAX_RECORDS 64

struct fake {
    unsigned msis;
    uint64_t msi_addr[FAKE_MAX_RECORDS];
    uint32_t msi_data[FAKE_MAX_RECORDS];
    bool ioeventfd_assigned[FAKE_MAX_RECORDS];

    struct bus pio, mmio;
    struct console_out console;
    struct iothread io;
    struct guest_memory mem;
    struct vm_services svc;
    kvmc_exit_info exit;
    unsigned exits;
    unsigned ioeventfds;
    uint64_t ioeventfd_addr[FAKE_MAX_RECORDS], ioeventfd_match[FAKE_MAX_RECORDS];
    unsigned pulses, last_gsi;
};

static inline void f_set_irq(void *ctx, unsigned gsi, int level)
{
    struct fake *f = ctx;
    f->last_gsi = gsi;
    (void)level;
}

static inline void f_pulse(void *ctx, unsigned gsi)
{
    struct fake *f = ctx;
    f->pulses++;
    f->last_gsi = gsi;
}

static inline int f_irqfd(void *ctx, int fd, unsigned gsi)
{
    (void)ctx, (void)fd, (void)gsi;
    return KVMC_ENOTSUP;
}

static inline int f_ioeventfd(void *ctx, uint64_t addr, unsigned len, uint64_t match, int fd,
                       bool assign)
{
    struct fake *f = ctx;
    (void)len, (void)fd;
    if (f->ioeventfds < FAKE_MAX_RECORDS) {
        f->ioeventfd_addr[f->ioeventfds] = addr;
        f->ioeventfd_match[f->ioeventfds] = match;
        f->ioeventfd_assigned[f->ioeventfds] = assign;
    }
    f->ioeventfds++;
    return KVMC_OK;
}

static inline int f_signal_msi(void *ctx, uint64_t addr, uint32_t data)
{
    struct fake *f = ctx;
    if (f->msis < FAKE_MAX_RECORDS) {
        f->msi_addr[f->msis] = addr;
        f->msi_data[f->msis] = data;
    }
    f->msis++;
    return 0;
}

static inline void f_exit(void *ctx, const kvmc_exit_info *info)
{
    struct fake *f = ctx;
    f->exit = *info;
    f->exits++;
}

static inline void sink(void *opaque, const uint8_t *data, size_t len) { (void)opaque, (void)data, (void)len; }

static inline struct fake *fake_new(void)
{
    struct fake *f = calloc(1, sizeof(*f));
    const struct console_sink console = {.kind = CONSOLE_CALLBACK, .fn = sink, .fd = -1};
    cr_assert_eq(bus_init(&f->pio, "PIO", 0), KVMC_OK);
    cr_assert_eq(bus_init(&f->mmio, "MMIO", 0), KVMC_OK);
    cr_assert_eq(console_out_init(&f->console, &console, NULL, 0), KVMC_OK);
    cr_assert_eq(iothread_init(&f->io), KVMC_OK);
    cr_assert_eq(gm_init(&f->mem, KVMC_MIN_MEMORY, 0), KVMC_OK);
    f->svc = (struct vm_services){
        .mem = &f->mem, .pio = &f->pio, .mmio = &f->mmio, .io = &f->io,
        .console = &f->console, .set_irq = f_set_irq, .pulse_irq = f_pulse,
        .irqfd = f_irqfd, .ioeventfd = f_ioeventfd, .signal_msi = f_signal_msi,
        .request_exit = f_exit, .ctx = f,
    };
    return f;
}

static inline void fake_free(struct fake *f)
{
    iothread_destroy(&f->io);
    console_out_close(&f->console);
    bus_destroy(&f->pio);
    bus_destroy(&f->mmio);
    gm_destroy(&f->mem);
    free(f);
}


#endif
