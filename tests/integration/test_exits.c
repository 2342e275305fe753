/* How a run ends: reset and power-off are clean; a triple fault is an error
 * with the registers of the vCPU that failed. */
#include <criterion/criterion.h>
#include <string.h>

#include "guest_run.h"

static void run_test_mode(const char *kernel, const char *mode, struct guest_result *r)
{
    struct guest_spec spec = {.kernel = kernel, .cmdline = mode};
    run_guest(&spec, r);
    cr_assert_eq(r->create_err, KVMC_OK, "%s", r->create_msg);
}

Test(exits, i8042_reset_ends_vm_pvh)
{
    struct guest_result r;
    run_test_mode(KVMC_TEST_GUEST_ELF, "kvmc.test=reset", &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_RESET, "%s", r.exit.message);
    cr_assert(strstr(r.console.data, "test: reset via i8042\n"));
    cr_assert_null(strstr(r.console.data, "powering off"), "guest ran on after the reset");
    guest_result_free(&r);
}

Test(exits, i8042_reset_ends_vm_linux)
{
    struct guest_result r;
    run_test_mode(KVMC_TEST_GUEST_BZIMAGE, "kvmc.test=reset", &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_RESET, "%s", r.exit.message);
    guest_result_free(&r);
}

Test(exits, triple_fault_is_an_error_with_registers)
{
    struct guest_result r;
    run_test_mode(KVMC_TEST_GUEST_ELF, "kvmc.test=triplefault", &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_TRIPLE_FAULT, "%s", r.exit.message);
    cr_assert_eq(r.exit.vcpu, 0);
    cr_assert(r.exit.rip >= 0x100000 && r.exit.rip < 0x200000, "rip 0x%llx",
              (unsigned long long)r.exit.rip);
    cr_assert_eq(r.exit.cs & 3, 3, "the fault happened at CPL3, cs 0x%x", r.exit.cs);
    cr_assert(r.exit.efer & 0x400, "long mode active at the fault");
    cr_assert(strstr(r.exit.message, "triple fault"), "%s", r.exit.message);
    cr_assert(strstr(r.exit.message, "RIP 0x"), "%s", r.exit.message);
    guest_result_free(&r);
}

Test(exits, triple_fault_with_smp)
{
    struct guest_spec spec = {.cmdline = "kvmc.test=triplefault", .cpus = 2};
    struct guest_result r;
    run_guest(&spec, &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_TRIPLE_FAULT, "%s", r.exit.message);
    guest_result_free(&r);
}

Test(exits, guest_failure_status_is_reported)
{
    struct guest_result r;
    run_test_mode(KVMC_TEST_GUEST_ELF, "kvmc.test=fail", &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF);
    cr_assert_eq(r.exit.code, 7);
    guest_result_free(&r);
}

Test(exits, clean_poweroff_has_status_zero)
{
    struct guest_result r;
    run_test_mode(KVMC_TEST_GUEST_ELF, NULL, &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF);
    cr_assert_eq(r.exit.code, 0);
    cr_assert(strstr(r.console.data, "kvmc test guest: powering off\n"));
    guest_result_free(&r);
}

Test(exits, emulation_failure_is_an_error_with_registers)
{
    struct guest_result r;
    run_test_mode(KVMC_TEST_GUEST_ELF, "kvmc.test=emulation-failure", &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_INTERNAL_ERROR, "%s", r.exit.message);
    cr_assert_eq(r.exit.code, 1, "suberror KVM_INTERNAL_ERROR_EMULATION");
    cr_assert(strstr(r.exit.message, "instruction emulation failed"), "%s", r.exit.message);
    cr_assert(r.exit.rip >= 0x100000 && r.exit.rip < 0x200000);
    guest_result_free(&r);
}

static void assert_acpi_poweroff(const char *kernel)
{
    struct guest_result r;
    run_test_mode(kernel, "kvmc.test=acpi-poweroff", &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "%s", r.exit.message);
    cr_assert_eq(r.exit.code, 0);
    cr_assert(strstr(r.exit.message, "ACPI S5"), "%s", r.exit.message);
    guest_result_free(&r);
}

Test(exits, acpi_s5_poweroff_pvh) { assert_acpi_poweroff(KVMC_TEST_GUEST_ELF); }
Test(exits, acpi_s5_poweroff_linux) { assert_acpi_poweroff(KVMC_TEST_GUEST_BZIMAGE); }

Test(exits, pvpanic_reports_a_guest_panic)
{
    struct guest_result r;
    run_test_mode(KVMC_TEST_GUEST_ELF, "kvmc.test=panic", &r);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_GUEST_PANIC, "%s", r.exit.message);
    cr_assert(strstr(r.exit.message, "panicked"), "%s", r.exit.message);
    guest_result_free(&r);
}
