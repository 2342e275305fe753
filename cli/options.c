/* `kvmc run`'s options: one table says what each option is called, what it
 * takes, what --help says about it and how it is stored. Values that the
 * library configures are checked by the library itself (on a scratch
 * kvmc_config), so the CLI and the API accept and refuse the same things
 * with the same words; the CLI only parses its own syntax (sizes, choices,
 * "cid=N,uds=PATH"). */
#include "options.h"
#include "jail.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool parse_size(const char *s, uint64_t *bytes)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return false;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    case '\0': break;
    default: return false;
    }
    if (*end == 'i' && shift)
        end++; /* accept MiB-style "256Mi" */
    if (*end == 'B' && shift)
        end++;
    if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *bytes = (uint64_t)v << shift;
    return true;
}

static bool parse_uint(const char *s, unsigned *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 0xffffffffUL)
        return false;
    *out = (unsigned)v;
    return true;
}

/* ------------------------------------------------------------ one option */

struct parse {
    kvmc_config *probe; /* the library checks values here */
    const char *opt;    /* "--mem" */
    const char *arg;
    char *err;
    unsigned errlen;
};

static bool fail(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct parse *p, const char *fmt, ...)
{
    int n = snprintf(p->err, p->errlen, "%s%s%s: ", p->opt, p->arg ? " " : "",
                     p->arg ? p->arg : "");
    if (n < 0 || (unsigned)n >= p->errlen)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (unsigned)n, fmt, ap);
    va_end(ap);
    return false;
}

/* The library's verdict on the value: its message after "--opt ARG: ",
 * without its own "what ARG: " lead when it starts that way (the library
 * says "cpus 65: must be ...", the CLI "--cpus 65: must be ..."). */
static bool library(struct parse *p, int rc)
{
    if (rc == KVMC_OK)
        return true;
    const char *msg = kvmc_last_error();
    char lead[64];
    const char *space = strchr(msg, ' ');
    if (p->arg && space && space - msg < 24 &&
        snprintf(lead, sizeof(lead), "%s: ", p->arg) < (int)sizeof(lead) &&
        strncmp(space + 1, lead, strlen(lead)) == 0)
        msg = space + 1 + strlen(lead);
    return fail(p, "%s", msg);
}

static int choose(const char *arg, const char *const *names, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(arg, names[i]) == 0)
            return (int)i;
    return -1;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool set_kernel(struct run_options *o, struct parse *p)
{
    o->kernel = p->arg;
    return library(p, kvmc_config_set_kernel(p->probe, p->arg));
}

static bool set_initrd(struct run_options *o, struct parse *p)
{
    o->initrd = p->arg;
    return library(p, kvmc_config_set_initrd(p->probe, p->arg));
}

static bool set_cmdline(struct run_options *o, struct parse *p)
{
    o->cmdline = p->arg;
    return library(p, kvmc_config_set_cmdline(p->probe, p->arg));
}

static bool set_mem(struct run_options *o, struct parse *p)
{
    if (!parse_size(p->arg, &o->memory))
        return fail(p, "not a size (use e.g. 256M or 2G)");
    return library(p, kvmc_config_set_memory(p->probe, o->memory));
}

static bool set_mem_backing(struct run_options *o, struct parse *p)
{
    static const char *const names[] = {"anon", "memfd", "hugetlb"};
    static const unsigned flags[] = {0, KVMC_MEM_MEMFD, KVMC_MEM_MEMFD | KVMC_MEM_HUGEPAGES};
    int i = choose(p->arg, names, COUNT(names));
    if (i < 0)
        return fail(p, "use anon, memfd or hugetlb");
    o->mem_flags = flags[i];
    return library(p, kvmc_config_set_memory_flags(p->probe, o->mem_flags));
}

static bool set_cpus(struct run_options *o, struct parse *p)
{
    if (!parse_uint(p->arg, &o->cpus))
        return fail(p, "not a number of vCPUs (1 to %u)", KVMC_MAX_VCPUS);
    return library(p, kvmc_config_set_cpus(p->probe, o->cpus));
}

static bool set_console(struct run_options *o, struct parse *p)
{
    if (strcmp(p->arg, "stdio") == 0) {
        o->console = CONSOLE_OPT_STDIO;
    } else if (strcmp(p->arg, "none") == 0) {
        o->console = CONSOLE_OPT_NONE;
    } else if (strncmp(p->arg, "file:", 5) == 0 && p->arg[5]) {
        o->console = CONSOLE_OPT_FILE;
        o->console_path = p->arg + 5;
    } else {
        return fail(p, "use stdio, none or file:PATH");
    }
    return true;
}

