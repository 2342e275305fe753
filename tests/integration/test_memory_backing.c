/* Guest RAM backed by anonymous memory, a memfd, or hugetlbfs pages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "guest_run.h"

static void boot_with_flags(unsigned flags, uint64_t mem, struct guest_result *r)
{
    struct guest_spec spec = {.memory = mem, .mem_flags = flags};
    run_guest(&spec, r);
}

/* Makes sure at least `pages` 2 MiB hugepages are reserved (CI runs as root;
 * a machine where this is impossible fails the test, it does not skip). */
static void reserve_hugepages(long pages)
{
    FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r+");
    cr_assert_not_null(f, "cannot open /proc/sys/vm/nr_hugepages (run the tests as root)");
    long have = 0;
    cr_assert_eq(fscanf(f, "%ld", &have), 1);
    if (have < pages) {
        rewind(f);
        fprintf(f, "%ld\n", pages);
    }
    fclose(f);
    f = fopen("/proc/sys/vm/nr_hugepages", "r");
    cr_assert_eq(fscanf(f, "%ld", &have), 1);
    fclose(f);
    cr_assert_geq(have, pages, "could reserve only %ld hugepages", have);
}

Test(memory_backing, memfd)
{
    struct guest_result r;
    boot_with_flags(KVMC_MEM_MEMFD, 64ull << 20, &r);
    cr_assert_eq(r.create_err, KVMC_OK, "%s", r.create_msg);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "%s", r.exit.message);
    cr_assert(strstr(r.console.data, "self-check: ok"));
    guest_result_free(&r);
}

Test(memory_backing, hugetlb)
{
    reserve_hugepages(64);
    struct guest_result r;
    boot_with_flags(KVMC_MEM_MEMFD | KVMC_MEM_HUGEPAGES, 32ull << 20, &r);
    cr_assert_eq(r.create_err, KVMC_OK, "%s", r.create_msg);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "%s", r.exit.message);
    cr_assert(strstr(r.console.data, "memory: 33160192 bytes usable"), "%s", r.console.data);
    guest_result_free(&r);
}

Test(memory_backing, too_few_hugepages_is_a_clear_error)
{
    struct guest_result r;
    boot_with_flags(KVMC_MEM_HUGEPAGES, 8ull << 30, &r); /* 4096 pages */
    cr_assert_eq(r.create_err, KVMC_ENOMEM, "%d %s", r.create_err, r.create_msg);
    cr_assert(strstr(r.create_msg, "nr_hugepages"), "%s", r.create_msg);
    guest_result_free(&r);
}
