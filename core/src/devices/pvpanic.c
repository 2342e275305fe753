/* pvpanic (QEMU0001 in the DSDT, port 0x505): Linux's pvpanic driver writes
 * PANICKED here from its panic notifier, so a guest kernel panic ends the VM
 * with KVMC_EXIT_GUEST_PANIC instead of looking like a reset. */
#include <stdio.h>

#include "../x86/layout.h"
#include "../vm.h"

#define PVPANIC_PANICKED 0x1
#define PVPANIC_CRASH_LOADED 0x2 /* a crash kernel takes over: keep running */

static uint64_t pvpanic_read(void *opaque, uint64_t offset, unsigned size)
{
    (void)opaque, (void)offset, (void)size;
    return PVPANIC_PANICKED | PVPANIC_CRASH_LOADED; /* the events we accept */
}

static void pvpanic_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct kvmc_vm *vm = opaque;
    (void)offset, (void)size;
    if (value & PVPANIC_PANICKED) {
        kvmc_exit_info info = {.reason = KVMC_EXIT_GUEST_PANIC, .vcpu = -1};
        snprintf(info.message, sizeof(info.message),
                 "guest kernel panicked (pvpanic event 0x%llx)", (unsigned long long)value);
        vm_request_exit(vm, &info);
    }
}

int pvpanic_create(struct kvmc_vm *vm)
{
    static const kvmc_device_ops ops = {.read = pvpanic_read, .write = pvpanic_write};
    return bus_add(&vm->pio, PORT_PVPANIC, 1, &ops, vm, "pvpanic");
}
