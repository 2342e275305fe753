/* i8042 keyboard controller with an AT keyboard (0x60-0x64, IRQ 1): the
 * guest's reset line and the host's Ctrl-Alt-Del. */
#ifndef KVMC_I8042_H
#define KVMC_I8042_H

#include "../devmgr.h"

extern const struct platform_device_type i8042_device;

/* Presses Ctrl, Alt and Del (make codes of scan code set 2) on the
 * keyboard, interrupting on IRQ 1 if the guest enabled it. Any thread.
 * KVMC_EBUSY when the guest has left earlier keys unread. */
int i8042_ctrl_alt_del(void *state);

#endif
