/* ACPI hardware-reduced sleep registers (FADT SLEEP_CONTROL_REG and
 * SLEEP_STATUS_REG). Writing SLP_EN with the S5 sleep type from the DSDT's
 * _S5_ object powers the VM off; other sleep states are not offered. */
#include <stdio.h>

#include "../x86/layout.h"
#include "../vm.h"

#define SLEEP_ENABLE 0x20
#define SLEEP_TYPE(v) (((v) >> 2) & 0x7)

static uint64_t acpi_pm_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque, (void)offset, (void)size;
    return 0; /* no wake status to report */
}

static void acpi_pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct kvmc_vm *vm = opaque;
    (void)size;
    if (offset != PORT_ACPI_SLEEP_CONTROL - PORT_ACPI_SLEEP_CONTROL)
        return;
    if ((value & SLEEP_ENABLE) && SLEEP_TYPE(value) == ACPI_S5_SLEEP_TYPE) {
        kvmc_exit_info info = {.reason = KVMC_EXIT_POWEROFF, .vcpu = -1};
        snprintf(info.message, sizeof(info.message), "guest powered off (ACPI S5)");
        vm_request_exit(vm, &info);
    }
}

int acpi_pm_create(struct kvmc_vm *vm)
{
    static const kvmc_device_ops ops = {.read = acpi_pm_read, .write = acpi_pm_write};
    return bus_add(&vm->pio, PORT_ACPI_SLEEP_CONTROL, 2, &ops, vm, "acpi-sleep");
}
