#include <criterion/criterion.h>
#include <string.h>

#include "kvmc/kvmc.h"

Test(config, setters_validate_and_name_the_problem)
{
    kvmc_config *cfg = NULL;
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory(cfg, 1u << 20), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "below the minimum"), "%s", kvmc_last_error());
    cr_assert_eq(kvmc_config_set_memory(cfg, (64u << 20) + 1), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "multiple of 1 MiB"));
    cr_assert_eq(kvmc_config_set_memory(cfg, 64u << 20), KVMC_OK);
    cr_assert_eq(kvmc_config_set_cpus(cfg, 0), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_cpus(cfg, 4), KVMC_OK);
    cr_assert_eq(kvmc_config_set_memory_flags(cfg, 0x80), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_boot_protocol(cfg, (kvmc_boot_protocol)7), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_kernel(cfg, ""), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_kernel_image(cfg, NULL, 10), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_console_file(cfg, NULL), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_kernel(NULL, "x"), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_new(NULL), KVMC_EINVAL);
    kvmc_config_free(cfg);
    kvmc_config_free(NULL);
}

Test(config, errors_are_thread_local_and_codes_have_names)
{
    cr_assert_str_eq(kvmc_strerror(KVMC_EBUSY), "range already in use");
    cr_assert_str_eq(kvmc_strerror(12345), "unknown error");
    cr_assert_str_eq(kvmc_version_string(), KVMC_VERSION_STRING);
}

Test(config, exit_reason_names_are_one_spelling)
{
    const char *want[] = {"none", "poweroff", "reset", "stopped", "triple_fault",
                          "internal_error", "fail_entry", "vmm_error", "guest_panic"};
    for (int r = KVMC_EXIT_NONE; r <= KVMC_EXIT_GUEST_PANIC; r++)
        cr_assert_str_eq(kvmc_exit_reason_name((kvmc_exit_reason)r), want[r]);
    cr_assert_str_eq(kvmc_exit_reason_name((kvmc_exit_reason)99), "unknown");
    cr_assert_str_eq(kvmc_exit_reason_name((kvmc_exit_reason)-1), "unknown");
}
