/* 16550A UART on COM1 (0x3f8, IRQ 4): the guest's console. Output goes to
 * the VM's console sink; input comes from the configured fd. */
#ifndef KVMC_SERIAL_H
#define KVMC_SERIAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../devmgr.h"

extern const struct platform_device_type serial_device;

/* A UART at any port and IRQ (tests and fuzzers use these directly). */
struct serial;
int serial_create(const struct vm_services *svc, uint16_t base, unsigned irq, int in_fd,
                  struct serial **out);
/* Starts the thread reading in_fd, if there is one. */
int serial_start_input(struct serial *s, bool seccomp);
void serial_destroy(struct serial *s);

#endif
