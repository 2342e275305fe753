/* User-space I/O APIC for KVM's split irqchip; see ioapic.h. */
#include "ioapic.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../snapshot/format.h"

#define IOREGSEL 0x00
#define IOWIN 0x10

#define REG_ID 0x00
#define REG_VERSION 0x01
#define REG_ARB 0x02
#define REG_REDIR_FIRST 0x10 /* two registers (low, high) per pin */
#define IOAPIC_VERSION (0x11u | ((IOAPIC_PINS - 1u) << 16))

/* Redirection entry fields. */
#define RTE_VECTOR 0xffull
#define RTE_DELIVERY_MODE(e) (((e) >> 8) & 7u)
#define RTE_DEST_LOGICAL (1ull << 11)
#define RTE_REMOTE_IRR (1ull << 14)
#define RTE_LEVEL (1ull << 15)
#define RTE_MASKED (1ull << 16)
#define RTE_DEST(e) ((uint32_t)((e) >> 56))
/* The guest may write everything but delivery status (12), remote IRR (14)
 * and the reserved bits 17-55. */
#define RTE_WRITABLE (0xff00000000000000ull | (0x1ffffull & ~((1ull << 12) | RTE_REMOTE_IRR)))
#define DELIVERY_EXTINT 7u /* to an 8259, which a split irqchip does not have */

#define MSI_ADDRESS_BASE 0xfee00000ull
#define MSI_DEST_SHIFT 12
#define MSI_DEST_LOGICAL (1ull << 2)
#define MSI_DATA_LEVEL_TRIGGER (1u << 15)

struct ioapic {
    pthread_mutex_t lock;
    struct ioapic_host host;
    uint32_t ioregsel;
    uint32_t id;
    uint64_t redir[IOAPIC_PINS];
    uint32_t lines; /* bit n: pin n's line is asserted (for level-triggered pins) */
    uint32_t irr;   /* bit n: an edge on pin n waits for the pin to be unmasked */
    /* The level-triggered routes KVM has now (to rewrite only on change). */
    unsigned route_pins[IOAPIC_PINS];
    struct ioapic_msi route_msis[IOAPIC_PINS];
    unsigned nroutes;
};

struct ioapic *ioapic_new(const struct ioapic_host *host)
{
    struct ioapic *io = calloc(1, sizeof(*io));
    if (!io) {
        kvmc_fail(KVMC_ENOMEM, "allocating the I/O APIC");
        return NULL;
    }
    pthread_mutex_init(&io->lock, NULL);
    io->host = *host;
    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++)
        io->redir[pin] = RTE_MASKED; /* the reset state */
    return io;
}

void ioapic_free(struct ioapic *io)
{
    if (!io)
        return;
    pthread_mutex_destroy(&io->lock);
    free(io);
}

static struct ioapic_msi msi_for(uint64_t rte)
{
    struct ioapic_msi msi = {
        .address = MSI_ADDRESS_BASE | (uint64_t)RTE_DEST(rte) << MSI_DEST_SHIFT |
                   (rte & RTE_DEST_LOGICAL ? MSI_DEST_LOGICAL : 0),
        .data = (uint32_t)(rte & RTE_VECTOR) | RTE_DELIVERY_MODE(rte) << 8 |
                (rte & RTE_LEVEL ? MSI_DATA_LEVEL_TRIGGER : 0),
    };
    return msi;
}

static bool line_high(const struct ioapic *io, unsigned pin)
{
    return io->lines >> pin & 1u;
}

/* Sends pin's interrupt if it may be sent now; for a level-triggered pin,
 * that is once per EOI. Called with the lock held. */
static void try_deliver(struct ioapic *io, unsigned pin)
{
    uint64_t *rte = &io->redir[pin];
    if ((*rte & RTE_MASKED) || RTE_DELIVERY_MODE(*rte) == DELIVERY_EXTINT)
        return;
    if (*rte & RTE_LEVEL) {
        if (*rte & RTE_REMOTE_IRR)
            return;
        *rte |= RTE_REMOTE_IRR;
    }
    struct ioapic_msi msi = msi_for(*rte);
    io->host.signal_msi(io->host.ctx, &msi);
}

