/* Both entry paths (PVH note and Linux 64-bit boot protocol, from an ELF and
 * from a bzImage) deliver the memory map, command line and initrd the guest
 * was configured with. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest_run.h"

static void assert_clean_poweroff(const struct guest_result *r)
{
    cr_assert_eq(r->create_err, KVMC_OK, "create failed: %s", r->create_msg);
    cr_assert_eq(r->exit.reason, KVMC_EXIT_POWEROFF, "exit: %s\nconsole:\n%s",
                 r->exit.message, r->console.data);
    cr_assert_eq(r->exit.code, 0, "guest status %d; console:\n%s", r->exit.code,
                 r->console.data);
    cr_assert(strstr(r->console.data, "self-check: ok\n"), "console:\n%s", r->console.data);
}

static void assert_entry(const char *kernel, kvmc_boot_protocol boot, const char *expect)
{
    struct guest_spec spec = {.kernel = kernel, .boot = boot};
    struct guest_result r;
    run_guest(&spec, &r);
    assert_clean_poweroff(&r);
    char line[128];
    cr_assert_not_null(console_line(&r, "kvmc test guest: booted via ", line, sizeof(line)));
    cr_assert_str_eq(line, expect);
    guest_result_free(&r);
}

Test(boot, pvh_entry_from_elf_note)
{
    assert_entry(KVMC_TEST_GUEST_ELF, KVMC_BOOT_AUTO, "PVH entry, running at CPL3");
}

Test(boot, linux_64bit_entry_from_bzimage)
{
    assert_entry(KVMC_TEST_GUEST_BZIMAGE, KVMC_BOOT_AUTO, "Linux 64-bit entry, running at CPL3");
}

Test(boot, linux_64bit_entry_from_elf)
{
    assert_entry(KVMC_TEST_GUEST_ELF, KVMC_BOOT_LINUX, "Linux 64-bit entry, running at CPL3");
}

Test(boot, pvh_forced_on_elf)
{
    assert_entry(KVMC_TEST_GUEST_ELF, KVMC_BOOT_PVH, "PVH entry, running at CPL3");
}

/* The guest prints "e820: 0xSTART-0xEND ram|reserved" per entry. */
static void assert_e820(const char *kernel, uint64_t mem, const char *const *expected,
                        uint64_t usable)
{
    struct guest_spec spec = {.kernel = kernel, .memory = mem};
    struct guest_result r;
    run_guest(&spec, &r);
    assert_clean_poweroff(&r);
    char want[2048] = "";
    for (unsigned i = 0; expected[i]; i++) {
        strcat(want, "e820: ");
        strcat(want, expected[i]);
        strcat(want, "\n");
    }
    cr_assert(strstr(r.console.data, want), "expected memory map:\n%s\nconsole:\n%s", want,
              r.console.data);
    char line[128], expect_mem[64];
    snprintf(expect_mem, sizeof(expect_mem), "%" PRIu64 " bytes usable", usable);
    cr_assert_not_null(console_line(&r, "memory: ", line, sizeof(line)));
    cr_assert(strncmp(line, expect_mem, strlen(expect_mem)) == 0, "memory: %s, want %s", line,
              expect_mem);
    guest_result_free(&r);
}

static const char *const map_256m[] = {
    "0x0000000000000000-0x000000000009fc00 ram",
    "0x000000000009fc00-0x00000000000a0000 reserved",
    "0x00000000000e0000-0x0000000000100000 reserved",
    "0x0000000000100000-0x0000000010000000 ram",
    "0x00000000e0000000-0x00000000e0100000 reserved", /* PCI ECAM */
    NULL,
};
#define USABLE(mem) (0x9fc00ull + (mem) - 0x100000ull)

Test(boot, e820_256m_pvh)
{
    assert_e820(KVMC_TEST_GUEST_ELF, 256ull << 20, map_256m, USABLE(256ull << 20));
}

