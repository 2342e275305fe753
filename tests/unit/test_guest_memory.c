#include <criterion/criterion.h>

#include "guest_memory.h"
#include "x86/layout.h"

Test(guest_memory, small_guest_is_one_region)
{
    struct guest_memory gm;
    cr_assert_eq(gm_init(&gm, 256ull << 20, 0), KVMC_OK);
    cr_assert_eq(gm.nregions, 1);
    cr_assert_eq(gm.regions[0].gpa, 0);
    cr_assert_eq(gm.regions[0].size, 256ull << 20);
    cr_assert_eq(gm_low_end(&gm), 256ull << 20);
    gm_destroy(&gm);
}

Test(guest_memory, large_guest_skips_the_32bit_hole)
{
    struct guest_memory gm;
    cr_assert_eq(gm_init(&gm, 5ull << 30, 0), KVMC_OK);
    cr_assert_eq(gm.nregions, 2);
    cr_assert_eq(gm.regions[0].size, LAYOUT_HOLE_START);
    cr_assert_eq(gm.regions[1].gpa, LAYOUT_HOLE_END);
    cr_assert_eq(gm.regions[1].size, (5ull << 30) - LAYOUT_HOLE_START);
    cr_assert_null(gm_ptr(&gm, LAYOUT_HOLE_START, 1), "hole is not RAM");
    cr_assert_null(gm_ptr(&gm, LAYOUT_HOLE_START - 1, 2), "no range across the hole");
    cr_assert_not_null(gm_ptr(&gm, LAYOUT_HOLE_END, 4096));
    cr_assert_eq((uint8_t *)gm_ptr(&gm, LAYOUT_HOLE_END, 1),
                 (uint8_t *)gm.mapping + LAYOUT_HOLE_START);
    gm_destroy(&gm);
}

Test(guest_memory, bounds_checks_are_overflow_safe)
{
    struct guest_memory gm;
    cr_assert_eq(gm_init(&gm, 16ull << 20, 0), KVMC_OK);
    uint64_t end = 16ull << 20;
    cr_assert_not_null(gm_ptr(&gm, end - 8, 8));
    cr_assert_null(gm_ptr(&gm, end - 8, 9));
    cr_assert_null(gm_ptr(&gm, end, 1));
    cr_assert_null(gm_ptr(&gm, 8, UINT64_MAX));
    cr_assert_null(gm_ptr(&gm, UINT64_MAX, 2));
    cr_assert_null(gm_ptr(&gm, UINT64_MAX - 7, 16));
    uint8_t buf[16] = {1, 2, 3};
    cr_assert_eq(gm_write(&gm, 0x1000, buf, sizeof(buf)), 0);
    uint8_t back[16];
    cr_assert_eq(gm_read(&gm, 0x1000, back, sizeof(back)), 0);
    cr_assert_arr_eq(buf, back, sizeof(buf));
    cr_assert_eq(gm_read(&gm, end - 4, back, 8), -1);
    gm_destroy(&gm);
}

Test(guest_memory, sizes_are_validated)
{
    struct guest_memory gm;
    cr_assert_eq(gm_init(&gm, 1ull << 20, 0), KVMC_EINVAL);
    cr_assert_eq(gm_init(&gm, (64ull << 20) + 4096, 0), KVMC_EINVAL);
}

Test(guest_memory, memfd_backing)
{
    struct guest_memory gm;
    cr_assert_eq(gm_init(&gm, 32ull << 20, KVMC_MEM_MEMFD), KVMC_OK);
    cr_assert(gm.memfd >= 0);
    cr_assert_eq(gm_write(&gm, 0x10, "x", 1), 0);
    gm_destroy(&gm);
    cr_assert_eq(gm.memfd, -1);
}
