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
    char *argv[32] = {"run"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    while ((argv[argc] = va_arg(ap, char *)))
        cr_assert_lt(++argc, 32, "more arguments than this helper holds");
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
    cr_assert_str_eq(err, "--mem 3000K: memory 3072000 bytes is below the minimum of 4 MiB");
    cr_assert_not(parse(&o, err, "--mem", "4097K", NULL));
    cr_assert(strstr(err, "not a multiple of 1 MiB"), "%s", err);
    cr_assert_not(parse(&o, err, "stray", NULL));
    cr_assert(strstr(err, "unexpected argument 'stray'"), "%s", err);
    cr_assert(parse(&o, err, "--help", NULL) && o.help);
}

Test(cli_options, stream_devices)
{
    struct run_options o;
    char err[256];
    cr_assert(parse(&o, err, "--net", "user,hostfwd=tcp::8080-:80", "--net", "tap=tap7",
                    "--vsock", "cid=42,uds=/tmp/vm.sock", "--virtio-console", "socket:/tmp/c",
                    NULL), "%s", err);
    cr_assert_eq(o.nnets, 2);
    cr_assert_str_eq(o.nets[1], "tap=tap7");
    cr_assert_eq(o.vsock_cid, 42);
    cr_assert_str_eq(o.vsock_path, "/tmp/vm.sock");
    cr_assert_str_eq(o.vconsole_socket, "/tmp/c");

    static const struct { const char *opt, *arg, *msg; } bad[] = {
        {"--net", "usr", "--net usr: net: 'usr' is neither 'user' nor 'tap=IFNAME'"},
        {"--vsock", "cid=3", "--vsock cid=3: needs both cid=N and uds=PATH"},
        {"--vsock", "cid=1,uds=/x", "--vsock cid=1,uds=/x: vsock guest CID 1 is reserved"},
        {"--vsock", "cid=x,uds=/x", "--vsock cid=x,uds=/x: cid is not a number"},
        {"--vsock", "port=3", "--vsock port=3: unknown part 'port=3'"},
        {"--virtio-console", "/tmp/c", "--virtio-console /tmp/c: use socket:PATH"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_not(parse(&o, err, bad[i].opt, bad[i].arg, NULL), "%s", bad[i].arg);
        cr_assert(!strncmp(err, bad[i].msg, strlen(bad[i].msg)), "got '%s'", err);
    }
    cr_assert_not(parse(&o, err, "--net", "user", "--net", "user", "--net", "user", "--net",
                        "user", "--net", "user", NULL));
    cr_assert(strstr(err, "at most 4"), "%s", err);
}

/* The library judges what it configures: the CLI says the same thing in
 * the same words, after the option's name. */
Test(cli_options, values_are_checked_by_the_library)
{
    struct run_options o;
    char err[256];
    kvmc_config *cfg;
    kvmc_config_new(&cfg);
    cr_assert_eq(kvmc_config_set_cpus(cfg, 65), KVMC_EINVAL);
    cr_assert_str_eq(kvmc_last_error(), "cpus 65: must be between 1 and 64");
    cr_assert_not(parse(&o, err, "--cpus", "65", NULL));
    cr_assert_str_eq(err, "--cpus 65: must be between 1 and 64", "its lead is not repeated");
    cr_assert_not(parse(&o, err, "--disk", "/d,serial=123456789012345678901", NULL));
    cr_assert(strstr(err, "longer than 20 bytes"), "%s", err);
    /* The library counts virtio devices of every kind together. */
    cr_assert_not(parse(&o, err, "--disk", "/a", "--disk", "/b", "--disk", "/c", "--disk", "/d",
                        "--disk", "/e", "--disk", "/f", "--rng", "--net", "user", "--vsock",
                        "cid=3,uds=/tmp/v", NULL));
    cr_assert_str_eq(err, "--vsock cid=3,uds=/tmp/v: at most 8 virtio devices");
    cr_assert(parse(&o, err, "--disk", "/a", "--disk", "/b", "--rng", "--net", "user", NULL),
              "%s", err);
    cr_assert_eq(o.ndisks, 2);
    cr_assert(o.rng);
    kvmc_config_free(cfg);
}

/* Found by fuzz_cli_options: a parse that stopped inside an option cluster
 * ("-hm": -h ends parsing at once) left getopt pointing into that argv, and
 * the next parse read the old, freed string ("unknown option", or worse). */
Test(cli_options, a_parse_never_sees_the_previous_command_line)
{
    struct run_options o;
    char err[256];
    char first[] = "-hm";
    char *argv1[] = {"run", first, NULL};
    cr_assert(parse_run_options(2, argv1, &o, err, sizeof(err)) && o.help);
    memset(first, 'x', 3); /* as if freed and reused: "xxx" */
    char *argv2[] = {"run", "-m", "64M", NULL};
    cr_assert(parse_run_options(3, argv2, &o, err, sizeof(err)), "%s", err);
    cr_assert_eq(o.memory, 64ull << 20);
    cr_assert_not(o.help);
}

Test(cli_options, jail_user)
{
    struct run_options o;
    char err[256];
    cr_assert(parse(&o, err, "--jail", NULL));
    cr_assert(o.jail && !o.jail_report);
    cr_assert_eq(o.jail_uid, 65534);
    cr_assert_eq(o.jail_gid, 65534);
    /* Options after --jail-user leave it alone (--console stdio once reset it). */
    cr_assert(parse(&o, err, "--jail-user", "1000:1001", "--console", "stdio", "--jail-report",
                    NULL));
    cr_assert(o.jail && o.jail_report);
    cr_assert_eq(o.jail_uid, 1000);
    cr_assert_eq(o.jail_gid, 1001);
    cr_assert(parse(&o, err, "--jail-user", "1000", NULL));
    cr_assert_eq(o.jail_gid, 1000, "GID defaults to the UID");
    const char *bad[] = {"0", "1000:0", "-1", "x", "1000:", "4294967295", ""};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_not(parse(&o, err, "--jail-user", bad[i], NULL), "--jail-user %s", bad[i]);
        cr_assert(strstr(err, "--jail-user"), "%s", err);
    }
}

#include "terminal.h"

/* The console escapes, byte by byte (cli/terminal.h). */
static unsigned feed(const char *in, size_t n, unsigned char *out, bool *quit, bool *help)
{
    bool pending = false;
    unsigned m = 0;
    *quit = *help = false;
    for (size_t i = 0; i < n && !*quit; i++)
        m += escape_filter((unsigned char)in[i], &pending, out + m, quit, help);
    return m;
}

Test(console_escapes, ctrl_a_x_quits_and_everything_else_reaches_the_guest)
{
    unsigned char out[64];
    bool quit, help;
    unsigned n = feed("ab\x03\r", 4, out, &quit, &help);
    cr_assert_eq(n, 4);
    cr_assert_eq(memcmp(out, "ab\x03\r", 4), 0, "Ctrl-C goes to the guest");
    cr_assert_not(quit);
    n = feed("a\x01xb", 4, out, &quit, &help);
    cr_assert(quit);
    cr_assert_eq(n, 1, "what came before the escape still goes");
    n = feed("\x01\x01", 2, out, &quit, &help);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], 1, "Ctrl-A Ctrl-A sends one Ctrl-A");
    n = feed("\x01q", 2, out, &quit, &help);
    cr_assert_eq(n, 2);
    cr_assert_eq(memcmp(out, "\x01q", 2), 0, "not an escape: both bytes go");
    n = feed("\x01h", 2, out, &quit, &help);
    cr_assert(help);
    cr_assert_eq(n, 0);
    cr_assert_not(quit);
}