Test(boot, e820_256m_linux)
{
    assert_e820(KVMC_TEST_GUEST_BZIMAGE, 256ull << 20, map_256m, USABLE(256ull << 20));
}

/* Above 3 GiB the RAM continues at 4 GiB, past the 32-bit MMIO hole. */
static const char *const map_5g[] = {
    "0x0000000000000000-0x000000000009fc00 ram",
    "0x000000000009fc00-0x00000000000a0000 reserved",
    "0x00000000000e0000-0x0000000000100000 reserved",
    "0x0000000000100000-0x00000000c0000000 ram",
    "0x00000000e0000000-0x00000000e0100000 reserved", /* PCI ECAM */
    "0x0000000100000000-0x0000000180000000 ram",
    NULL,
};

Test(boot, e820_5g_has_pci_hole_pvh)
{
    assert_e820(KVMC_TEST_GUEST_ELF, 5ull << 30, map_5g, USABLE(5ull << 30));
}

Test(boot, e820_5g_has_pci_hole_linux)
{
    assert_e820(KVMC_TEST_GUEST_BZIMAGE, 5ull << 30, map_5g, USABLE(5ull << 30));
}

static void assert_cmdline(const char *kernel)
{
    const char *cmdline = "console=ttyS0 kvmc.marker=5f3a quiet  spaced";
    struct guest_spec spec = {.kernel = kernel, .cmdline = cmdline};
    struct guest_result r;
    run_guest(&spec, &r);
    assert_clean_poweroff(&r);
    char line[256];
    cr_assert_not_null(console_line(&r, "cmdline: ", line, sizeof(line)));
    cr_assert_str_eq(line, cmdline);
    guest_result_free(&r);
}

Test(boot, cmdline_seen_by_guest_pvh) { assert_cmdline(KVMC_TEST_GUEST_ELF); }
Test(boot, cmdline_seen_by_guest_linux) { assert_cmdline(KVMC_TEST_GUEST_BZIMAGE); }

/* A 300 KiB initrd of pseudo-random bytes; the guest hashes what it got. */
static char *make_initrd(size_t size)
{
    char *path = strdup("/tmp/kvmc-initrd-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    uint8_t *buf = malloc(size);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    cr_assert_eq(write(fd, buf, size), (ssize_t)size);
    close(fd);
    free(buf);
    return path;
}

static void assert_initrd(const char *kernel)
{
    const size_t size = 300 * 1024 + 7;
    char *path = make_initrd(size);
    struct guest_spec spec = {.kernel = kernel, .initrd = path};
    struct guest_result r;
    run_guest(&spec, &r);
    assert_clean_poweroff(&r);
    char line[256], want_size[64], want_hash[64];
    cr_assert_not_null(console_line(&r, "initrd: ", line, sizeof(line)), "%s", r.console.data);
    snprintf(want_size, sizeof(want_size), "%zu bytes at ", size);
    snprintf(want_hash, sizeof(want_hash), "fnv1a 0x%016" PRIx64, fnv1a_file(path));
    cr_assert(strncmp(line, want_size, strlen(want_size)) == 0, "initrd line: %s", line);
    cr_assert(strstr(line, want_hash), "initrd line: %s, want %s", line, want_hash);
    unlink(path);
    free(path);
    guest_result_free(&r);
}

Test(boot, initrd_contents_seen_by_guest_pvh) { assert_initrd(KVMC_TEST_GUEST_ELF); }
Test(boot, initrd_contents_seen_by_guest_linux) { assert_initrd(KVMC_TEST_GUEST_BZIMAGE); }

Test(boot, no_initrd_reported_as_none)
{
    struct guest_spec spec = {0};
    struct guest_result r;
    run_guest(&spec, &r);
    char line[64];
    cr_assert_not_null(console_line(&r, "initrd: ", line, sizeof(line)));
    cr_assert_str_eq(line, "none");
    guest_result_free(&r);
}