static bool set_console_limit(struct run_options *o, struct parse *p)
{
    if (!parse_size(p->arg, &o->console_limit))
        return fail(p, "not a size (use e.g. 64M, or 0 for no limit)");
    o->console_limit_set = true;
    return library(p, kvmc_config_set_console_limit(p->probe, o->console_limit));
}

static bool set_boot(struct run_options *o, struct parse *p)
{
    static const char *const names[] = {"auto", "linux", "pvh"};
    static const kvmc_boot_protocol protocols[] = {KVMC_BOOT_AUTO, KVMC_BOOT_LINUX,
                                                   KVMC_BOOT_PVH};
    int i = choose(p->arg, names, COUNT(names));
    if (i < 0)
        return fail(p, "use auto, linux or pvh");
    o->boot = protocols[i];
    return library(p, kvmc_config_set_boot_protocol(p->probe, o->boot));
}

/* --disk PATH[,ro][,nolock][,serial=ID] */
static bool add_disk(struct run_options *o, struct parse *p)
{
    if (o->ndisks == KVMC_MAX_VIRTIO_DEVICES)
        return fail(p, "at most %u virtio devices", KVMC_MAX_VIRTIO_DEVICES);
    char *spec = o->disk_specs[o->ndisks];
    if (snprintf(spec, sizeof(o->disk_specs[0]), "%s", p->arg) >= (int)sizeof(o->disk_specs[0]))
        return fail(p, "specification too long");
    char *save = NULL, *path = strtok_r(spec, ",", &save);
    if (!path || !*path)
        return fail(p, "needs a path (PATH[,ro][,nolock][,serial=ID])");
    struct run_disk *d = &o->disks[o->ndisks];
    *d = (struct run_disk){.path = path};
    for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
        if (strcmp(opt, "ro") == 0)
            d->read_only = true;
        else if (strcmp(opt, "nolock") == 0)
            d->no_lock = true;
        else if (strncmp(opt, "serial=", 7) == 0)
            d->serial = opt + 7;
        else
            return fail(p, "unknown option '%s' (use ro, nolock, serial=ID)", opt);
    }
    unsigned flags = (d->read_only ? KVMC_DISK_READ_ONLY : 0) |
                     (d->no_lock ? KVMC_DISK_NO_LOCK : 0);
    if (!library(p, kvmc_config_add_disk(p->probe, d->path, flags, d->serial)))
        return false;
    o->ndisks++;
    return true;
}

static bool set_rng(struct run_options *o, struct parse *p)
{
    o->rng = true;
    return library(p, kvmc_config_set_rng(p->probe, 1));
}

static bool set_pit(struct run_options *o, struct parse *p)
{
    o->pit = true;
    return library(p, kvmc_config_set_pit(p->probe, 1));
}

/* --net SPEC: the library's parser decides. */
static bool add_net(struct run_options *o, struct parse *p)
{
    if (o->nnets == COUNT(o->nets))
        return fail(p, "at most %zu network devices", COUNT(o->nets));
    if (!library(p, kvmc_config_add_net(p->probe, p->arg)))
        return false;
    o->nets[o->nnets++] = p->arg;
    return true;
}

/* --vsock cid=N,uds=PATH */
static bool set_vsock(struct run_options *o, struct parse *p)
{
    if (snprintf(o->vsock_spec, sizeof(o->vsock_spec), "%s", p->arg) >=
        (int)sizeof(o->vsock_spec))
        return fail(p, "specification too long");
    o->vsock_cid = 0;
    o->vsock_path = NULL;
    bool have_cid = false;
    char *save = NULL;
    for (char *opt = strtok_r(o->vsock_spec, ",", &save); opt;
         opt = strtok_r(NULL, ",", &save)) {
        if (strncmp(opt, "cid=", 4) == 0) {
            if (!parse_uint(opt + 4, &o->vsock_cid))
                return fail(p, "cid is not a number");
            have_cid = true;
        } else if (strncmp(opt, "uds=", 4) == 0 && opt[4]) {
            o->vsock_path = opt + 4;
        } else {
            return fail(p, "unknown part '%s' (use cid=N,uds=PATH)", opt);
        }
    }
    if (!have_cid || !o->vsock_path)
        return fail(p, "needs both cid=N and uds=PATH");
    return library(p, kvmc_config_set_vsock(p->probe, o->vsock_cid, o->vsock_path));
}

static bool set_vconsole(struct run_options *o, struct parse *p)
{
    if (strncmp(p->arg, "socket:", 7) != 0 || !p->arg[7])
        return fail(p, "use socket:PATH");
    o->vconsole_socket = p->arg + 7;
    return library(p, kvmc_config_set_virtio_console_socket(p->probe, o->vconsole_socket));
}

