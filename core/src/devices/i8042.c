/* Just enough of the i8042 keyboard controller for a guest to reset the
 * machine: writing 0xfe (pulse reset line) to the command port ends the VM
 * with KVMC_EXIT_RESET. Reads return "no data, ready" so probes stay quiet. */
#include "i8042.h"

#include "../bus.h"
#include "../services.h"
#include "../x86/layout.h"

#define I8042_DATA_PORT 0x60

static uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque, (void)offset, (void)size;
    return 0; /* status: output buffer empty, input buffer empty */
}

static void i8042_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    const struct vm_services *svc = opaque;
    (void)size;
    if (offset == PORT_I8042_COMMAND - I8042_DATA_PORT &&
        (value & 0xff) == I8042_CMD_RESET)
        services_exit(svc, KVMC_EXIT_RESET, 0,
                      "guest reset the machine through the i8042 controller");
}

static int i8042_create(const struct vm_services *svc, const kvmc_config *cfg, void **state)
{
    static const struct bus_ops ops = {.read = i8042_read, .write = i8042_write};
    (void)cfg, (void)state;
    /* 0x60..0x64; 0x61 belongs to the in-kernel PIT (speaker port), and KVM
     * handles it before it ever reaches user space. */
    return bus_add(svc->pio, I8042_DATA_PORT, 5, &ops, (void *)svc, "i8042");
}

const struct platform_device_type i8042_device = {.name = "i8042", .create = i8042_create};
