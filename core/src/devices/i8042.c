/* Just enough of the i8042 keyboard controller for a guest to reset the
 * machine: writing 0xfe (pulse reset line) to the command port ends the VM
 * with KVMC_EXIT_RESET. Reads return "no data, ready" so probes stay quiet. */
#include <stdio.h>

#include "../x86/layout.h"
#include "../vm.h"

#define I8042_DATA_PORT 0x60

static uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque, (void)offset, (void)size;
    return 0; /* status: output buffer empty, input buffer empty */
}

static void i8042_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct kvmc_vm *vm = opaque;
    (void)size;
    if (offset == PORT_I8042_COMMAND - I8042_DATA_PORT &&
        (value & 0xff) == I8042_CMD_RESET) {
        kvmc_exit_info info = {.reason = KVMC_EXIT_RESET, .vcpu = -1};
        snprintf(info.message, sizeof(info.message),
                 "guest reset the machine through the i8042 controller");
        vm_request_exit(vm, &info);
    }
}

int i8042_create(struct kvmc_vm *vm)
{
    static const kvmc_device_ops ops = {.read = i8042_read, .write = i8042_write};
    /* 0x60..0x64; 0x61 belongs to the in-kernel PIT (speaker port), and KVM
     * handles it before it ever reaches user space. */
    return bus_add(&vm->pio, I8042_DATA_PORT, 5, &ops, vm, "i8042");
}
