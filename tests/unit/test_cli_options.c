#include <criterion/criterion.h>
#include <stdarg.h>
#include <string.h>

#include "options.h"

Test(cli_options, sizes)
{
    uint64_t v;
    cr_assert(parse_size("256M", &v) && v == 256ull << 20);
    cr_assert(parse_size("2G", &v) && v == 2ull << 30);
    cr_assert(parse_size("512MiB", &v) && v == 512ull << 20);
    cr_assert(parse_size("4096k", &v) && v == 4ull << 20);
    cr_assert(parse_size("1048576", &v) && v == 1ull << 20);
    cr_assert_not(parse_size("", &v));
    cr_assert_not(parse_size("M", &v));
    cr_assert_not(parse_size("-1G", &v));
    cr_assert_not(parse_size("12X", &v));
    cr_assert_not(parse_size("1.5G", &v));
    cr_assert_not(parse_size("99999999999999999999", &v));
    cr_assert_not(parse_size("20000000T", &v), "overflow");
}

static bool parse(struct run_options *o, char *err, ...)
{
    char *argv[16] = {"run"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    while ((argv[argc] = va_arg(ap, char *)))
        argc++;
    va_end(ap);
    return parse_run_options(argc, argv, o, err, 256);
}

Test(cli_options, run_options)
{
    struct run_options o;
    char err[256];
    cr_assert(parse(&o, err, NULL));
    cr_assert_null(o.kernel);
    cr_assert_eq(o.memory, 256ull << 20);
    cr_assert_eq(o.cpus, 1);
    cr_assert_eq(o.console, CONSOLE_OPT_STDIO);
    cr_assert(parse(&o, err, "-k", "/k", "--initrd", "/i", "--cmdline", "a b", "--mem", "1G",
                    "--cpus", "4", "--console", "file:/tmp/c", "--boot", "pvh", NULL));
    cr_assert_str_eq(o.kernel, "/k");
    cr_assert_str_eq(o.initrd, "/i");
    cr_assert_str_eq(o.cmdline, "a b");
    cr_assert_eq(o.memory, 1ull << 30);
    cr_assert_eq(o.cpus, 4);
    cr_assert_eq(o.console, CONSOLE_OPT_FILE);
    cr_assert_str_eq(o.console_path, "/tmp/c");
    cr_assert_eq(o.boot, KVMC_BOOT_PVH);
    cr_assert_not(parse(&o, err, "--cpus", "65", NULL));
    cr_assert(strstr(err, "--cpus 65"), "%s", err);
    cr_assert_not(parse(&o, err, "--console", "file:", NULL));
    cr_assert_not(parse(&o, err, "--mem", "3000K", NULL));
    cr_assert(strstr(err, "too small"), "%s", err);
    cr_assert_not(parse(&o, err, "--mem", "4097K", NULL));
    cr_assert(strstr(err, "whole number of MiB"), "%s", err);
    cr_assert_not(parse(&o, err, "stray", NULL));
    cr_assert(strstr(err, "unexpected argument 'stray'"), "%s", err);
    cr_assert(parse(&o, err, "--help", NULL) && o.help);
}