static bool set_transport(struct run_options *o, struct parse *p)
{
    static const char *const names[] = {"mmio", "pci"};
    static const kvmc_virtio_transport kinds[] = {KVMC_VIRTIO_MMIO, KVMC_VIRTIO_PCI};
    int i = choose(p->arg, names, COUNT(names));
    if (i < 0)
        return fail(p, "use mmio or pci");
    o->transport = kinds[i];
    return library(p, kvmc_config_set_virtio_transport(p->probe, o->transport));
}

/* --vfio ADDRESS: the library checks the address (and, at VM creation,
 * the host). */
static bool add_vfio(struct run_options *o, struct parse *p)
{
    if (!library(p, kvmc_config_add_vfio(p->probe, p->arg)))
        return false;
    o->vfio[o->nvfio++] = p->arg;
    return true;
}

static bool set_seccomp(struct run_options *o, struct parse *p)
{
    static const char *const names[] = {"on", "off"};
    int i = choose(p->arg, names, COUNT(names));
    if (i < 0)
        return fail(p, "use on or off");
    o->seccomp_off = i == 1;
    return true;
}

static bool set_restore(struct run_options *o, struct parse *p)
{
    if (!*p->arg)
        return fail(p, "needs a snapshot directory");
    o->restore = p->arg;
    return true;
}

static bool set_snapshot_dir(struct run_options *o, struct parse *p)
{
    if (!*p->arg)
        return fail(p, "needs a directory");
    o->snapshot_dir = p->arg;
    return true;
}

static bool set_jail(struct run_options *o, struct parse *p)
{
    (void)p;
    o->jail = true;
    return true;
}

static bool set_jail_report(struct run_options *o, struct parse *p)
{
    (void)p;
    o->jail = o->jail_report = true;
    return true;
}

/* --jail-user UID[:GID] */
static bool set_jail_user(struct run_options *o, struct parse *p)
{
    if (!jail_parse_user(p->arg, &o->jail_uid, &o->jail_gid))
        return fail(p, "use UID or UID:GID, numbers other than 0");
    return true;
}

static bool set_help(struct run_options *o, struct parse *p)
{
    (void)p;
    o->help = true;
    return true;
}

static bool set_version(struct run_options *o, struct parse *p)
{
    (void)p;
    o->version = true;
    return true;
}

/* ------------------------------------------------------------- the table */

struct run_option {
    const char *name;
    char short_name;   /* 0: none */
    const char *value; /* what --help calls the value; NULL: a flag */
    bool (*set)(struct run_options *o, struct parse *p);
    const char *help;  /* lines of --help, without the indent */
    bool stop;         /* parsing ends here (--help, --version) */
};

