/* ACPI hardware-reduced sleep registers (FADT SLEEP_CONTROL_REG and
 * SLEEP_STATUS_REG). Writing SLP_EN with the S5 sleep type from the DSDT's
 * _S5_ object powers the VM off; other sleep states are not offered. */
#include "acpi_pm.h"

#include "../bus.h"
#include "../services.h"
#include "../x86/layout.h"

#define SLEEP_ENABLE 0x20
#define SLEEP_TYPE(v) (((v) >> 2) & 0x7)

static uint64_t acpi_pm_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque, (void)offset, (void)size;
    return 0; /* no wake status to report */
}

static void acpi_pm_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)size;
    if (offset != PORT_ACPI_SLEEP_CONTROL - PORT_ACPI_SLEEP_CONTROL)
        return;
    if ((value & SLEEP_ENABLE) && SLEEP_TYPE(value) == ACPI_S5_SLEEP_TYPE)
        services_exit(opaque, KVMC_EXIT_POWEROFF, 0, "guest powered off (ACPI S5)");
}

static int acpi_pm_create(const struct vm_services *svc, const kvmc_config *cfg, void **state)
{
    static const struct bus_ops ops = {.read = acpi_pm_read, .write = acpi_pm_write};
    (void)cfg, (void)state;
    return bus_add(svc->pio, PORT_ACPI_SLEEP_CONTROL, 2, &ops, (void *)svc, "acpi-sleep");
}

const struct platform_device_type acpi_pm_device = {.name = "acpi-sleep",
                                                    .create = acpi_pm_create};
