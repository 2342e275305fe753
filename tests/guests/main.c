/* The test guest's real work, all at CPL3 with IOPL=3: read what the boot
 * protocol handed over, report it on COM1, start the other CPUs, run the
 * test the command line asks for (kvmc.test=...), and power off.
 *
 * Output lines are a contract with tests/integration: keep them stable. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest.h"

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define DEBUG_EXIT_PORT 0x501
#define I8042_COMMAND 0x64
#define TEST_PIO_PORT 0x600
#define TEST_MMIO_BASE 0xd0000000ull
#define LAPIC_BASE 0xfee00000ull
#define LAPIC_ID 0x20
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_INIT 0x4500
#define ICR_STARTUP 0x4600

uint8_t kstack[KSTACK_SIZE] __attribute__((aligned(4096)));
uint8_t ustack[USTACK_SIZE] __attribute__((aligned(4096)));
struct tss64 tss;

struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_high, reserved;
} __attribute__((packed));
struct idt_gate idt[256] __attribute__((aligned(16)));

extern void isr_unexpected(void);
extern void isr_count_eoi(void);
extern volatile uint32_t ap_serve_irqs, eoi_count;
extern uint8_t isr_exception_stubs[];

volatile uint8_t apic_seen[256];

/* ------------------------------------------------------------ port I/O */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint64_t rdtsc(void) { uint32_t lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((uint64_t)hi << 32) | lo; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }


/* ------------------------------------------------------- tiny libc bits */

void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);
size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *dp = d;
    const uint8_t *sp = s;
    while (n--)
        *dp++ = *sp++;
    return d;
}
void *memset(void *d, int c, size_t n)
{
    uint8_t *dp = d;
    while (n--)
        *dp++ = (uint8_t)c;
    return d;
}

bool starts_with(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return false;
    return true;
}

/* ------------------------------------------------------------- console */

static void putc_serial(char c) { outb(COM1, (uint8_t)c); }

void puts_serial(const char *s)
{
    while (*s)
        putc_serial(*s++);
}

void put_hex(uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--)
        putc_serial("0123456789abcdef"[(v >> (i * 4)) & 0xf]);
}

void put_dec(uint64_t v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n--)
        putc_serial(buf[n]);
}

static void power_off(uint8_t status)
{
    outb(DEBUG_EXIT_PORT, status);
    for (;;)
        cpu_relax();
}

/* kvmc.test=flood[:LINES]: numbered console lines, forever without LINES,
 * then power-off. For console back-pressure and console-limit tests. */
static void flood(const char *cmdline)
{
    char arg[24] = "";
    cmdline_get(cmdline, "kvmc.test=flood:", arg, sizeof(arg));
    uint64_t lines = 0;
    for (const char *p = arg; *p >= '0' && *p <= '9'; p++)
        lines = lines * 10 + (uint64_t)(*p - '0');
    for (uint64_t i = 0; !lines || i < lines; i++) {
        puts_serial("flood line ");
        put_dec(i);
        puts_serial(" ................................................\n");
    }
    puts_serial("flood: done\n");
    power_off(0);
}

/* ------------------------------------------------------ CPL0 structures */

static void set_gate(unsigned vec, void (*handler)(void), unsigned dpl)
{
    uint64_t a = (uint64_t)handler;
    idt[vec] = (struct idt_gate){
        .offset_low = (uint16_t)a, .selector = SEL_KCODE, .ist = 0,
        .type_attr = (uint8_t)(0x8e | (dpl << 5)), .offset_mid = (uint16_t)(a >> 16),
        .offset_high = (uint32_t)(a >> 32),
    };
}

/* Makes the BSP's IDT useless from CPL3 (it is ordinary user-accessible
 * memory) and faults: #UD finds no gate, nor does the #NP or #DF after it,
 * so the CPU shuts down (triple fault). */
static void triple_fault(void)
{
    memset(idt, 0, sizeof(idt));
    __asm__ volatile("ud2");
}

/* Every external vector is taken and acknowledged (counted in eoi_count):
 * for a guest that lets random interrupts loose on itself. */
void accept_all_interrupts(void)
{
    for (unsigned v = 0x20; v < 0xff; v++)
        set_gate(v, isr_count_eoi, 0);
    lapic_write(LAPIC_SVR, 0x1ff);
}

static void setup_idt(void)
{
    for (unsigned v = 0; v < 256; v++)
        set_gate(v, isr_unexpected, 0);
    for (unsigned v = 0; v < 32; v++)
        set_gate(v, (void (*)(void))(isr_exception_stubs + 16 * v), 0);
}