/* Tells KVM about the level-triggered pins, so that their EOIs exit to us;
 * only when the set changed. Called with the lock held. */
static void sync_level_routes(struct ioapic *io)
{
    unsigned pins[IOAPIC_PINS], n = 0;
    struct ioapic_msi msis[IOAPIC_PINS];
    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
        if (!(io->redir[pin] & RTE_LEVEL))
            continue;
        pins[n] = pin;
        msis[n++] = msi_for(io->redir[pin]);
    }
    if (n == io->nroutes && memcmp(pins, io->route_pins, n * sizeof(pins[0])) == 0 &&
        memcmp(msis, io->route_msis, n * sizeof(msis[0])) == 0)
        return;
    if (io->host.set_level_routes(io->host.ctx, pins, msis, n) != 0)
        return; /* keep the old record: the next change retries */
    memcpy(io->route_pins, pins, n * sizeof(pins[0]));
    memcpy(io->route_msis, msis, n * sizeof(msis[0]));
    io->nroutes = n;
}

/* An edge: sent now, or latched until the pin is unmasked (as QEMU's I/O
 * APIC does), so an interrupt raised while the guest had the pin masked is
 * not lost. */
static void edge(struct ioapic *io, unsigned pin)
{
    if (io->redir[pin] & RTE_MASKED) {
        io->irr |= 1u << pin;
        return;
    }
    io->irr &= ~(1u << pin);
    try_deliver(io, pin);
}

static void write_redir(struct ioapic *io, unsigned pin, bool high_half, uint32_t value)
{
    uint64_t *rte = &io->redir[pin];
    uint64_t wanted = high_half ? (*rte & 0xffffffffull) | (uint64_t)value << 32
                                : (*rte & ~0xffffffffull) | value;
    *rte = (wanted & RTE_WRITABLE) | (*rte & RTE_REMOTE_IRR);
    if (!(*rte & RTE_LEVEL))
        *rte &= ~RTE_REMOTE_IRR; /* only level-triggered pins wait for an EOI */
    sync_level_routes(io);
    if (*rte & RTE_MASKED)
        return;
    if (*rte & RTE_LEVEL) {
        io->irr &= ~(1u << pin);
        if (line_high(io, pin))
            try_deliver(io, pin); /* unmasked while asserted */
    } else if (io->irr >> pin & 1u) {
        edge(io, pin); /* latched while masked */
    }
}

static uint32_t read_register(const struct ioapic *io, uint32_t reg)
{
    if (reg == REG_ID)
        return io->id;
    if (reg == REG_VERSION)
        return IOAPIC_VERSION;
    if (reg == REG_ARB)
        return io->id;
    if (reg >= REG_REDIR_FIRST && reg < REG_REDIR_FIRST + 2 * IOAPIC_PINS) {
        uint64_t rte = io->redir[(reg - REG_REDIR_FIRST) / 2];
        return (uint32_t)((reg & 1) ? rte >> 32 : rte);
    }
    return 0;
}

static void write_register(struct ioapic *io, uint32_t reg, uint32_t value)
{
    if (reg == REG_ID)
        io->id = value & 0x0f000000u;
    else if (reg >= REG_REDIR_FIRST && reg < REG_REDIR_FIRST + 2 * IOAPIC_PINS)
        write_redir(io, (reg - REG_REDIR_FIRST) / 2, reg & 1, value);
}

uint64_t ioapic_mmio_read(void *opaque, uint64_t offset, unsigned size)
{
    struct ioapic *io = opaque;
    if (size != 4)
        return 0;
    pthread_mutex_lock(&io->lock);
    uint32_t v = offset == IOREGSEL ? io->ioregsel
                 : offset == IOWIN  ? read_register(io, io->ioregsel)
                                    : 0;
    pthread_mutex_unlock(&io->lock);
    return v;
}

