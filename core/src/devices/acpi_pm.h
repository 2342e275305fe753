/* ACPI hardware-reduced sleep registers: S5 powers the VM off. */
#ifndef KVMC_ACPI_PM_H
#define KVMC_ACPI_PM_H

#include "../devmgr.h"

extern const struct platform_device_type acpi_pm_device;

#endif