/* ----------------------------------------------------------- boot info */

#define MAX_E820 16
struct mem_range { uint64_t addr, size; uint32_t type; };

struct boot {
    const char *protocol;
    uint64_t rsdp; /* as handed over by the boot protocol */
    const char *cmdline;
    struct mem_range map[MAX_E820];
    unsigned nmap;
    uint64_t initrd, initrd_size;
};

struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct hvm_memmap { uint64_t addr, size; uint32_t type, reserved; };
struct hvm_mod { uint64_t paddr, size, cmdline, reserved; };

static void read_pvh(struct boot *b, const struct hvm_start_info *si)
{
    b->protocol = "PVH";
    b->cmdline = si->cmdline_paddr ? (const char *)si->cmdline_paddr : "";
    b->rsdp = si->rsdp_paddr;
    const struct hvm_memmap *m = (const void *)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries && b->nmap < MAX_E820; i++)
        b->map[b->nmap++] = (struct mem_range){m[i].addr, m[i].size, m[i].type};
    if (si->nr_modules) {
        const struct hvm_mod *mod = (const void *)si->modlist_paddr;
        b->initrd = mod->paddr;
        b->initrd_size = mod->size;
    }
}

static void read_linux(struct boot *b, const uint8_t *zp)
{
    b->protocol = "Linux 64-bit";
    uint32_t cmd = *(const uint32_t *)(zp + 0x228);
    b->cmdline = cmd ? (const char *)(uint64_t)cmd : "";
    unsigned n = zp[0x1e8];
    for (unsigned i = 0; i < n && b->nmap < MAX_E820; i++) {
        const uint8_t *e = zp + 0x2d0 + 20 * i;
        b->map[b->nmap++] = (struct mem_range){*(const uint64_t *)e,
                                               *(const uint64_t *)(e + 8),
                                               *(const uint32_t *)(e + 16)};
    }
    b->rsdp = *(const uint64_t *)(zp + 0x070);
    b->initrd = *(const uint32_t *)(zp + 0x218);
    b->initrd_size = *(const uint32_t *)(zp + 0x21c);
}

/* Value of key=... in the command line, copied into out. */
bool cmdline_get(const char *cmdline, const char *key, char *out, unsigned cap)
{
    const char *p = cmdline;
    while (*p) {
        while (*p == ' ')
            p++;
        if (starts_with(p, key)) {
            p += __builtin_strlen(key);
            unsigned n = 0;
            while (*p && *p != ' ' && n + 1 < cap)
                out[n++] = *p++;
            out[n] = 0;
            return true;
        }
        while (*p && *p != ' ')
            p++;
    }
    return false;
}

/* ------------------------------------------------------------- reports */

static uint64_t report_memory(const struct boot *b)
{
    uint64_t ram = 0;
    for (unsigned i = 0; i < b->nmap; i++) {
        const struct mem_range *r = &b->map[i];
        puts_serial("e820: 0x");
        put_hex(r->addr, 16);
        puts_serial("-0x");
        put_hex(r->addr + r->size, 16);
        puts_serial(r->type == 1 ? " ram\n" : " reserved\n");
        if (r->type == 1)
            ram += r->size;
    }
    puts_serial("memory: ");
    put_dec(ram);
    puts_serial(" bytes usable (");
    put_dec(ram >> 20);
    puts_serial(" MiB)\n");
    return ram;
}

uint64_t fnv1a(const uint8_t *p, uint64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    while (n--) {
        h ^= *p++;
        h *= 0x100000001b3ull;
    }
    return h;
}

static void report_initrd(const struct boot *b)
{
    if (!b->initrd_size) {
        puts_serial("initrd: none\n");
        return;
    }
    puts_serial("initrd: ");
    put_dec(b->initrd_size);
    puts_serial(" bytes at 0x");
    put_hex(b->initrd, 8);
    puts_serial(", fnv1a 0x");
    put_hex(fnv1a((const uint8_t *)b->initrd, b->initrd_size), 16);
    puts_serial("\n");
}

/* ------------------------------------------------------------------ SMP */

struct mp_cpus { unsigned count; uint8_t apic_ids[GUEST_MAX_CPUS]; };

static uint8_t checksum8(const uint8_t *p, unsigned n)
{
    uint8_t s = 0;
    while (n--)
        s += *p++;
    return s;
}

