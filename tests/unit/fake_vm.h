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
    /* MSI routes (by GSI - 24), irqfds attached per GSI, host mappings. */
    unsigned routes_set, next_route;
    uint64_t route_addr[FAKE_MAX_RECORDS];
    uint32_t route_data[FAKE_MAX_RECORDS];
    bool route_freed[FAKE_MAX_RECORDS];
    int irqfd_on[FAKE_MAX_RECORDS]; /* the eventfd attached to GSI 24 + i, or -1 */
    unsigned irqfd_calls;
    unsigned maps, live_maps;
    uint64_t map_gpa[FAKE_MAX_RECORDS], map_size[FAKE_MAX_RECORDS];
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

static inline int f_msi_route(void *ctx, int *gsi, uint64_t address, uint32_t data)
{
    struct fake *f = ctx;
    if (*gsi < 0) {
        if (f->next_route == FAKE_MAX_RECORDS)
            return KVMC_ENOTSUP;
        *gsi = 24 + (int)f->next_route++;
    }
    f->route_addr[*gsi - 24] = address;
    f->route_data[*gsi - 24] = data;
    f->routes_set++;
    return KVMC_OK;
}

static inline void f_msi_route_free(void *ctx, unsigned gsi)
{
    struct fake *f = ctx;
    f->route_freed[gsi - 24] = true;
}

static inline int f_msi_irqfd(void *ctx, int fd, unsigned gsi, bool assign)
{
    struct fake *f = ctx;
    cr_assert(gsi >= 24 && gsi < 24 + FAKE_MAX_RECORDS, "irqfd on GSI %u: not a route", gsi);
    cr_assert_eq(f->irqfd_on[gsi - 24], assign ? -1 : fd, "GSI %u attached twice or "
                 "detached while not attached", gsi);
    f->irqfd_on[gsi - 24] = assign ? fd : -1;
    f->irqfd_calls++;
    return KVMC_OK;
}

static inline int f_map_host(void *ctx, uint64_t gpa, uint64_t size, void *host, unsigned *slot)
{
    struct fake *f = ctx;
    cr_assert(host && !(gpa & 4095) && !(size & 4095) && size, "unaligned host mapping");
    if (f->maps < FAKE_MAX_RECORDS) {
        f->map_gpa[f->maps] = gpa;
        f->map_size[f->maps] = size;
    }
    *slot = 100 + f->maps++;
    f->live_maps++;
    return KVMC_OK;
}

static inline void f_unmap_host(void *ctx, unsigned slot)
{
    struct fake *f = ctx;
    (void)slot;
    cr_assert(f->live_maps > 0, "unmapping slot %u that is not mapped", slot);
    f->live_maps--;
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
        .msi_route = f_msi_route, .msi_route_free = f_msi_route_free,
        .msi_irqfd = f_msi_irqfd, .map_host = f_map_host, .unmap_host = f_unmap_host,
        .request_exit = f_exit, .ctx = f,
    };
    for (unsigned i = 0; i < FAKE_MAX_RECORDS; i++)
        f->irqfd_on[i] = -1;
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
