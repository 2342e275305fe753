/* PCI from the guest's side, at CPL3 through real exits: config space by
 * ECAM and by ports 0xcf8/0xcfc, BAR sizing and decoding, MSI-X into this
 * CPU's local APIC, the virtio-pci transport for the polling driver, and a
 * hostile guest scribbling on all of it. Output lines are a contract with
 * tests/integration/test_pci.c. */
#include <stdbool.h>
#include <stdint.h>

#include "guest.h"

#define ECAM 0xe0000000ull
#define PCI_SLOTS 32
#define CMD_IO 1
#define CMD_MEM 2
#define CMD_MASTER 4
#define CAP_MSIX 0x11
#define CAP_VNDR 0x09
#define TEST_VENDOR 0x1234 /* the device tests/integration/test_pci.c adds */
#define TEST_DEVICE 0xbeefu

static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static volatile void *ecam(unsigned dev, unsigned reg)
{
    return (volatile void *)(ECAM + ((uint64_t)dev << 15) + reg);
}

uint32_t pci_cfg_read(unsigned dev, unsigned reg, unsigned size)
{
    switch (size) {
    case 1: return *(volatile uint8_t *)ecam(dev, reg);
    case 2: return *(volatile uint16_t *)ecam(dev, reg);
    default: return *(volatile uint32_t *)ecam(dev, reg);
    }
}

void pci_cfg_write(unsigned dev, unsigned reg, unsigned size, uint32_t v)
{
    switch (size) {
    case 1: *(volatile uint8_t *)ecam(dev, reg) = (uint8_t)v; break;
    case 2: *(volatile uint16_t *)ecam(dev, reg) = (uint16_t)v; break;
    default: *(volatile uint32_t *)ecam(dev, reg) = v; break;
    }
}

uint32_t pci_port_read(unsigned dev, unsigned reg)
{
    outl(0xcf8, 0x80000000u | dev << 11 | (reg & 0xfc));
    return inl(0xcfc);
}

static unsigned find_cap(unsigned dev, uint8_t id, unsigned after)
{
    unsigned cap = after ? pci_cfg_read(dev, after + 1, 1) : pci_cfg_read(dev, 0x34, 1);
    for (unsigned guard = 0; cap && guard < 48; guard++) {
        if (pci_cfg_read(dev, cap, 1) == id)
            return cap;
        cap = pci_cfg_read(dev, cap + 1, 1);
    }
    return 0;
}

static uint64_t bar_address(unsigned dev, unsigned bar)
{
    uint32_t lo = pci_cfg_read(dev, 0x10 + 4 * bar, 4);
    if (lo & 1)
        return lo & ~3u;
    uint64_t a = lo & ~0xfu;
    if ((lo & 6) == 4)
        a |= (uint64_t)pci_cfg_read(dev, 0x14 + 4 * bar, 4) << 32;
    return a;
}

/* Sizes BAR `bar` the way an OS does (decoding off around it). */
static uint64_t bar_size(unsigned dev, unsigned bar)
{
    unsigned off = 0x10 + 4 * bar;
    uint16_t cmd = (uint16_t)pci_cfg_read(dev, 4, 2);
    pci_cfg_write(dev, 4, 2, cmd & ~(CMD_IO | CMD_MEM));
    uint32_t lo = pci_cfg_read(dev, off, 4);
    pci_cfg_write(dev, off, 4, 0xffffffff);
    uint32_t mask = pci_cfg_read(dev, off, 4);
    pci_cfg_write(dev, off, 4, lo);
    uint64_t size;
    if (lo & 1) {
        size = (uint64_t)(~(mask & ~3u) & 0xffff) + 1;
    } else if ((lo & 6) == 4) {
        uint32_t hi = pci_cfg_read(dev, off + 4, 4);
        pci_cfg_write(dev, off + 4, 4, 0xffffffff);
        uint64_t m = (uint64_t)pci_cfg_read(dev, off + 4, 4) << 32 | (mask & ~0xfu);
        pci_cfg_write(dev, off + 4, 4, hi);
        size = ~m + 1;
    } else {
        size = (uint64_t)(uint32_t)~(mask & ~0xfu) + 1;
    }
    pci_cfg_write(dev, 4, 2, cmd);
    return mask ? size : 0;
}