static const uint8_t *find_mp_floating(uint64_t start, uint64_t len)
{
    for (uint64_t a = start; a + 16 <= start + len; a += 16) {
        const uint8_t *p = (const uint8_t *)a;
        if (p[0] == '_' && p[1] == 'M' && p[2] == 'P' && p[3] == '_' &&
            checksum8(p, 16) == 0)
            return p;
    }
    return 0;
}

/* CPUs listed in the MP table; count 0 if there is no valid table. */
static struct mp_cpus read_mp_table(void)
{
    struct mp_cpus cpus = {0};
    const uint8_t *mpf = find_mp_floating(0x9fc00, 0x400);
    if (!mpf)
        mpf = find_mp_floating(0xf0000, 0x10000);
    if (!mpf)
        return cpus;
    const uint8_t *t = (const uint8_t *)(uint64_t)*(const uint32_t *)(mpf + 4);
    uint16_t len = *(const uint16_t *)(t + 4);
    if (t[0] != 'P' || t[1] != 'C' || t[2] != 'M' || t[3] != 'P' || checksum8(t, len))
        return cpus;
    const uint8_t *p = t + 44, *end = t + len;
    while (p < end) {
        if (p[0] == 0) {
            if ((p[3] & 1) && cpus.count < GUEST_MAX_CPUS)
                cpus.apic_ids[cpus.count++] = p[1];
            p += 20;
        } else {
            p += 8;
        }
    }
    return cpus;
}

void lapic_write(unsigned reg, uint32_t v)
{
    *(volatile uint32_t *)(LAPIC_BASE + reg) = v;
}

/* From the local APIC, not CPUID: on PVM hosts without CPUID faulting,
 * `cpuid` at CPL3 runs natively and reports the host CPU's APIC ID. */
uint8_t my_apic_id(void)
{
    return (uint8_t)(*(volatile uint32_t *)(LAPIC_BASE + LAPIC_ID) >> 24);
}

/* Starts every AP with INIT + SIPI; returns how many CPUs run, BSP included. */
static unsigned start_aps(const struct mp_cpus *cpus)
{
    uint8_t *tramp = (uint8_t *)AP_TRAMPOLINE;
    memcpy(tramp, ap_trampoline_start, (size_t)(ap_trampoline_end - ap_trampoline_start));
    uint8_t *gdtr = tramp + (ap_trampoline_gdtr - ap_trampoline_start);
    uint16_t limit = (uint16_t)(SEL_TSS + 16 - 1);
    uint32_t base = (uint32_t)(uint64_t)gdt;
    memcpy(gdtr, &limit, 2);
    memcpy(gdtr + 2, &base, 4);
    uint32_t cr3 = (uint32_t)(uint64_t)pml4;
    memcpy(tramp + (ap_trampoline_cr3 - ap_trampoline_start), &cr3, 4);

    uint8_t bsp = my_apic_id();
    apic_seen[bsp] = 1;

    for (unsigned i = 0; i < cpus->count; i++) {
        if (cpus->apic_ids[i] == bsp)
            continue;
        lapic_write(LAPIC_ICR_HIGH, (uint32_t)cpus->apic_ids[i] << 24);
        lapic_write(LAPIC_ICR_LOW, ICR_INIT);
        lapic_write(LAPIC_ICR_HIGH, (uint32_t)cpus->apic_ids[i] << 24);
        lapic_write(LAPIC_ICR_LOW, ICR_STARTUP | (AP_TRAMPOLINE >> 12));
    }
    /* Bounded wait: a few seconds of TSC at any plausible frequency. */
    uint64_t start = rdtsc();
    while (cpus_up < cpus->count && rdtsc() - start < 20000000000ull)
        cpu_relax();
    unsigned seen = 0; /* each CPU the MP table lists must have reported */
    for (unsigned i = 0; i < cpus->count; i++)
        seen += apic_seen[cpus->apic_ids[i]];
    return seen;
}

/* ----------------------------------------------------------------- ACPI */

struct acpi_info {
    bool ok;
    uint64_t rsdp;
    unsigned madt_cpus;
    uint16_t sleep_control_port;
};

static const uint8_t *find_rsdp(void)
{
    for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
        const uint8_t *p = (const uint8_t *)a;
        if (starts_with((const char *)p, "RSD PTR ") && checksum8(p, 20) == 0)
            return p;
    }
    return 0;
}

