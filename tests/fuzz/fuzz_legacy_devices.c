/* libFuzzer: a hostile guest against the built-in platform devices, each
 * through the real bus as a vCPU exit reaches it: the 16550 serial port
 * (COM1, IRQ 4), the i8042 reset line, the debug-exit port, ACPI PM sleep
 * registers, pvpanic, and kvmc's I/O APIC (with EOIs and pin changes in
 * between, as devices and the guest's local APIC would cause them). No KVM:
 * the VM is a shell with buses, and the I/O APIC's MSIs go to a counter.
 *
 * Input: a list of 8-byte operations
 *   [op] [address lo] [address hi] [size] [value: 4 bytes LE]
 *   op % 5: 0 port write, 1 port read, 2 I/O APIC write, 3 I/O APIC read,
 *           4 pin change (pin = address % 32, level = value & 1) and EOI
 *           (vector = value >> 8).
 * Port addresses are taken near the devices' ports (see port_of), sizes
 * are 1, 2, 4 or 8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/ioapic.h"
#include "x86/layout.h"
#include "vm.h"

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

static struct kvmc_vm *new_shell_vm(void)
{
    struct kvmc_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        abort();
    vm->kvm_fd = vm->vm_fd = -1;
    const struct console_sink console = {.kind = CONSOLE_CALLBACK, .fn = sink, .fd = -1};
    if (console_out_init(&vm->console, &console, NULL, 0))
        abort();
    bus_init(&vm->pio, "PIO");
    bus_init(&vm->mmio, "MMIO");
    pthread_mutex_init(&vm->lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    struct ioapic_host host = {.signal_msi = count_msi, .set_level_routes = accept_routes};
    vm->ioapic = ioapic_new(&host);
    if (!vm->ioapic || serial_create(vm, 0x3f8, 4, -1, &vm->serial) || i8042_create(vm) ||
        debug_exit_create(vm) || acpi_pm_create(vm) || pvpanic_create(vm))
        abort();
    return vm;
}

static void free_shell_vm(struct kvmc_vm *vm)
{
    serial_destroy(vm->serial);
    console_out_close(&vm->console);
    ioapic_free(vm->ioapic);
    bus_destroy(&vm->pio);
    bus_destroy(&vm->mmio);
    pthread_mutex_destroy(&vm->lock);
    pthread_cond_destroy(&vm->cond);
    free(vm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kvmc_vm *vm = new_shell_vm();
    for (size_t at = 0; at + 8 <= size; at += 8) {
        const uint8_t *op = data + at;
        uint16_t addr = (uint16_t)(op[1] | op[2] << 8);
        unsigned width = 1u << (op[3] % 4);
        uint32_t value;
        memcpy(&value, op + 4, 4);
        uint64_t got;
        switch (op[0] % 5) {
        case 0: bus_write(&vm->pio, port_of(addr), width, value); break;
        case 1: bus_read(&vm->pio, port_of(addr), width, &got); break;
        case 2: ioapic_mmio_write(vm->ioapic, addr % IOAPIC_MMIO_SIZE, width, value); break;
        case 3: (void)ioapic_mmio_read(vm->ioapic, addr % IOAPIC_MMIO_SIZE, width); break;
        default:
            kvmc_vm_set_irq_line(vm, addr % 32, value & 1);
            ioapic_eoi(vm->ioapic, (uint8_t)(value >> 8));
            break;
        }
    }
    free_shell_vm(vm);
    return 0;
}
