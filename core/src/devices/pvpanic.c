/* pvpanic (QEMU0001 in the DSDT, port 0x505): Linux's pvpanic driver writes
 * PANICKED here from its panic notifier, so a guest kernel panic ends the VM
 * with KVMC_EXIT_GUEST_PANIC instead of looking like a reset. */
#include "pvpanic.h"

#include "../bus.h"
#include "../services.h"
#include "../x86/layout.h"

#define PVPANIC_PANICKED 0x1
#define PVPANIC_CRASH_LOADED 0x2 /* a crash kernel takes over: keep running */

static uint64_t pvpanic_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque, (void)offset, (void)size;
    return PVPANIC_PANICKED | PVPANIC_CRASH_LOADED; /* the events we accept */
}

static void pvpanic_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    (void)offset, (void)size;
    if (value & PVPANIC_PANICKED)
        services_exit(opaque, KVMC_EXIT_GUEST_PANIC, 0,
                      "guest kernel panicked (pvpanic event 0x%llx)",
                      (unsigned long long)value);
}

static int pvpanic_create(const struct vm_services *svc, const kvmc_config *cfg, void **state)
{
    static const struct bus_ops ops = {.read = pvpanic_read, .write = pvpanic_write};
    (void)cfg, (void)state;
    return bus_add(svc->pio, PORT_PVPANIC, 1, &ops, (void *)svc, "pvpanic");
}

const struct platform_device_type pvpanic_device = {.name = "pvpanic",
                                                    .create = pvpanic_create};
