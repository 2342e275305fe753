/* i8042 keyboard controller, as far as resetting the machine goes (0x60-0x64). */
#ifndef KVMC_I8042_H
#define KVMC_I8042_H

#include "../devmgr.h"

extern const struct platform_device_type i8042_device;

#endif
