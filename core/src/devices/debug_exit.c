/* Power-off port for test guests and firmware-less kernels: a write of a
 * status byte to port 0x501 (the port QEMU's isa-debug-exit uses) ends the
 * VM with KVMC_EXIT_POWEROFF and that status as the exit code. */
#include "debug_exit.h"

#include "../bus.h"
#include "../services.h"
#include "../x86/layout.h"

static void debug_exit_write(void *opaque, uint64_t offset, unsigned size,
                             uint64_t value)
{
    int32_t status = (int32_t)(value & 0xff);
    (void)offset, (void)size;
    services_exit(opaque, KVMC_EXIT_POWEROFF, status, "guest powered off with status %d",
                  status);
}

static int debug_exit_create(const struct vm_services *svc, const kvmc_config *cfg,
                             void **state)
{
    static const struct bus_ops ops = {.write = debug_exit_write};
    (void)cfg, (void)state;
    return bus_add(svc->pio, PORT_DEBUG_EXIT, 1, &ops, (void *)svc, "debug-exit");
}

const struct platform_device_type debug_exit_device = {
    .name = "debug-exit", .create = debug_exit_create};