static bool sig_is(const uint8_t *table, const char *sig)
{
    return table[0] == sig[0] && table[1] == sig[1] && table[2] == sig[2] && table[3] == sig[3];
}

/* Finds the tables from the RSDP found by scanning (as Linux does), checks
 * every checksum, and reads the MADT and the FADT's sleep control port. */
static struct acpi_info read_acpi(const struct boot *b)
{
    struct acpi_info acpi = {0};
    const uint8_t *rsdp = find_rsdp();
    if (!rsdp || checksum8(rsdp, 36) != 0)
        return acpi;
    acpi.rsdp = (uint64_t)rsdp;
    const uint8_t *xsdt = (const uint8_t *)*(const uint64_t *)(rsdp + 24);
    uint32_t xlen = *(const uint32_t *)(xsdt + 4);
    if (!sig_is(xsdt, "XSDT") || checksum8(xsdt, xlen))
        return acpi;
    puts_serial("acpi: tables");
    bool ok = b->rsdp == acpi.rsdp, have_dsdt = false;
    for (uint32_t off = 36; off + 8 <= xlen; off += 8) {
        const uint8_t *t = (const uint8_t *)*(const uint64_t *)(xsdt + off);
        uint32_t len = *(const uint32_t *)(t + 4);
        ok &= checksum8(t, len) == 0;
        puts_serial(" ");
        for (int i = 0; i < 4; i++)
            putc_serial((char)t[i]);
        if (sig_is(t, "APIC")) {
            for (uint32_t e = 44; e + 2 <= len; e += t[e + 1]) {
                if (t[e + 1] == 0)
                    break;
                if (t[e] == 0 && (*(const uint32_t *)(t + e + 4) & 1))
                    acpi.madt_cpus++;
            }
        } else if (sig_is(t, "FACP")) {
            const uint8_t *dsdt = (const uint8_t *)*(const uint64_t *)(t + 140);
            have_dsdt = sig_is(dsdt, "DSDT") &&
                        checksum8(dsdt, *(const uint32_t *)(dsdt + 4)) == 0;
            acpi.sleep_control_port = (uint16_t)*(const uint64_t *)(t + 244 + 4);
        }
    }
    acpi.ok = ok && have_dsdt && acpi.sleep_control_port;
    puts_serial(have_dsdt ? " DSDT" : " (no DSDT)");
    puts_serial(", ");
    put_dec(acpi.madt_cpus);
    puts_serial(" cpus in MADT, ");
    puts_serial(acpi.ok ? "checksums ok\n" : "BROKEN\n");
    return acpi;
}

/* ACPI S5 through the FADT's sleep control register: SLP_TYP=5, SLP_EN. */
static void acpi_power_off(const struct acpi_info *acpi)
{
    outb(acpi->sleep_control_port, (5 << 2) | 0x20);
}

/* ---------------------------------------------------------------- tests */

static void test_devices(void)
{
    outl(TEST_PIO_PORT, 0x12345678u);
    uint32_t pio = inl(TEST_PIO_PORT);
    puts_serial("pio: wrote 0x12345678 read 0x");
    put_hex(pio, 8);
    puts_serial("\n");
    volatile uint64_t *mmio = (volatile uint64_t *)TEST_MMIO_BASE;
    *mmio = 0x1122334455667788ull;
    uint64_t v = *mmio;
    puts_serial("mmio: wrote 0x1122334455667788 read 0x");
    put_hex(v, 16);
    puts_serial("\n");
}

/* An x87 store to an MMIO address: KVM has to emulate the access and its
 * instruction emulator has no x87 stores, so the VM ends with an emulation
 * failure (KVM_EXIT_INTERNAL_ERROR), whatever the host's backend. */
static void emulation_failure(void)
{
    double one = 1.0;
    __asm__ volatile("fninit\n\tfldl %0\n\tfstpl (%1)"
                     :: "m"(one), "r"(TEST_MMIO_BASE + 0x100) : "memory");
}

/* The ports Linux pokes while it boots on a PC. With no device behind them
 * they must read as all ones and swallow writes, and the guest goes on. */