static const struct run_option options[] = {
    {"kernel", 'k', "PATH", set_kernel,
     "Linux bzImage, or ELF vmlinux (with or without a PVH\n"
     "note). Default: the built-in test guest.", false},
    {"initrd", 'i', "PATH", set_initrd, "initial ramdisk handed to the kernel.", false},
    {"cmdline", 'c', "STR", set_cmdline,
     "kernel command line. Example for Linux:\n"
     "\"console=ttyS0 reboot=k panic=-1\".", false},
    {"mem", 'm', "SIZE", set_mem,
     "guest RAM, in K, M or G (default 256M; minimum 4M;\n"
     "at most the host's RAM). Above 3G, RAM continues at\n"
     "4G past the 32-bit MMIO hole.", false},
    {"mem-backing", 0, "KIND", set_mem_backing,
     "anon (default: private anonymous memory, only\n"
     "what the guest touches is used), memfd (shareable),\n"
     "or hugetlb (2 MiB pages; reserve them first in\n"
     "/proc/sys/vm/nr_hugepages).", false},
    {"cpus", 'n', "N", set_cpus, "number of vCPUs, 1 to 64 (default 1).", false},
    {"console", 'C', "WHERE", set_console,
     "where COM1 goes: stdio (default; stdin is the\n"
     "guest's input: on a terminal every key goes to the\n"
     "guest as typed, Ctrl-C too; Ctrl-A x quits kvmc,\n"
     "Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A h lists these),\n"
     "none, or file:PATH. Output never stalls the guest:\n"
     "while nobody reads it (a full pipe), kvmc drops it\n"
     "and says so once on stderr.", false},
    {"console-limit", 0, "SIZE", set_console_limit,
     "with file:PATH, the file's size limit (default\n"
     "64M; 0 for none). Later output is dropped and a\n"
     "last line in the file says so.", false},
    {"disk", 0, "SPEC", add_disk,
     "a raw disk image as virtio-blk: PATH[,ro][,nolock]\n"
     "[,serial=ID]. Repeat for more disks (up to 8 virtio\n"
     "devices). The image is locked while kvmc runs\n"
     "(exclusive, or shared with ro): a second VM that\n"
     "wants it writable is refused. nolock skips that.\n"
     "Linux finds them through ACPI (virtio_mmio driver).", false},
    {"rng", 0, NULL, set_rng, "a virtio-rng device fed from getrandom(2).", false},
    {"pit", 0, NULL, set_pit,
     "an i8254 PIT (ports 0x40-0x43, IRQ 0). Off by default:\n"
     "Linux keeps time with kvmclock and the APIC timer,\n"
     "and a PIT makes VM exit about 18 ms slower. Use it\n"
     "for guests that tick or calibrate with the PIT.", false},
    {"net", 0, "SPEC", add_net,
     "a virtio-net device. SPEC is one of:\n"
     "user[,mac=M][,hostfwd=tcp:[HOSTADDR]:PORT-[GUESTADDR]:PORT]...\n"
     "    [,dns-server=IPV4[:PORT]]\n"
     "  user-mode networking (libslirp), no root needed:\n"
     "  the guest gets 10.0.2.15 by DHCP, 10.0.2.2 is the\n"
     "  host's loopback, 10.0.2.3 serves DNS (forwarded to\n"
     "  dns-server, by default the first nameserver in\n"
     "  /etc/resolv.conf); hostfwd forwards a host port\n"
     "  (127.0.0.1 by default) in.\n"
     "tap=IFNAME[,mac=M]\n"
     "  a host tap interface (created if missing, which\n"
     "  needs CAP_NET_ADMIN).\n"
     "Default MAC 52:54:00:12:34:56 (+1 per device).", false},
    {"vsock", 0, "cid=N,uds=PATH", set_vsock,
     "virtio-vsock, Firecracker-style: a host program\n"
     "connects to PATH and writes \"CONNECT <port>\\n\" to\n"
     "reach a guest listener (answer: \"OK <port>\\n\");\n"
     "guest connections to CID 2 port P go to PATH_P.", false},
    {"virtio-console", 0, "socket:PATH", set_vconsole,
     "a second console (hvc0) on a Unix socket\n"
     "one client at a time owns; its output waits (is\n"
     "not dropped) while nobody is connected.", false},
    {"transport", 0, "mmio|pci", set_transport,
     "how virtio devices reach the guest: mmio (default:\n"
     "virtio-mmio windows listed in ACPI) or pci (virtio-pci\n"
     "on kvmc's PCIe root complex, with MSI-X).", false},
    {"vfio", 0, "ADDRESS", add_vfio,
     "pass a host PCI device through (VFIO), by its PCI\n"
     "address (0000:00:03.0, see lspci -D). Bind it to\n"
     "vfio-pci first: echo vfio-pci > /sys/bus/pci/devices/\n"
     "ADDRESS/driver_override, unbind its driver, echo\n"
     "ADDRESS > /sys/bus/pci/drivers_probe. Needs the host's\n"
     "IOMMU on (intel_iommu=on), MSI-X on the device, and\n"
     "pins all guest RAM. The guest finds it on its PCI bus\n"
     "with its own IDs. Repeat for more (up to 8).", false},
    {"restore", 0, "DIR", set_restore,
     "continue a guest from the snapshot in DIR instead of\n"
     "booting: give the options it was taken with (--mem,\n"
     "--cpus, --pit, devices); --kernel, --initrd and\n"
     "--cmdline are not needed. A VM that differs from the\n"
     "snapshot's is refused, naming the difference.", false},
    {"snapshot-on-signal", 0, "DIR", set_snapshot_dir,
     "on SIGUSR2, pause the guest, save it into DIR (made if\n"
     "missing: DIR/state and DIR/memory) and exit with status\n"
     "5; if saving fails, say why and let the guest run on.\n"
     "Every virtio device is saved, on either transport;\n"
     "--vfio devices cannot be yet (saving fails). Not with\n"
     "--jail.", false},
    {"seccomp", 0, "on|off", set_seccomp,
     "confine kvmc's threads with seccomp allow-lists\n"
     "(default on; a forbidden system call kills kvmc).", false},
    {"jail", 0, NULL, set_jail,
     "least privilege: kvmc opens what the VM needs, then\n"
     "runs as PID 1 of new PID, mount, IPC, UTS and (without\n"
     "user networking) network namespaces, on an empty\n"
     "read-only root, with no capabilities, no_new_privs,\n"
     "and a cgroup v2 memory and pids limit where the host\n"
     "allows. As root it also switches to --jail-user\n"
     "(default 65534:65534); otherwise a user namespace\n"
     "maps you. kvmc's parent process stays outside: it\n"
     "makes the guest's vsock connections to PATH_P for it\n"
     "(and nothing else), so no host directory is visible.", false},
    {"jail-user", 0, "UID[:GID]", set_jail_user,
     "the user the jailed VMM runs as (root only).", false},
    {"jail-report", 0, NULL, set_jail_report,
     "with --jail: print the jail's properties, as kvmc\n"
     "sees them from inside, on stderr before the VM starts.", false},
    {"boot", 0, "PROTOCOL", set_boot,
     "auto (default: PVH if the ELF has a PVH note, else\n"
     "the Linux 64-bit boot protocol), linux, or pvh.", false},
    {"help", 'h', NULL, set_help, "show this help.", true},
    {"version", 'V', NULL, set_version, "print kvmc's version.", true},
};

