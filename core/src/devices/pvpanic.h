/* pvpanic (QEMU0001, port 0x505): a guest panic ends the VM. */
#ifndef KVMC_PVPANIC_H
#define KVMC_PVPANIC_H

#include "../devmgr.h"

extern const struct platform_device_type pvpanic_device;

#endif