static void probe_legacy_ports(void)
{
    static const uint16_t ports[] = {
        0x80,                     /* POST code / I/O delay */
        0x2f8, 0x2fd, 0x3e8, 0x3ed, 0x2e8, 0x2ed, /* COM2-4 */
        0x70, 0x71,               /* CMOS/RTC */
        0x87, 0x0d, 0xda,         /* DMA controllers */
        0x3c0, 0x3d4, 0x3da, 0x1ce, /* VGA, Bochs VBE */
        0x378, 0x37a,             /* parallel port */
        0x3f0, 0x3f2, 0x3f4,      /* floppy */
        0x1f7, 0x177,             /* IDE */
        0x510, 0x511,             /* fw_cfg */
    };
    unsigned odd = 0;
    for (unsigned i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        outb(ports[i], 0x00);
        if (inb(ports[i]) != 0xff)
            odd++;
    }
    outl(0xcf8, 0x80000000u); /* PCI config space: 00:00.0's IDs */
    uint32_t pci = inl(0xcfc);
    puts_serial("probe: ");
    put_dec(sizeof(ports) / sizeof(ports[0]));
    puts_serial(" legacy ports, ");
    put_dec(odd);
    puts_serial(" answered, pci 0x");
    put_hex(pci, 8);
    puts_serial("\n");
}

/* Whether an i8254 answers: programs channel 0 (rate generator, count
 * 0xffff), then latches its count twice. A counting PIT gives two different
 * values below 0xffff; with no PIT every read is 0xff. */
static void probe_pit(void)
{
    outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    uint16_t count[2];
    for (unsigned i = 0; i < 2; i++) {
        outb(0x43, 0x00); /* latch channel 0 */
        count[i] = (uint16_t)(inb(0x40) | inb(0x40) << 8);
        for (volatile unsigned spin = 0; spin < 100000; spin++)
            ;
    }
    puts_serial(count[0] == 0xffff && count[1] == 0xffff ? "pit: absent\n"
                : count[0] != count[1]                   ? "pit: counting\n"
                                                         : "pit: stuck\n");
}

/* ----------------------------------------------- hostile platform access */

/* kvmc.test=scribble, first part: random writes to every COM1 register but
 * THR (it would print the noise) and to the i8042's data port, reads of
 * every platform port; the ports whose writes end the VM by design (0x501,
 * 0x505, 0xb000, 0x64) are only read. Then COM1 is set back to 8n1. */
static void scribble_platform(void)
{
    static const uint16_t read_only[] = {0x501, 0x505, 0xb000, 0xb001, 0x64, 0x60};
    uint64_t x = 0x2545f4914f6cdd1dull;
    unsigned accesses = 0;
    for (unsigned i = 0; i < 4000; i++, accesses += 3) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        outb((uint16_t)(COM1 + 1 + x % 7), (uint8_t)(x >> 8));
        (void)inb((uint16_t)(COM1 + (x >> 16) % 8));
        (void)inb(read_only[(x >> 24) % 6]);
        if (i % 8 == 0) {
            outb(0x60, (uint8_t)(x >> 32));
            accesses++;
        }
    }
    outb(COM1 + 3, 0x03); /* DLAB off, 8n1 */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 4, 0x00); /* loopback off */
    outb(COM1 + 2, 0x00);
    puts_serial("scribble: platform ports, ");
    put_dec(accesses);
    puts_serial(" accesses\n");
}

/* ------------------------------------------------ I/O APIC to local APIC */

#define IOAPIC_BASE 0xfec00000ull
#define LAPIC_IRR 0x200

static void ioapic_write(unsigned reg, uint32_t v)
{
    *(volatile uint32_t *)IOAPIC_BASE = reg;
    *(volatile uint32_t *)(IOAPIC_BASE + 0x10) = v;
}

static uint32_t ioapic_read(unsigned reg)
{
    *(volatile uint32_t *)IOAPIC_BASE = reg;
    return *(volatile uint32_t *)(IOAPIC_BASE + 0x10);
}

bool lapic_pending(uint8_t vector)
{
    uint32_t irr = *(volatile uint32_t *)(LAPIC_BASE + LAPIC_IRR + 0x10 * (vector / 32));
    return irr >> (vector % 32) & 1;
}

/* COM1's interrupt line follows THRI in IER (THR is always empty). */
static void com1_line(bool high)
{
    outb(COM1 + 1, high ? 0x02 : 0x00);
}

static void say_pending(const char *what, uint8_t vector)
{
    puts_serial("ioapic: ");
    puts_serial(what);
    puts_serial(lapic_pending(vector) ? ": yes\n" : ": no\n");
}

/* kvmc.test=ioapic: COM1's line (pin 4) through the I/O APIC to this CPU's
 * local APIC, whose IRR shows what arrived (interrupts stay off: nothing is
 * taken, so every vector stays visible). Runs against kvmc's I/O APIC and,
 * with --pit, the kernel's. */
