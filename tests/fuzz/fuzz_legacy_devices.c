/* libFuzzer: a hostile guest against the built-in platform devices, each
 * through the real bus as a vCPU exit reaches it: every platform device the
 * device manager creates for a default configuration (the 16550 serial port
 * on COM1, the i8042 reset line, the debug-exit port, ACPI PM sleep
 * registers, pvpanic), and kvmc's I/O APIC (with EOIs and pin changes in
 * between, as devices and the guest's local APIC would cause them). No KVM:
 * the devices get fake VM services, and the I/O APIC's MSIs go to a counter.
 *
 * Input: a list of 8-byte operations
 *   [op] [address lo] [address hi] [size] [value: 4 bytes LE]
 *   op % 6: 0 port write, 1 port read, 2 I/O APIC write, 3 I/O APIC read,
 *           4 pin change (pin = address % 32, level = value & 1) and EOI
 *           (vector = value >> 8), 5 the host presses Ctrl-Alt-Del on the
 *           i8042's keyboard (kvmc_vm_send_ctrl_alt_del).
 * Port addresses are taken near the devices' ports (see port_of), sizes
 * are 1, 2, 4 or 8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "console.h"
#include "devices/i8042.h"
#include "devices/ioapic.h"
#include "devmgr.h"
#include "guest_memory.h"
#include "kvmc/kvmc.h"
#include "services.h"
#include "x86/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned msis;

static int count_msi(void *ctx, const struct ioapic_msi *msi)
{
    (void)ctx, (void)msi;
    msis++;
    return 0;
}

static int accept_routes(void *ctx, const unsigned *pins, const struct ioapic_msi *m, unsigned n)
{
    (void)ctx, (void)m;
    for (unsigned i = 0; i < n; i++)
        if (pins[i] >= IOAPIC_PINS)
            abort(); /* a route for a pin that does not exist */
    return 0;
}

static void sink(void *opaque, const uint8_t *data, size_t len)
{
    (void)opaque;
    volatile uint8_t x = 0;
    for (size_t i = 0; i < len; i++)
        x ^= data[i];
}

/* Spreads the 16-bit address over the devices' ports and their edges. */
static uint16_t port_of(uint16_t a)
{
    static const uint16_t bases[] = {0x3f8, 0x60, 0x64, PORT_DEBUG_EXIT, PORT_PVPANIC,
                                     PORT_ACPI_SLEEP_CONTROL, 0x20, 0x40};
    return (uint16_t)(bases[a % 8] - 2 + (a >> 3) % 12);
}

struct shell {
    struct bus pio, mmio;
    struct guest_memory mem;
    struct console_out console;
    struct ioapic *ioapic;
    struct vm_services svc;
    struct devmgr devices;
    kvmc_config *cfg;
    unsigned exits;
};

static void shell_set_irq(void *ctx, unsigned gsi, int level)
{
    struct shell *sh = ctx;
    ioapic_set_irq(sh->ioapic, gsi, level);
}

static void shell_pulse_irq(void *ctx, unsigned gsi)
{
    struct shell *sh = ctx;
    ioapic_pulse(sh->ioapic, gsi);
}

static int shell_irqfd(void *ctx, int fd, unsigned gsi)
{
    (void)ctx, (void)fd, (void)gsi;
    return KVMC_ENOTSUP;
}

static int shell_ioeventfd(void *ctx, uint64_t addr, unsigned len, uint64_t match, int fd,
                           bool assign)
{
    (void)ctx, (void)addr, (void)len, (void)match, (void)fd, (void)assign;
    return KVMC_ENOTSUP;
}

static void shell_exit(void *ctx, const kvmc_exit_info *info)
{
    struct shell *sh = ctx;
    if (info->reason == KVMC_EXIT_NONE || !info->message[0])
        abort(); /* every exit says why */
    sh->exits++;
}

static struct shell *new_shell(void)
{
    struct shell *sh = calloc(1, sizeof(*sh));
    if (!sh)
        abort();
    const struct console_sink console = {.kind = CONSOLE_CALLBACK, .fn = sink, .fd = -1};
    struct ioapic_host host = {.signal_msi = count_msi, .set_level_routes = accept_routes};
    sh->ioapic = ioapic_new(&host);
    /* The device manager also builds the PCI root complex (on both buses)
     * above the guest's RAM: give it what a VM gives it. */
    if (!sh->ioapic || kvmc_config_new(&sh->cfg) || bus_init(&sh->pio, "PIO", 0) ||
        bus_init(&sh->mmio, "MMIO", 0) || gm_init(&sh->mem, KVMC_MIN_MEMORY, 0) ||
        console_out_init(&sh->console, &console, NULL, 0))
        abort();
    sh->svc = (struct vm_services){
        .mem = &sh->mem, .mmio = &sh->mmio, .pio = &sh->pio, .console = &sh->console, .set_irq = shell_set_irq,
        .pulse_irq = shell_pulse_irq, .irqfd = shell_irqfd, .ioeventfd = shell_ioeventfd,
        .request_exit = shell_exit, .ctx = sh,
    };
    if (devmgr_create(&sh->devices, &sh->svc, sh->cfg))
        abort();
    return sh;
}

static void free_shell(struct shell *sh)
{
    devmgr_destroy(&sh->devices);
    console_out_close(&sh->console);
    ioapic_free(sh->ioapic);
    bus_destroy(&sh->pio);
    bus_destroy(&sh->mmio);
    gm_destroy(&sh->mem);
    kvmc_config_free(sh->cfg);
    free(sh);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct shell *sh = new_shell();
    for (size_t at = 0; at + 8 <= size; at += 8) {
        const uint8_t *op = data + at;
        uint16_t addr = (uint16_t)(op[1] | op[2] << 8);
        unsigned width = 1u << (op[3] % 4);
        uint32_t value;
        memcpy(&value, op + 4, 4);
        uint64_t got;
        switch (op[0] % 6) {
        case 0: bus_write(&sh->pio, BUS_NO_READER, port_of(addr), width, value); break;
        case 1: bus_read(&sh->pio, BUS_NO_READER, port_of(addr), width, &got); break;
        case 2: ioapic_mmio_write(sh->ioapic, addr % IOAPIC_MMIO_SIZE, width, value); break;
        case 3: (void)ioapic_mmio_read(sh->ioapic, addr % IOAPIC_MMIO_SIZE, width); break;
        case 4:
            ioapic_set_irq(sh->ioapic, addr % 32, value & 1);
            ioapic_eoi(sh->ioapic, (uint8_t)(value >> 8));
            break;
        default:
            (void)i8042_ctrl_alt_del(devmgr_platform_impl(&sh->devices, &i8042_device));
            break;
        }
    }
    free_shell(sh);
    return 0;
}