/* ------------------------------------------------------- virtio-pci */

struct vpci {
    unsigned slot;
    uint64_t common, notify, device, isr;
    uint32_t notify_multiplier;
};
static struct vpci vpcis[PCI_SLOTS];

#define CC(v, off, type) (*(volatile type *)((v)->common + (off)))

static struct vpci *handle(uint64_t dev) { return (struct vpci *)(dev & ~1ull); }

/* Brings a virtio-pci function's BARs into use and finds its regions. */
static uint64_t vpci_open(unsigned slot)
{
    struct vpci *v = &vpcis[slot];
    pci_cfg_write(slot, 4, 2, CMD_MEM | CMD_MASTER);
    v->slot = slot;
    v->common = v->notify = v->device = v->isr = 0;
    for (unsigned cap = find_cap(slot, CAP_VNDR, 0); cap; cap = find_cap(slot, CAP_VNDR, cap)) {
        uint8_t type = (uint8_t)pci_cfg_read(slot, cap + 3, 1);
        uint64_t at = bar_address(slot, pci_cfg_read(slot, cap + 4, 1)) +
                      pci_cfg_read(slot, cap + 8, 4);
        if (type == 1)
            v->common = at;
        else if (type == 2) {
            v->notify = at;
            v->notify_multiplier = pci_cfg_read(slot, cap + 16, 4);
        } else if (type == 3)
            v->isr = at;
        else if (type == 4)
            v->device = at;
    }
    return v->common && v->notify && v->isr ? (uint64_t)v | 1 : 0;
}

/* The virtio-pci device in `slot`, or 0; *id gets its virtio device ID. */
static uint64_t vpci_at(unsigned slot, uint32_t *id)
{
    uint32_t ids = pci_cfg_read(slot, 0, 4);
    if ((ids & 0xffff) != 0x1af4 || (ids >> 16) < 0x1040 || (ids >> 16) > 0x107f)
        return 0;
    *id = (ids >> 16) - 0x1040;
    return vpci_open(slot);
}

uint64_t vpci_find(uint32_t device_id, unsigned nth)
{
    for (unsigned slot = 1; slot < PCI_SLOTS; slot++) {
        uint32_t id;
        uint32_t ids = pci_cfg_read(slot, 0, 4);
        if ((ids & 0xffff) == 0x1af4 && (ids >> 16) == 0x1040 + device_id && nth-- == 0)
            return vpci_at(slot, &id);
    }
    return 0;
}