#define NOPTIONS COUNT(options)
#define HELP_COLUMN 24

void print_run_options(FILE *out)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct run_option *r = &options[i];
        char head[64];
        int n = r->short_name
                    ? snprintf(head, sizeof(head), "  -%c, --%s%s%s", r->short_name, r->name,
                               r->value ? " " : "", r->value ? r->value : "")
                    : snprintf(head, sizeof(head), "      --%s%s%s", r->name,
                               r->value ? " " : "", r->value ? r->value : "");
        fputs(head, out);
        const char *line = r->help;
        bool first = true;
        while (*line) {
            const char *nl = strchr(line, '\n');
            int len = nl ? (int)(nl - line) : (int)strlen(line);
            if (first && n < HELP_COLUMN - 1)
                fprintf(out, "%*s%.*s\n", HELP_COLUMN - n, "", len, line);
            else
                fprintf(out, "%s%*s%.*s\n", first ? "\n" : "", HELP_COLUMN, "", len, line);
            first = false;
            line += len + (nl ? 1 : 0);
        }
    }
}

bool parse_run_options(int argc, char **argv, struct run_options *o, char *err,
                       unsigned errlen)
{
    struct option longopts[NOPTIONS + 1];
    char shortopts[2 * NOPTIONS + 2] = ":";
    size_t ns = 1;
    for (size_t i = 0; i < NOPTIONS; i++) {
        longopts[i] = (struct option){options[i].name,
                                      options[i].value ? required_argument : no_argument,
                                      NULL, (int)(256 + i)};
        if (options[i].short_name) {
            shortopts[ns++] = options[i].short_name;
            if (options[i].value)
                shortopts[ns++] = ':';
        }
    }
    shortopts[ns] = '\0';
    longopts[NOPTIONS] = (struct option){0};

    memset(o, 0, sizeof(*o));
    o->memory = 256ull << 20;
    o->cpus = 1;
    o->console = CONSOLE_OPT_STDIO;
    o->jail_uid = o->jail_gid = 65534; /* nobody:nogroup */
    struct parse p = {.err = err, .errlen = errlen};
    if (kvmc_config_new(&p.probe) != KVMC_OK) {
        snprintf(err, errlen, "%s", kvmc_last_error());
        return false;
    }
    optind = 0; /* 0, not 1: glibc then also forgets where it was inside a previous argv */
    opterr = 0;
    bool ok = true, stop = false;
    int c;
    while (ok && !stop && (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const struct run_option *r = NULL;
        for (size_t i = 0; i < NOPTIONS && !r; i++)
            if (c == (int)(256 + i) || (c < 256 && c == options[i].short_name))
                r = &options[i];
        if (r) {
            char name[32];
            snprintf(name, sizeof(name), "--%s", r->name);
            p.opt = name;
            p.arg = r->value ? optarg : NULL;
            ok = r->set(o, &p);
            stop = r->stop;
        } else if (c == ':') {
            snprintf(err, errlen, "%s needs a value", argv[optind - 1]);
            ok = false;
        } else {
            snprintf(err, errlen, "unknown option %s (see kvmc run --help)", argv[optind - 1]);
            ok = false;
        }
    }
    kvmc_config_free(p.probe);
    if (ok && !stop && o->snapshot_dir && o->jail) {
        snprintf(err, errlen, "--snapshot-on-signal cannot be used with --jail yet (the jailed "
                 "VMM sees no host directory to write to)");
        ok = false;
    }
    if (ok && !stop && optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s' (see kvmc run --help)", argv[optind]);
        ok = false;
    }
    return ok;
}