static void test_ioapic(void)
{
    lapic_write(LAPIC_SVR, 0x1ff); /* APIC on, spurious vector 0xff */
    uint32_t dest = (uint32_t)my_apic_id() << 24;
    com1_line(false);
    ioapic_write(0x10 + 2 * 4 + 1, dest);
    ioapic_write(0x10 + 2 * 4, 0x40); /* edge, fixed, unmasked */
    com1_line(true);
    say_pending("edge vector 0x40 delivered", 0x40);
    com1_line(false);
    ioapic_write(0x10 + 2 * 4, 0x10041); /* masked */
    com1_line(true);
    say_pending("masked edge delivered while masked", 0x41);
    ioapic_write(0x10 + 2 * 4, 0x41); /* unmasked */
    say_pending("masked edge delivered on unmask", 0x41);
    com1_line(false);
    ioapic_write(0x10 + 2 * 4, 0x8042); /* level */
    com1_line(true);
    say_pending("level vector 0x42 delivered", 0x42);
    puts_serial((ioapic_read(0x10 + 2 * 4) & 0x4000) ? "ioapic: remote IRR set: yes\n"
                                                    : "ioapic: remote IRR set: no\n");
    com1_line(false);
    ioapic_write(0x10 + 2 * 4, 0x10000); /* masked again, for whoever comes next */
}

/* kvmc.test=irq: a device of the host's (a binding's, say) raises a GSI:
 * the guest routes pin 10 to vector 0x50 on itself, asks the device on port
 * 0x600 to raise GSI 10 (it writes the GSI there), and watches its local
 * APIC's IRR for the vector. */
static void test_irq(void)
{
    lapic_write(LAPIC_SVR, 0x1ff);
    uint32_t dest = (uint32_t)my_apic_id() << 24;
    ioapic_write(0x10 + 2 * 10 + 1, dest);
    ioapic_write(0x10 + 2 * 10, 0x50); /* edge, fixed, unmasked */
    outl(TEST_PIO_PORT, 10);
    bool seen = false;
    for (uint64_t start = rdtsc(); !seen && rdtsc() - start < 6000000000ull;)
        seen = lapic_pending(0x50);
    puts_serial(seen ? "irq: gsi 10 delivered vector 0x50\n" : "irq: gsi 10 never arrived\n");
    ioapic_write(0x10 + 2 * 10, 0x10000);
}

/* kvmc.test=ioapic-eoi (2 CPUs): COM1's pin 4, level-triggered, to the AP,
 * which takes each interrupt at CPL0 and sends the EOI. While the line is
 * high, every EOI must bring the next interrupt (kvmc hears the EOI through
 * KVM_EXIT_IOAPIC_EOI); once the line is low, they must stop. */
static void test_ioapic_eoi(const struct mp_cpus *cpus)
{
    if (cpus->count < 2) {
        puts_serial("ioapic-eoi: needs 2 CPUs\n");
        return;
    }
    set_gate(0x43, isr_count_eoi, 0);
    com1_line(false);
    ioapic_write(0x10 + 2 * 4 + 1, (uint32_t)cpus->apic_ids[1] << 24);
    ioapic_write(0x10 + 2 * 4, 0x8043); /* level, fixed, vector 0x43, unmasked */
    com1_line(true);
    uint64_t start = rdtsc_now();
    while (eoi_count < 5 && rdtsc_now() - start < 10000000000ull)
        __asm__ volatile("pause");
    uint32_t while_high = eoi_count;
    com1_line(false);
    for (uint64_t t = rdtsc_now(); rdtsc_now() - t < 200000000ull;) /* ~0.1 s */
        __asm__ volatile("pause");
    uint32_t at_low = eoi_count;
    for (uint64_t t = rdtsc_now(); rdtsc_now() - t < 400000000ull;)
        __asm__ volatile("pause");
    uint32_t later = eoi_count;
    ioapic_write(0x10 + 2 * 4, 0x10000);
    puts_serial("ioapic-eoi: ");
    put_dec(while_high);
    puts_serial(" interrupts while high, ");
    put_dec(later - while_high);
    puts_serial(" after\n");
    puts_serial(while_high >= 5 ? "ioapic-eoi: redelivered after each EOI while high: yes\n"
                                : "ioapic-eoi: redelivered after each EOI while high: no\n");
    puts_serial(later == at_low ? "ioapic-eoi: stopped once low: yes\n"
                                : "ioapic-eoi: stopped once low: no\n");
}

