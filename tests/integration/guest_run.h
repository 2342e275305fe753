/* Boots a test guest through the public API and collects its console. */
#ifndef KVMC_TEST_GUEST_RUN_H
#define KVMC_TEST_GUEST_RUN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvmc/kvmc.h"

/* Zero-initialised is ready (glibc's PTHREAD_MUTEX_INITIALIZER is zeros).
 * While the VM runs, read it only through console_capture_wait: the
 * callback reallocates data on a vCPU thread. */
struct console_capture {
    pthread_mutex_t lock;
    char *data;
    size_t len, cap;
};

struct guest_spec {
    const char *kernel;   /* default: the test guest ELF */
    const char *initrd;
    const char *cmdline;
    uint64_t memory;      /* default 64 MiB */
    unsigned cpus;        /* default 1 */
    kvmc_boot_protocol boot;
    unsigned mem_flags;   /* KVMC_MEM_* */
    int timeout_ms;       /* default 20 s */
    bool pit;             /* kvmc_config_set_pit */
};

struct guest_result {
    int create_err;       /* KVMC_OK unless kvmc_vm_create failed */
    char create_msg[512];
    kvmc_exit_info exit;
    struct console_capture console;
};

void console_capture_fn(void *opaque, const uint8_t *data, size_t len);
/* Waits up to 20 s for text in the console; fails the test if it never comes. */
void console_capture_wait(struct console_capture *cap, const char *text);
/* Creates a config from spec; asserts on failure. */
kvmc_config *guest_config(const struct guest_spec *spec, struct console_capture *cap);
/* A created (not started) VM from spec; asserts on failure. */
kvmc_vm *guest_vm(const struct guest_spec *spec, struct console_capture *cap);
/* Boots, waits (asserting it ends within the timeout) and destroys. */
void run_guest(const struct guest_spec *spec, struct guest_result *res);
void guest_result_free(struct guest_result *res);
/* The value after "prefix" on the line that starts with it, or NULL. */
const char *console_line(const struct guest_result *res, const char *prefix,
                         char *buf, size_t buflen);
uint64_t fnv1a_file(const char *path);

#endif