bool vpci_setup(uint64_t dev, uint32_t features_lo, struct vq *qs, struct vq_ring *rings,
                unsigned nq)
{
    struct vpci *v = handle(dev);
    CC(v, 0x14, uint8_t) = 0;
    CC(v, 0x14, uint8_t) = 1 | 2;
    CC(v, 0x00, uint32_t) = 1;
    if (!(CC(v, 0x04, uint32_t) & 1)) /* VERSION_1 */
        return false;
    CC(v, 0x08, uint32_t) = 0;
    CC(v, 0x0c, uint32_t) = features_lo;
    CC(v, 0x08, uint32_t) = 1;
    CC(v, 0x0c, uint32_t) = 1;
    CC(v, 0x14, uint8_t) = 1 | 2 | 8;
    if (!(CC(v, 0x14, uint8_t) & 8))
        return false;
    for (unsigned qi = 0; qi < nq; qi++) {
        CC(v, 0x16, uint16_t) = (uint16_t)qi;
        if (CC(v, 0x18, uint16_t) < VQ_SIZE)
            return false;
        for (unsigned i = 0; i < sizeof(rings[qi]); i++)
            ((volatile uint8_t *)&rings[qi])[i] = 0;
        rings[qi].avail.flags = 1; /* polling: no used-buffer interrupts */
        CC(v, 0x18, uint16_t) = VQ_SIZE;
        CC(v, 0x1a, uint16_t) = 0xffff; /* no MSI-X vector */
        uint64_t d = (uint64_t)&rings[qi].desc, a = (uint64_t)&rings[qi].avail,
                 u = (uint64_t)&rings[qi].used;
        CC(v, 0x20, uint32_t) = (uint32_t)d;
        CC(v, 0x24, uint32_t) = (uint32_t)(d >> 32);
        CC(v, 0x28, uint32_t) = (uint32_t)a;
        CC(v, 0x2c, uint32_t) = (uint32_t)(a >> 32);
        CC(v, 0x30, uint32_t) = (uint32_t)u;
        CC(v, 0x34, uint32_t) = (uint32_t)(u >> 32);
        CC(v, 0x1c, uint16_t) = 1;
        qs[qi] = (struct vq){.base = dev, .index = qi, .ring = &rings[qi]};
    }
    CC(v, 0x14, uint8_t) = 1 | 2 | 8 | 4;
    return true;
}

void vpci_notify(uint64_t dev, unsigned queue)
{
    struct vpci *v = handle(dev);
    *(volatile uint16_t *)(v->notify + queue * v->notify_multiplier) = (uint16_t)queue;
}

uint32_t vpci_config32(uint64_t dev, unsigned offset)
{
    struct vpci *v = handle(dev);
    return v->device ? *(volatile uint32_t *)(v->device + offset) : 0;
}

uint8_t vpci_status(uint64_t dev) { return CC(handle(dev), 0x14, uint8_t); }
uint8_t vpci_isr(uint64_t dev) { return *(volatile uint8_t *)handle(dev)->isr; }

/* Every virtio-pci device, for run_virtio_tests. */
unsigned vpci_all(uint64_t *devs, uint32_t *ids, unsigned max);
unsigned vpci_all(uint64_t *devs, uint32_t *ids, unsigned max)
{
    unsigned n = 0;
    for (unsigned slot = 1; slot < PCI_SLOTS && n < max; slot++) {
        uint64_t dev = vpci_at(slot, &ids[n]);
        if (dev)
            devs[n++] = dev;
    }
    return n;
}

/* ------------------------------------------- kvmc.test=pci: user device */

static void say(const char *what, bool ok)
{
    puts_serial("pci: ");
    puts_serial(what);
    puts_serial(ok ? ": yes\n" : ": no\n");
}

static bool wait_pending(uint8_t vector)
{
    for (unsigned i = 0; i < 2000000; i++)
        if (lapic_pending(vector))
            return true;
    return false;
}

/* The host's test device: BAR 0 (memory) reads 0xc0de0000 + offset, a
 * write to 0x00 is remembered, a write to 0x04 raises that MSI-X vector;
 * BAR 1 (I/O) reads 0x40 + offset; BAR 2 is a 64-bit one. */
