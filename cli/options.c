#include "options.h"

#include <errno.h>
#include <getopt.h>
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

static bool parse_cpus(const char *s, unsigned *cpus)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 0xffffffffUL)
        return false;
    *cpus = (unsigned)v;
    return true;
}

/* --disk PATH[,ro][,serial=ID] */
static bool parse_disk(struct run_options *o, const char *arg, char *err, unsigned errlen)
{
    if (o->ndisks == KVMC_MAX_VIRTIO_DEVICES) {
        snprintf(err, errlen, "--disk %s: at most %u disks", arg, KVMC_MAX_VIRTIO_DEVICES);
        return false;
    }
    char *spec = o->disk_specs[o->ndisks];
    if (snprintf(spec, sizeof(o->disk_specs[0]), "%s", arg) >= (int)sizeof(o->disk_specs[0])) {
        snprintf(err, errlen, "--disk: specification too long");
        return false;
    }
    char *save = NULL, *path = strtok_r(spec, ",", &save);
    if (!path || !*path) {
        snprintf(err, errlen, "--disk %s: needs a path (PATH[,ro][,nolock][,serial=ID])", arg);
        return false;
    }
    o->disks[o->ndisks].path = path;
    for (char *opt; (opt = strtok_r(NULL, ",", &save));) {
        if (strcmp(opt, "ro") == 0) {
            o->disks[o->ndisks].read_only = true;
        } else if (strcmp(opt, "nolock") == 0) {
            o->disks[o->ndisks].no_lock = true;
        } else if (strncmp(opt, "serial=", 7) == 0 && strlen(opt + 7) <= 20) {
            o->disks[o->ndisks].serial = opt + 7;
        } else {
            snprintf(err, errlen, "--disk %s: unknown option '%s' (use ro, nolock, serial=ID up "
                     "to 20 characters)", arg, opt);
            return false;
        }
    }
    o->ndisks++;
    return true;
}

/* --net SPEC: the library's parser decides, so the CLI and the API agree. */
static bool parse_net(struct run_options *o, const char *arg, char *err, unsigned errlen)
{
    if (o->nnets == sizeof(o->nets) / sizeof(o->nets[0])) {
        snprintf(err, errlen, "--net %s: at most 4 network devices", arg);
        return false;
    }
    kvmc_config *probe = NULL;
    int rc = kvmc_config_new(&probe);
    if (!rc)
        rc = kvmc_config_add_net(probe, arg);
    if (rc)
        snprintf(err, errlen, "--net %s: %s", arg, kvmc_last_error());
    kvmc_config_free(probe);
    if (!rc)
        o->nets[o->nnets++] = arg;
    return rc == 0;
}

/* --vsock cid=N,uds=PATH */
static bool parse_vsock(struct run_options *o, const char *arg, char *err, unsigned errlen)
{
    if (snprintf(o->vsock_spec, sizeof(o->vsock_spec), "%s", arg) >= (int)sizeof(o->vsock_spec)) {
        snprintf(err, errlen, "--vsock: specification too long");
        return false;
    }
    o->vsock_cid = 0;
    o->vsock_path = NULL;
    char *save = NULL;
    for (char *opt = strtok_r(o->vsock_spec, ",", &save); opt;
         opt = strtok_r(NULL, ",", &save)) {
        if (strncmp(opt, "cid=", 4) == 0) {
            char *end;
            unsigned long cid = strtoul(opt + 4, &end, 10);
            if (*end || opt[4] < '0' || opt[4] > '9' || cid < 3 || cid >= 0xffffffffu) {
                snprintf(err, errlen, "--vsock %s: cid must be a number from 3 to 4294967294",
                         arg);
                return false;
            }
            o->vsock_cid = (unsigned)cid;
        } else if (strncmp(opt, "uds=", 4) == 0 && opt[4]) {
            o->vsock_path = opt + 4;
        } else {
            snprintf(err, errlen, "--vsock %s: unknown part '%s' (use cid=N,uds=PATH)", arg, opt);
            return false;
        }
    }
    if (!o->vsock_cid || !o->vsock_path) {
        snprintf(err, errlen, "--vsock %s: needs both cid=N and uds=PATH", arg);
        return false;
    }
    return true;
}

