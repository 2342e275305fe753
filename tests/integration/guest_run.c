#include "guest_run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void console_capture_fn(void *opaque, const uint8_t *data, size_t len)
{
    struct console_capture *c = opaque;
    pthread_mutex_lock(&c->lock);
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4096;
        while (cap < c->len + len + 1)
            cap *= 2;
        c->data = realloc(c->data, cap);
        cr_assert_not_null(c->data);
        c->cap = cap;
    }
    memcpy(c->data + c->len, data, len);
    c->len += len;
    c->data[c->len] = '\0';
    pthread_mutex_unlock(&c->lock);
}

void console_capture_wait(struct console_capture *cap, const char *text)
{
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&cap->lock);
        bool seen = cap->data && strstr(cap->data, text);
        pthread_mutex_unlock(&cap->lock);
        if (seen)
            return;
        usleep(10000);
    }
    cr_assert_fail("guest never printed '%s'", text);
}

kvmc_config *guest_config(const struct guest_spec *spec, struct console_capture *cap)
{
    kvmc_config *cfg = NULL;
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_kernel(cfg, spec->kernel ? spec->kernel : KVMC_TEST_GUEST_ELF),
                 KVMC_OK, "%s", kvmc_last_error());
    if (spec->initrd)
        cr_assert_eq(kvmc_config_set_initrd(cfg, spec->initrd), KVMC_OK);
    if (spec->cmdline)
        cr_assert_eq(kvmc_config_set_cmdline(cfg, spec->cmdline), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory(cfg, spec->memory ? spec->memory : 64ull << 20),
                 KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_config_set_cpus(cfg, spec->cpus ? spec->cpus : 1), KVMC_OK);
    cr_assert_eq(kvmc_config_set_boot_protocol(cfg, spec->boot), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory_flags(cfg, spec->mem_flags), KVMC_OK);
    cr_assert_eq(kvmc_config_set_pit(cfg, spec->pit), KVMC_OK);
    if (cap)
        cr_assert_eq(kvmc_config_set_console_callback(cfg, console_capture_fn, cap), KVMC_OK);
    return cfg;
}

kvmc_vm *guest_vm(const struct guest_spec *spec, struct console_capture *cap)
{
    kvmc_config *cfg = guest_config(spec, cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    return vm;
}

void run_guest(const struct guest_spec *spec, struct guest_result *res)
{
    memset(res, 0, sizeof(*res));
    kvmc_config *cfg = guest_config(spec, &res->console);
    kvmc_vm *vm = NULL;
    res->create_err = kvmc_vm_create(cfg, &vm);
    kvmc_config_free(cfg);
    if (res->create_err) {
        snprintf(res->create_msg, sizeof(res->create_msg), "%s", kvmc_last_error());
        return;
    }
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK, "%s", kvmc_last_error());
    int timeout = spec->timeout_ms ? spec->timeout_ms : 20000;
    int err = kvmc_vm_wait(vm, timeout, &res->exit);
    cr_assert_eq(err, KVMC_OK, "guest did not finish in %d ms; console so far:\n%s",
                 timeout, res->console.data ? res->console.data : "");
    kvmc_vm_destroy(vm);
}

void guest_result_free(struct guest_result *res)
{
    free(res->console.data);
    res->console.data = NULL;
}

const char *console_line(const struct guest_result *res, const char *prefix,
                         char *buf, size_t buflen)
{
    const char *p = res->console.data;
    size_t plen = strlen(prefix);
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n >= plen && strncmp(p, prefix, plen) == 0) {
            size_t v = n - plen < buflen - 1 ? n - plen : buflen - 1;
            memcpy(buf, p + plen, v);
            buf[v] = '\0';
            return buf;
        }
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

uint64_t fnv1a_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    uint64_t h = 0xcbf29ce484222325ull;
    int c;
    while ((c = fgetc(f)) != EOF) {
        h ^= (uint8_t)c;
        h *= 0x100000001b3ull;
    }
    fclose(f);
    return h;
}
