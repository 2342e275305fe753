/* Bad kernels, initrds and sizes get a clear error naming the problem, and
 * never a crash. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest_run.h"

static char *write_temp(const void *data, size_t len)
{
    char *path = strdup("/tmp/kvmc-bad-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static void *read_prefix(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    void *buf = malloc(*len);
    *len = fread(buf, 1, *len, f);
    fclose(f);
    return buf;
}

/* Creating a VM from `kernel` fails with err and a message containing want. */
static void assert_create_fails(struct guest_spec *spec, int err, const char *want)
{
    struct guest_result r;
    run_guest(spec, &r);
    cr_assert_eq(r.create_err, err, "got %d (%s), want %d", r.create_err, r.create_msg, err);
    cr_assert(strstr(r.create_msg, want), "message '%s' lacks '%s'", r.create_msg, want);
    guest_result_free(&r);
}

/* Writes data as a temporary kernel and asserts kvmc refuses it. */
static void assert_kernel_rejected(const void *data, size_t len, int err, const char *want)
{
    char *path = write_temp(data, len);
    struct guest_spec spec = {.kernel = path};
    assert_create_fails(&spec, err, want);
    unlink(path);
    free(path);
}

/* The first len bytes of image, byte `poke` set to 0 if poke >= 0, must be refused. */
static void assert_prefix_rejected(const char *image, size_t len, long poke, int err,
                                   const char *want)
{
    uint8_t *head = read_prefix(image, &len);
    if (poke >= 0)
        head[poke] = 0;
    assert_kernel_rejected(head, len, err, want);
    free(head);
}

Test(bad_inputs, missing_kernel_file)
{
    struct guest_spec spec = {.kernel = "/nonexistent/vmlinuz"};
    assert_create_fails(&spec, KVMC_EIO, "/nonexistent/vmlinuz: No such file");
}

Test(bad_inputs, kernel_is_a_directory)
{
    struct guest_spec spec = {.kernel = "/tmp"};
    assert_create_fails(&spec, KVMC_EIO, "not a regular file");
}

Test(bad_inputs, kernel_is_not_a_kernel)
{
    const char text[] = "#!/bin/sh\necho this is not a kernel\n";
    assert_kernel_rejected(text, sizeof(text), KVMC_EFORMAT, "not a Linux bzImage or ELF kernel");
}

Test(bad_inputs, empty_kernel)
{
    assert_kernel_rejected("", 0, KVMC_EFORMAT, "file is empty");
}

Test(bad_inputs, truncated_bzimage)
{
    /* the setup sectors only, no payload */
    assert_prefix_rejected(KVMC_TEST_GUEST_BZIMAGE, 1024, -1, KVMC_EFORMAT, "truncated");
}

Test(bad_inputs, bzimage_without_64bit_entry)
{
    /* byte 0x236 holds XLF_KERNEL_64 */
    assert_prefix_rejected(KVMC_TEST_GUEST_BZIMAGE, 1 << 20, 0x236, KVMC_ENOTSUP,
                           "no 64-bit entry point");
}

Test(bad_inputs, truncated_elf)
{
    /* header kept, program headers cut off */
    assert_prefix_rejected(KVMC_TEST_GUEST_ELF, 200, -1, KVMC_EFORMAT, "ELF");
}

Test(bad_inputs, pvh_forced_on_bzimage)
{
    struct guest_spec spec = {.kernel = KVMC_TEST_GUEST_BZIMAGE, .boot = KVMC_BOOT_PVH};
    assert_create_fails(&spec, KVMC_EINVAL, "PVH boot needs an ELF kernel");
}

Test(bad_inputs, initrd_larger_than_memory)
{
    size_t size = 20u << 20;
    void *big = calloc(1, size);
    char *path = write_temp(big, size);
    struct guest_spec spec = {.initrd = path, .memory = 16ull << 20};
    assert_create_fails(&spec, KVMC_EINVAL, "initrd");
    unlink(path);
    free(path);
    free(big);
}

Test(bad_inputs, memory_larger_than_host)
{
    struct guest_spec spec = {.memory = 1ull << 50};
    assert_create_fails(&spec, KVMC_EINVAL, "more than the host's");
}

Test(bad_inputs, cmdline_too_long_for_kernel)
{
    char *cmdline = malloc(5000);
    memset(cmdline, 'x', 4999);
    cmdline[4999] = '\0';
    struct guest_spec spec = {.kernel = KVMC_TEST_GUEST_BZIMAGE, .cmdline = cmdline};
    assert_create_fails(&spec, KVMC_EINVAL, "command line is 4999 bytes");
    free(cmdline);
}

Test(bad_inputs, too_many_cpus_for_kvm)
{
    kvmc_config *cfg = NULL;
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_cpus(cfg, 0), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "cpus 0"), "%s", kvmc_last_error());
    cr_assert_eq(kvmc_config_set_cpus(cfg, KVMC_MAX_VCPUS + 1), KVMC_EINVAL);
    kvmc_config_free(cfg);
}

/* Without a kernel the VM is created empty (for kvmc_vm_restore) and
 * refuses to start, saying why. */
Test(bad_inputs, no_kernel_configured)
{
    kvmc_config *cfg = NULL;
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory(cfg, 16u << 20), KVMC_OK);
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(vm), KVMC_ESTATE);
    cr_assert(strstr(kvmc_last_error(), "no kernel and no snapshot"), "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_get_state(vm), KVMC_STATE_CREATED);
    kvmc_vm_destroy(vm);
    kvmc_config_free(cfg);
}