/* N port writes then N MMIO writes, for the exit-cost benchmark. */
static void exit_loop(const char *arg)
{
    uint64_t n = 0;
    while (*arg >= '0' && *arg <= '9')
        n = n * 10 + (uint64_t)(*arg++ - '0');
    for (uint64_t i = 0; i < n; i++)
        outl(TEST_PIO_PORT, (uint32_t)i);
    volatile uint32_t *mmio = (volatile uint32_t *)TEST_MMIO_BASE;
    for (uint64_t i = 0; i < n; i++)
        *mmio = (uint32_t)i;
    puts_serial("exits: ");
    put_dec(2 * n);
    puts_serial(" done\n");
}

/* Reads console input up to a newline and echoes it back. */
static void test_echo(void)
{
    char line[128];
    unsigned n = 0;
    puts_serial("echo: ready\n");
    for (;;) {
        while (!(inb(COM1_LSR) & 1))
            cpu_relax();
        char c = (char)inb(COM1);
        if (c == '\n' || c == '\r' || n + 1 == sizeof(line))
            break;
        line[n++] = c;
    }
    line[n] = 0;
    puts_serial("echo: ");
    puts_serial(line);
    puts_serial("\n");
}


/* kvmc.test=kbd: names the virtio devices there, checks the i8042 answers Linux's probes (controller self-test,
 * command byte, keyboard identity), then the guest waits for the host to
 * press Ctrl-Alt-Del (scan code set 2) and resets through the controller,
 * as Linux's atkbd would make it do. Polled: this guest takes no IRQ 1. */
/* Ctrl-Alt-Del's make codes, matched as they come. The host may press
 * them before the probes below are answered, so every byte read goes
 * through here first: one of these four is a key, not an answer. */
static const uint8_t ctrl_alt_del[] = {0x14, 0x11, 0xe0, 0x71};
static unsigned cad_seen;

static bool kbd_key(uint8_t b)
{
    bool key = false;
    for (unsigned i = 0; i < sizeof(ctrl_alt_del); i++)
        key |= b == ctrl_alt_del[i];
    if (key && cad_seen < sizeof(ctrl_alt_del))
        cad_seen = b == ctrl_alt_del[cad_seen] ? cad_seen + 1 : (b == ctrl_alt_del[0] ? 1 : 0);
    return key;
}

static uint8_t kbd_read(void)
{
    for (unsigned i = 0; i < 1000000; i++) {
        if (!(inb(I8042_COMMAND) & 1))
            continue;
        uint8_t b = inb(0x60);
        if (!kbd_key(b))
            return b;
    }
    return 0xee; /* not an answer any of these probes expect */
}

static void kbd_show(const char *what, uint8_t v)
{
    puts_serial(what);
    put_hex(v, 2);
    puts_serial("\n");
}

static void test_kbd(void)
{
    static const struct { uint32_t id; const char *name; } kinds[] = {
        {1, " net"}, {2, " blk"}, {4, " rng"}, {19, " vsock"}};
    puts_serial("kbd: virtio devices:");
    for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (virtio_find(kinds[i].id))
            puts_serial(kinds[i].name);
    puts_serial("\n");
    outb(I8042_COMMAND, 0xaa);
    kbd_show("kbd: controller self-test ", kbd_read());
    outb(I8042_COMMAND, 0x20);
    kbd_show("kbd: command byte ", kbd_read());
    outb(0x60, 0xf2);
    uint8_t ack = kbd_read(), id1 = kbd_read(), id2 = kbd_read();
    kbd_show("kbd: get-id ack ", ack);
    kbd_show("kbd: id ", id1);
    kbd_show("kbd: id ", id2);
    puts_serial("kbd: waiting for ctrl-alt-del\n");
    while (cad_seen < sizeof(ctrl_alt_del)) {
        if (!(inb(I8042_COMMAND) & 1)) {
            for (volatile unsigned d = 0; d < 20000; d++)
                ;
            continue;
        }
        kbd_key(inb(0x60));
    }
    puts_serial("kbd: ctrl-alt-del pressed, resetting\n");
    outb(I8042_COMMAND, 0xfe);
}