void ioapic_mmio_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct ioapic *io = opaque;
    if (size != 4)
        return;
    pthread_mutex_lock(&io->lock);
    if (offset == IOREGSEL)
        io->ioregsel = (uint32_t)value & 0xff;
    else if (offset == IOWIN)
        write_register(io, io->ioregsel, (uint32_t)value);
    pthread_mutex_unlock(&io->lock);
}

/* Called with the lock held. */
static void set_line(struct ioapic *io, unsigned pin, bool level)
{
    if (!level) {
        io->lines &= ~(1u << pin);
        return;
    }
    io->lines |= 1u << pin;
    if (io->redir[pin] & RTE_LEVEL)
        try_deliver(io, pin);
    else
        edge(io, pin);
}

void ioapic_set_irq(struct ioapic *io, unsigned pin, int level)
{
    if (pin >= IOAPIC_PINS)
        return;
    pthread_mutex_lock(&io->lock);
    set_line(io, pin, level != 0);
    pthread_mutex_unlock(&io->lock);
}

void ioapic_pulse(struct ioapic *io, unsigned pin)
{
    if (pin >= IOAPIC_PINS)
        return;
    pthread_mutex_lock(&io->lock);
    set_line(io, pin, true);
    set_line(io, pin, false);
    pthread_mutex_unlock(&io->lock);
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
    pthread_mutex_lock(&io->lock);
    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
        uint64_t *rte = &io->redir[pin];
        if (!(*rte & RTE_LEVEL) || !(*rte & RTE_REMOTE_IRR) || (*rte & RTE_VECTOR) != vector)
            continue;
        *rte &= ~RTE_REMOTE_IRR;
        if (line_high(io, pin))
            try_deliver(io, pin); /* still asserted: once more */
    }
    pthread_mutex_unlock(&io->lock);
}

/* Saved: IOREGSEL, the ID, every redirection entry (remote IRR included),
 * the lines' levels and the latched edges. */
#define IOAPIC_STATE_VERSION 1u

int ioapic_save(struct ioapic *io, struct snapshot_writer *w)
{
    pthread_mutex_lock(&io->lock);
    snapshot_put_u32(w, IOAPIC_STATE_VERSION);
    snapshot_put_u32(w, io->ioregsel);
    snapshot_put_u32(w, io->id);
    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++)
        snapshot_put_u64(w, io->redir[pin]);
    snapshot_put_u32(w, io->lines);
    snapshot_put_u32(w, io->irr);
    pthread_mutex_unlock(&io->lock);
    return w->err;
}

int ioapic_restore(struct ioapic *io, struct snapshot_reader *r)
{
    uint32_t version, ioregsel, id, lines, irr;
    uint64_t redir[IOAPIC_PINS];
    if (snapshot_get_u32(r, &version) || snapshot_get_u32(r, &ioregsel) ||
        snapshot_get_u32(r, &id))
        return KVMC_EFORMAT;
    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++)
        if (snapshot_get_u64(r, &redir[pin]))
            return KVMC_EFORMAT;
    if (snapshot_get_u32(r, &lines) || snapshot_get_u32(r, &irr))
        return KVMC_EFORMAT;
    const uint32_t pins = (1u << IOAPIC_PINS) - 1;
    bool bad = version != IOAPIC_STATE_VERSION || (lines & ~pins) || (irr & ~pins) ||
               (id & ~0x0f000000u);
    for (unsigned pin = 0; pin < IOAPIC_PINS; pin++)
        bad |= (redir[pin] & ~(RTE_WRITABLE | RTE_REMOTE_IRR)) != 0;
    if (bad)
        return kvmc_fail(KVMC_EFORMAT, "I/O APIC state (version %u): reserved bits set or "
                         "pins past %u", version, IOAPIC_PINS - 1);
    pthread_mutex_lock(&io->lock);
    io->ioregsel = ioregsel & 0xff;
    io->id = id;
    memcpy(io->redir, redir, sizeof(redir));
    io->lines = lines;
    io->irr = irr;
    sync_level_routes(io);
    pthread_mutex_unlock(&io->lock);
    return KVMC_OK;
}