void test_pci(void)
{
    unsigned slot = 0;
    for (unsigned s = 1; s < PCI_SLOTS && !slot; s++)
        if (pci_cfg_read(s, 0, 4) == (TEST_DEVICE << 16 | TEST_VENDOR))
            slot = s;
    puts_serial("pci: test device in slot ");
    put_dec(slot);
    puts_serial(", class 0x");
    put_hex(pci_cfg_read(slot, 8, 4) >> 8, 6);
    puts_serial("\n");
    if (!slot)
        return;
    say("ecam and ports agree", pci_port_read(slot, 0) == pci_cfg_read(slot, 0, 4) &&
                                    pci_port_read(slot, 8) == pci_cfg_read(slot, 8, 4));
    say("empty slot reads all ones", pci_cfg_read(30, 0, 4) == 0xffffffffu &&
                                         pci_port_read(30, 0) == 0xffffffffu);
    puts_serial("pci: bar sizes");
    for (unsigned b = 0; b < 6; b++) {
        bool upper = b && (pci_cfg_read(slot, 0x10 + 4 * (b - 1), 4) & 7) == 4;
        puts_serial(" ");
        put_dec(upper ? 0 : bar_size(slot, b)); /* a 64-bit BAR's upper half */
    }
    puts_serial("\n");

    uint64_t bar0 = bar_address(slot, 0), bar1 = bar_address(slot, 1);
    volatile uint32_t *regs = (volatile uint32_t *)bar0;
    say("decoding off reads all ones", regs[2] == 0xffffffffu);
    pci_cfg_write(slot, 4, 2, CMD_MEM | CMD_IO | CMD_MASTER);
    say("bar 0 answers", regs[2] == 0xc0de0008u);
    say("bar 1 answers", inb((uint16_t)(bar1 + 3)) == 0x43);
    regs[0] = 0x5a5a;
    say("bar 0 keeps a write", regs[0] == 0x5a5a);

    unsigned cap = find_cap(slot, CAP_MSIX, 0);
    uint32_t table_bir = pci_cfg_read(slot, cap + 4, 4), pba_bir = pci_cfg_read(slot, cap + 8, 4);
    volatile uint32_t *table =
        (volatile uint32_t *)(bar_address(slot, table_bir & 7) + (table_bir & ~7u));
    volatile uint64_t *pba = (volatile uint64_t *)(bar_address(slot, pba_bir & 7) + (pba_bir & ~7u));
    puts_serial("pci: msix vectors ");
    put_dec((pci_cfg_read(slot, cap + 2, 2) & 0x7ff) + 1);
    puts_serial("\n");
    lapic_write(LAPIC_SVR, 0x1ff);
    uint32_t apic = 0xfee00000u | (uint32_t)my_apic_id() << 12;
    for (unsigned v = 0; v < 2; v++) {
        table[4 * v + 0] = apic;
        table[4 * v + 1] = 0;
        table[4 * v + 2] = 0x60 + v;
        table[4 * v + 3] = v == 1; /* vector 1 stays masked */
    }
    pci_cfg_write(slot, cap + 2, 2, 0x8000);
    regs[1] = 0;
    say("msix vector 0 delivered", wait_pending(0x60));
    regs[1] = 1;
    bool held = !wait_pending(0x61) && (*pba & 2);
    table[4 * 1 + 3] = 0;
    say("masked vector held pending, delivered on unmask", held && wait_pending(0x61) &&
                                                               !(*pba & 2));
    pci_cfg_write(slot, 0x10, 4, 0xd8000000);
    say("moved bar 0 answers", *(volatile uint32_t *)0xd8000008ull == 0xc0de0008u &&
                                   regs[2] == 0xffffffffu);
    pci_cfg_write(slot, 0x10, 4, (uint32_t)bar0);
    pci_cfg_write(slot, 4, 2, 0);
    say("decoding off again", regs[2] == 0xffffffffu);
}

/* ------------------------------------- kvmc.test=pci-scribble: hostile */

static uint64_t rnd_state = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Random config writes to every slot and function through both mechanisms
 * (BAR sizing and moves, decoding on anywhere, capabilities), random writes
 * to the MSI-X tables and virtio-pci regions, 0xcf8 set to anything; then
 * the original BARs back and the ordinary virtio test must still pass. */
