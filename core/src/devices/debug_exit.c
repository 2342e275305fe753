/* Power-off port for test guests and firmware-less kernels: a write of a
 * status byte to port 0x501 (the port QEMU's isa-debug-exit uses) ends the
 * VM with KVMC_EXIT_POWEROFF and that status as the exit code. */
#include <stdio.h>

#include "../x86/layout.h"
#include "../vm.h"

static void debug_exit_write(void *opaque, uint64_t offset, unsigned size,
                             uint64_t value)
{
    struct kvmc_vm *vm = opaque;
    (void)offset, (void)size;
    kvmc_exit_info info = {.reason = KVMC_EXIT_POWEROFF, .vcpu = -1,
                           .code = (int32_t)(value & 0xff)};
    snprintf(info.message, sizeof(info.message),
             "guest powered off with status %d", info.code);
    vm_request_exit(vm, &info);
}

int debug_exit_create(struct kvmc_vm *vm)
{
    static const kvmc_device_ops ops = {.write = debug_exit_write};
    return bus_add(&vm->pio, PORT_DEBUG_EXIT, 1, &ops, vm, "debug-exit");
}
