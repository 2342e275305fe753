/* Power-off port 0x501 (QEMU isa-debug-exit compatible). */
#ifndef KVMC_DEBUG_EXIT_H
#define KVMC_DEBUG_EXIT_H

#include "../devmgr.h"

extern const struct platform_device_type debug_exit_device;

#endif
