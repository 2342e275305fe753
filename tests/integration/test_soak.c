/* 1000 create/run/destroy cycles in one process: descriptors, threads and
 * resident memory stay flat (bounds, not timings), nothing crashes. The
 * bindings' suites run the same soak in their languages. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "guest_run.h"

static unsigned entries(const char *dir)
{
    unsigned n = 0;
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static void cycle(int i)
{
    struct guest_spec spec = {.memory = 16ull << 20, .cpus = 1 + i % 2,
                              .cmdline = i % 3 ? "kvmc.test=boot-only" : NULL};
    struct guest_result r;
    run_guest(&spec, &r);
    cr_assert_eq(r.create_err, KVMC_OK, "cycle %d: %s", i, r.create_msg);
    cr_assert_eq(r.exit.reason, KVMC_EXIT_POWEROFF, "cycle %d: %s", i, r.exit.message);
    guest_result_free(&r);
}

Test(soak, a_thousand_vms_leave_nothing_behind, .timeout = 300)
{
    for (int i = 0; i < 50; i++) /* warm up: malloc's arenas, the kick handler */
        cycle(i);
    unsigned fds = entries("/proc/self/fd"), threads = entries("/proc/self/task");
    long rss = rss_kib();
    for (int i = 50; i < 1000; i++)
        cycle(i);
    cr_assert_eq(entries("/proc/self/fd"), fds, "descriptors: %u before, %u after", fds,
                 entries("/proc/self/fd"));
    cr_assert_eq(entries("/proc/self/task"), threads, "threads: %u before, %u after", threads,
                 entries("/proc/self/task"));
#if !defined(__SANITIZE_ADDRESS__)
    /* Not under ASan: its quarantine keeps freed memory resident (up to
     * 256 MiB) by design, and LeakSanitizer checks leaks there instead. */
    cr_assert_lt(rss_kib() - rss, 4096, "resident memory grew from %ld to %ld KiB", rss,
                 rss_kib());
#else
    (void)rss;
#endif
}