/* --jail-user UID[:GID] */
static bool parse_jail_user(struct run_options *o, const char *arg, char *err, unsigned errlen)
{
    char *end;
    unsigned long uid = strtoul(arg, &end, 10), gid = uid;
    if (*end == ':')
        gid = strtoul(end + 1, &end, 10);
    if (arg[0] < '0' || arg[0] > '9' || *end || uid == 0 || gid == 0 || uid >= 0xffffffffu ||
        gid >= 0xffffffffu) {
        snprintf(err, errlen, "--jail-user %s: use UID or UID:GID, numbers other than 0", arg);
        return false;
    }
    o->jail_uid = (unsigned)uid;
    o->jail_gid = (unsigned)gid;
    return true;
}

enum { OPT_BOOT = 1000, OPT_MEM_BACKING, OPT_DISK, OPT_RNG, OPT_SECCOMP, OPT_NET, OPT_VSOCK,
       OPT_VCONSOLE, OPT_JAIL, OPT_JAIL_REPORT, OPT_JAIL_USER, OPT_PIT, OPT_CONSOLE_LIMIT };

bool parse_run_options(int argc, char **argv, struct run_options *o, char *err,
                       unsigned errlen)
{
    static const struct option longopts[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, 'i'},
        {"cmdline", required_argument, NULL, 'c'},
        {"mem", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 'n'},
        {"console", required_argument, NULL, 'C'},
        {"console-limit", required_argument, NULL, OPT_CONSOLE_LIMIT},
        {"boot", required_argument, NULL, OPT_BOOT},
        {"mem-backing", required_argument, NULL, OPT_MEM_BACKING},
        {"disk", required_argument, NULL, OPT_DISK},
        {"rng", no_argument, NULL, OPT_RNG},
        {"pit", no_argument, NULL, OPT_PIT},
        {"net", required_argument, NULL, OPT_NET},
        {"vsock", required_argument, NULL, OPT_VSOCK},
        {"virtio-console", required_argument, NULL, OPT_VCONSOLE},
        {"seccomp", required_argument, NULL, OPT_SECCOMP},
        {"jail", no_argument, NULL, OPT_JAIL},
        {"jail-report", no_argument, NULL, OPT_JAIL_REPORT},
        {"jail-user", required_argument, NULL, OPT_JAIL_USER},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof(*o));
    o->memory = 256ull << 20;
    o->cpus = 1;
    o->console = CONSOLE_OPT_STDIO;
    o->jail_uid = o->jail_gid = 65534; /* nobody:nogroup */
    optind = 0; /* 0, not 1: glibc then also forgets where it was inside a previous argv */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":k:i:c:m:n:C:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'k': o->kernel = optarg; break;
        case 'i': o->initrd = optarg; break;
        case 'c': o->cmdline = optarg; break;
        case 'm':
            if (!parse_size(optarg, &o->memory)) {
                snprintf(err, errlen, "--mem %s: not a size (use e.g. 256M or 2G)", optarg);
                return false;
            }
            if (o->memory < KVMC_MIN_MEMORY) {
                snprintf(err, errlen, "--mem %s: too small, the minimum is %lluM",
                         optarg, KVMC_MIN_MEMORY >> 20);
                return false;
            }
            if (o->memory % (1u << 20)) {
                snprintf(err, errlen, "--mem %s: must be a whole number of MiB", optarg);
                return false;
            }
            break;
        case 'n':
            if (!parse_cpus(optarg, &o->cpus) || o->cpus == 0 || o->cpus > KVMC_MAX_VCPUS) {
                snprintf(err, errlen, "--cpus %s: must be a number from 1 to %u", optarg,
                         KVMC_MAX_VCPUS);
                return false;
            }
            break;
        case 'C':
            if (strcmp(optarg, "stdio") == 0) {
                o->console = CONSOLE_OPT_STDIO;
            } else if (strcmp(optarg, "none") == 0) {
                o->console = CONSOLE_OPT_NONE;
            } else if (strncmp(optarg, "file:", 5) == 0 && optarg[5]) {
                o->console = CONSOLE_OPT_FILE;
                o->console_path = optarg + 5;
            } else {
                snprintf(err, errlen, "--console %s: use stdio, none or file:PATH", optarg);
                return false;
            }
            break;
        case OPT_CONSOLE_LIMIT:
            if (!parse_size(optarg, &o->console_limit)) {
                snprintf(err, errlen, "--console-limit %s: not a size (use e.g. 64M, or 0 "
                         "for no limit)", optarg);
                return false;
            }
            o->console_limit_set = true;
            break;
        case OPT_BOOT:
            if (strcmp(optarg, "auto") == 0) {
                o->boot = KVMC_BOOT_AUTO;
            } else if (strcmp(optarg, "linux") == 0) {
                o->boot = KVMC_BOOT_LINUX;
            } else if (strcmp(optarg, "pvh") == 0) {
                o->boot = KVMC_BOOT_PVH;
            } else {
                snprintf(err, errlen, "--boot %s: use auto, linux or pvh", optarg);
                return false;
            }
            break;
        case OPT_MEM_BACKING:
            if (strcmp(optarg, "anon") == 0) {
                o->mem_flags = 0;
            } else if (strcmp(optarg, "memfd") == 0) {
                o->mem_flags = KVMC_MEM_MEMFD;
            } else if (strcmp(optarg, "hugetlb") == 0) {
                o->mem_flags = KVMC_MEM_MEMFD | KVMC_MEM_HUGEPAGES;
            } else {
                snprintf(err, errlen, "--mem-backing %s: use anon, memfd or hugetlb", optarg);
                return false;
            }
            break;
        case OPT_DISK:
            if (!parse_disk(o, optarg, err, errlen))
                return false;
            break;
        case OPT_RNG:
            o->rng = true;
            break;
        case OPT_PIT:
            o->pit = true;
            break;
        case OPT_NET:
            if (!parse_net(o, optarg, err, errlen))
                return false;
            break;
        case OPT_VSOCK:
            if (!parse_vsock(o, optarg, err, errlen))
                return false;
            break;
        case OPT_VCONSOLE:
            if (strncmp(optarg, "socket:", 7) != 0 || !optarg[7]) {
                snprintf(err, errlen, "--virtio-console %s: use socket:PATH", optarg);
                return false;
            }
            o->vconsole_socket = optarg + 7;
            break;
        case OPT_SECCOMP:
            if (strcmp(optarg, "on") == 0 || strcmp(optarg, "off") == 0) {
                o->seccomp_off = strcmp(optarg, "off") == 0;
            } else {
                snprintf(err, errlen, "--seccomp %s: use on or off", optarg);
                return false;
            }
            break;
        case OPT_JAIL: o->jail = true; break;
        case OPT_JAIL_REPORT: o->jail = o->jail_report = true; break;
        case OPT_JAIL_USER:
            if (!parse_jail_user(o, optarg, err, errlen))
                return false;
            break;
        case 'h': o->help = true; return true;
        case 'V': o->version = true; return true;
        case ':':
            snprintf(err, errlen, "%s needs a value", argv[optind - 1]);
            return false;
        default:
            snprintf(err, errlen, "unknown option %s (see kvmc run --help)",
                     argv[optind - 1]);
            return false;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s' (see kvmc run --help)",
                 argv[optind]);
        return false;
    }
    return true;
}
