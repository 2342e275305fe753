/* The MP table describes every vCPU and each one runs: the guest starts the
 * application processors with INIT/SIPI and each reports its APIC ID. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "guest_run.h"

/* Criterion copies parameters into a re-executed worker: no pointers. */
enum kernel_kind { ELF, BZIMAGE };
struct smp_case {
    enum kernel_kind kernel;
    unsigned cpus;
};

ParameterizedTestParameters(smp, all_cpus_run)
{
    static struct smp_case cases[] = {
        {ELF, 1}, {ELF, 2}, {ELF, 4}, {BZIMAGE, 2}, {BZIMAGE, 3}, {ELF, 8},
        {ELF, 41}, {BZIMAGE, 64}, /* past what the EBDA held: the table lives above it */
    };
    return cr_make_param_array(struct smp_case, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct smp_case *c, smp, all_cpus_run)
{
    struct guest_spec spec = {
        .kernel = c->kernel == ELF ? KVMC_TEST_GUEST_ELF : KVMC_TEST_GUEST_BZIMAGE,
        .cpus = c->cpus};
    struct guest_result r;
    run_guest(&spec, &r);
    cr_assert_eq(r.create_err, KVMC_OK, "%s", r.create_msg);
    char line[128], want[128];
    cr_assert_not_null(console_line(&r, "cpus: ", line, sizeof(line)), "%s", r.console.data);
    snprintf(want, sizeof(want), "%u in MP table", c->cpus);
    cr_assert_str_eq(line, want);
    cr_assert_not_null(console_line(&r, "smp: ", line, sizeof(line)), "%s", r.console.data);
    snprintf(want, sizeof(want), "%u of %u cpus running", c->cpus, c->cpus);
    cr_assert_str_eq(line, want, "%s", r.console.data);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "%s", r.exit.message);
    cr_assert_eq(r.exit.code, 0);
    guest_result_free(&r);
}

Test(smp, vm_reports_its_cpu_count)
{
    struct console_capture cap = {0};
    struct guest_spec spec = {.cpus = 3};
    kvmc_config *cfg = guest_config(&spec, &cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_cpu_count(vm), 3);
    cr_assert_eq(kvmc_vm_memory_size(vm), 64ull << 20);
    kvmc_vm_destroy(vm);
    kvmc_config_free(cfg);
}

/* The ACPI tables (found by scanning, as Linux does, and handed over by
 * each boot protocol) have valid checksums and a MADT with every CPU. */
Test(smp, acpi_madt_lists_every_cpu)
{
    const char *kernels[] = {KVMC_TEST_GUEST_ELF, KVMC_TEST_GUEST_BZIMAGE};
    for (unsigned k = 0; k < 2; k++) {
        struct guest_spec spec = {.kernel = kernels[k], .cpus = 4};
        struct guest_result r;
        run_guest(&spec, &r);
        char line[128];
        cr_assert_not_null(console_line(&r, "acpi: ", line, sizeof(line)), "%s", r.console.data);
        cr_assert_str_eq(line, "tables FACP APIC MCFG DSDT, 4 cpus in MADT, checksums ok");
        guest_result_free(&r);
    }
}