void test_pci_scribble(void)
{
    uint32_t saved[PCI_SLOTS][6] = {{0}};
    for (unsigned s = 1; s < PCI_SLOTS; s++)
        for (unsigned b = 0; b < 6; b++)
            saved[s][b] = pci_cfg_read(s, 0x10 + 4 * b, 4);
    accept_all_interrupts();
    unsigned accesses = 0;
    for (unsigned round = 0; round < 8000; round++, accesses++) {
        unsigned dev = (unsigned)(rnd() % PCI_SLOTS), reg = (unsigned)(rnd() % 0x1000);
        uint32_t v = (uint32_t)rnd();
        switch (rnd() % 9) {
        case 0: pci_cfg_write(dev, reg & ~3u, 4, v); break;
        case 1: pci_cfg_write(dev, reg & 0xff, 1, v); break;
        case 2: (void)pci_cfg_read(dev, reg, 1 << (rnd() % 3)); break;
        case 3:
            outl(0xcf8, (uint32_t)rnd());
            outl(0xcfc, v);
            break;
        case 4: /* a BAR anywhere below 4 GiB, decoding on */
            pci_cfg_write(dev, 0x10 + 4 * (rnd() % 6), 4, v & 0xfffff000u);
            pci_cfg_write(dev, 4, 2, CMD_MEM | CMD_IO);
            break;
        case 5: { /* a write into some device's MSI-X table or pending bits */
            unsigned cap = find_cap(dev, CAP_MSIX, 0);
            if (!cap)
                break;
            unsigned bir = pci_cfg_read(dev, cap + 4, 4) & 7;
            pci_cfg_write(dev, 0x10 + 4 * bir, 4, saved[dev][bir]);
            pci_cfg_write(dev, 4, 2, CMD_MEM);
            /* Any address (kvmc drops those outside the local APICs'), but
             * data that is a fixed-mode vector this guest takes: INIT or
             * SIPI would stop this guest, which proves nothing about kvmc. */
            uint64_t off = rnd() % 0x1000 & ~3u;
            if (off % 16 == 8)
                v = 0x20 + v % 0xd0;
            *(volatile uint32_t *)((saved[dev][bir] & ~0xfull) + off) = v;
            break;
        }
        case 6: { /* MSI-X: enable with whatever the table says */
            unsigned cap = find_cap(dev, CAP_MSIX, 0);
            if (cap)
                pci_cfg_write(dev, cap + 2, 2, v);
            break;
        }
        case 7: { /* virtio-pci common config, but never a queue's rings: the
                   * device would then write over this guest's own memory */
            static const uint8_t regs[] = {0x00, 0x08, 0x0c, 0x10, 0x14, 0x16, 0x1a, 0x1c};
            uint32_t id;
            if (dev) { /* its BAR back where it was (the scribbling moved it) */
                pci_cfg_write(dev, 0x10, 4, saved[dev][0]);
                pci_cfg_write(dev, 0x14, 4, saved[dev][1]);
            }
            uint64_t d = dev ? vpci_at(dev, &id) : 0;
            if (d) {
                uint8_t r = regs[rnd() % sizeof(regs)];
                if (r == 0x14)
                    *(volatile uint8_t *)(handle(d)->common + r) = (uint8_t)(v & ~4u);
                else if (r >= 0x10)
                    *(volatile uint16_t *)(handle(d)->common + r) = (uint16_t)v;
                else
                    *(volatile uint32_t *)(handle(d)->common + r) = v;
                accesses++;
            }
            break;
        }
        default: (void)pci_port_read(dev, reg); break;
        }
    }
    outl(0xcf8, 0);
    for (unsigned s = 1; s < PCI_SLOTS; s++) {
        pci_cfg_write(s, 4, 2, 0);
        for (unsigned b = 0; b < 6; b++)
            pci_cfg_write(s, 0x10 + 4 * b, 4, saved[s][b]);
        unsigned cap = find_cap(s, CAP_MSIX, 0);
        if (cap)
            pci_cfg_write(s, cap + 2, 2, 0);
    }
    puts_serial("pci-scribble: ");
    put_dec(accesses);
    puts_serial(" accesses, still running\n");
    say("host bridge intact", pci_cfg_read(0, 0, 4) == 0x00081b36u);
    run_virtio_tests(false);
}