void guest_main(void)
{
    setup_idt();
    struct boot b = {0};
    if (boot_kind == BOOT_KIND_PVH)
        read_pvh(&b, (const struct hvm_start_info *)boot_info);
    else
        read_linux(&b, (const uint8_t *)boot_info);

    char mode[32] = "";
    cmdline_get(b.cmdline, "kvmc.test=", mode, sizeof(mode));
    if (starts_with(mode, "boot-only")) { /* cold-start benchmark: up, then off */
        puts_serial("kvmc test guest: up\n");
        power_off(0);
    }
    puts_serial("kvmc test guest: booted via ");
    puts_serial(b.protocol);
    puts_serial(" entry, running at CPL3\n");
    uint64_t ram = report_memory(&b);
    puts_serial("cmdline: ");
    puts_serial(b.cmdline);
    puts_serial("\n");
    report_initrd(&b);

    struct mp_cpus cpus = read_mp_table();
    puts_serial("cpus: ");
    put_dec(cpus.count);
    puts_serial(" in MP table\n");
    struct acpi_info acpi = read_acpi(&b);
    if (starts_with(mode, "ioapic-eoi"))
        ap_serve_irqs = 1; /* before they start: they halt for good otherwise */
    unsigned running = cpus.count > 1 ? start_aps(&cpus) : cpus.count;
    puts_serial("smp: ");
    put_dec(running);
    puts_serial(" of ");
    put_dec(cpus.count);
    puts_serial(" cpus running\n");

    char test[32] = "";
    cmdline_get(b.cmdline, "kvmc.test=", test, sizeof(test));
    if (starts_with(test, "reset")) {
        puts_serial("test: reset via i8042\n");
        outb(I8042_COMMAND, 0xfe);
    } else if (starts_with(test, "triplefault")) {
        puts_serial("test: triple fault\n");
        triple_fault();
    } else if (starts_with(test, "devices")) {
        test_devices();
    } else if (starts_with(test, "echo")) {
        test_echo();
    } else if (starts_with(test, "emulation-failure")) {
        puts_serial("test: emulation failure\n");
        emulation_failure();
    } else if (starts_with(test, "ioapic-eoi")) {
        test_ioapic_eoi(&cpus);
    } else if (starts_with(test, "irq")) {
        test_irq();
    } else if (starts_with(test, "ioapic")) {
        test_ioapic();
    } else if (starts_with(test, "pit")) {
        probe_pit();
    } else if (starts_with(test, "probe")) {
        probe_legacy_ports();
    } else if (starts_with(test, "acpi-poweroff")) {
        puts_serial("test: power off through ACPI S5\n");
        acpi_power_off(&acpi);
    } else if (starts_with(test, "panic")) {
        puts_serial("test: report a panic through pvpanic\n");
        outb(0x505, 1);
    } else if (starts_with(test, "pci-scribble")) {
        test_pci_scribble();
    } else if (starts_with(test, "pci")) {
        test_pci();
    } else if (starts_with(test, "scribble")) {
        scribble_platform();
        test_virtio_scribble();
    } else if (starts_with(test, "virtio-hostile")) {
        run_virtio_tests(true);
    } else if (starts_with(test, "virtio")) {
        run_virtio_tests(false);
    } else if (starts_with(test, "vconsole")) {
        test_virtio_console();
    } else if (starts_with(test, "vsock")) {
        test_virtio_vsock();
    } else if (starts_with(test, "notifybench")) {
        bench_virtio_notify(b.cmdline);
    } else if (starts_with(test, "disk-count")) {
        disk_count();
    } else if (starts_with(test, "blkbench")) {
        bench_virtio_blk(b.cmdline);
    } else if (starts_with(test, "netbench")) {
        bench_virtio_net(b.cmdline);
    } else if (starts_with(test, "net-ports:")) {
        test_virtio_net_ports(b.cmdline);
    } else if (starts_with(test, "net")) {
        test_virtio_net(b.cmdline);
    } else if (starts_with(test, "exits:")) {
        exit_loop(test + 6);
    } else if (starts_with(test, "flood")) {
        flood(b.cmdline);
    } else if (starts_with(test, "kbd")) {
        test_kbd();
    } else if (starts_with(test, "fail")) {
        puts_serial("test: reporting failure\n");
        power_off(7);
    }

    bool ok = ram > 0 && cpus.count > 0 && running == cpus.count && acpi.ok &&
              acpi.madt_cpus == cpus.count;
    puts_serial(ok ? "self-check: ok\n" : "self-check: FAILED\n");
    puts_serial("kvmc test guest: powering off\n");
    power_off(ok ? 0 : 1);
}
