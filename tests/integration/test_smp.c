/* The MP table describes every vCPU and each one runs: the guest starts the
 * application processors with INIT/SIPI and each reports its APIC ID. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
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

/* The names of this process's threads, one per line. */
static void thread_names(char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    DIR *d = opendir("/proc/self/task");
    cr_assert(d);
    for (struct dirent *e; (e = readdir(d)) && used + 20 < cap;) {
        char path[300];
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        if (fgets(out + used, (int)(cap - used), f))
            used += strlen(out + used);
        fclose(f);
    }
    closedir(d);
}

/* vCPU threads carry the caller's prefix and their index (kvmc-firecracker
 * names them "fc_vcpu N", as Firecracker does); the prefix is checked. */
Test(smp, vcpu_threads_are_named_as_the_caller_asks)
{
    kvmc_config *bad = NULL;
    cr_assert_eq(kvmc_config_new(&bad), KVMC_OK);
    cr_assert_eq(kvmc_config_set_vcpu_thread_name(bad, "fourteen bytes"), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "14 bytes, at most 13"), "%s", kvmc_last_error());
    cr_assert_eq(kvmc_config_set_vcpu_thread_name(bad, "tab\there"), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "byte 3 (0x09)"), "%s", kvmc_last_error());
    cr_assert_eq(kvmc_config_set_vcpu_thread_name(NULL, "x"), KVMC_EINVAL);
    cr_assert_eq(kvmc_config_set_vcpu_thread_name(bad, "thirteen byte"), KVMC_OK);
    cr_assert_eq(kvmc_config_set_vcpu_thread_name(bad, NULL), KVMC_OK);
    kvmc_config_free(bad);

    struct guest_spec spec = {.cmdline = "kvmc.test=kbd", .cpus = 2};
    struct console_capture cap = {0};
    kvmc_config *cfg = guest_config(&spec, &cap);
    cr_assert_eq(kvmc_config_set_vcpu_thread_name(cfg, "fc_vcpu "), KVMC_OK);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK, "%s", kvmc_last_error());
    console_capture_wait(&cap, "kbd: waiting for ctrl-alt-del\n");
    static char names[1 << 14];
    thread_names(names, sizeof(names));
    kvmc_vm_stop(vm);
    kvmc_vm_destroy(vm);
    free(cap.data);
    cr_assert(strstr(names, "fc_vcpu 0\n") && strstr(names, "fc_vcpu 1\n"), "%s", names);
    cr_assert_not(strstr(names, "kvmc-vcpu"), "%s", names);

    /* The default, and "" for it. */
    kvmc_config *plain = guest_config(&(struct guest_spec){.cmdline = "kvmc.test=kbd"}, &cap);
    cr_assert_eq(kvmc_config_set_vcpu_thread_name(plain, ""), KVMC_OK);
    cr_assert_eq(kvmc_vm_create(plain, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(plain);
    memset(&cap, 0, sizeof(cap));
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK, "%s", kvmc_last_error());
    console_capture_wait(&cap, "kbd: waiting for ctrl-alt-del\n");
    thread_names(names, sizeof(names));
    kvmc_vm_stop(vm);
    kvmc_vm_destroy(vm);
    free(cap.data);
    cr_assert(strstr(names, "kvmc-vcpu0\n"), "%s", names);
}
