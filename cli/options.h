/* Command-line parsing for `kvmc run`, kept apart from main() so the unit
 * tests and a fuzzer can feed it bad input. One table in options.c defines
 * every option, its --help text and how it is checked. */
#ifndef KVMC_CLI_OPTIONS_H
#define KVMC_CLI_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kvmc/kvmc.h"

struct run_disk {
    const char *path;
    bool read_only, no_lock;
    const char *serial;
};

struct run_options {
    const char *kernel;      /* NULL: the embedded default guest */
    const char *initrd;
    const char *cmdline;
    uint64_t memory;
    unsigned cpus;
    kvmc_boot_protocol boot;
    unsigned mem_flags; /* KVMC_MEM_* from --mem-backing */
    enum { CONSOLE_OPT_STDIO, CONSOLE_OPT_FILE, CONSOLE_OPT_NONE } console;
    const char *console_path;
    uint64_t console_limit;   /* --console-limit: a console file's size limit */
    bool console_limit_set;
    bool help;
    bool version;             /* --version */
    struct run_disk disks[KVMC_MAX_VIRTIO_DEVICES];
    unsigned ndisks;
    bool rng;
    kvmc_virtio_transport transport; /* --transport */
    bool pit;                 /* --pit */
    const char *nets[4];      /* --net SPEC, checked by kvmc_config_add_net */
    unsigned nnets;
    unsigned vsock_cid;       /* 0: no vsock */
    const char *vsock_path;
    const char *vconsole_socket;
    const char *vfio[KVMC_MAX_VFIO_DEVICES]; /* --vfio BDF */
    unsigned nvfio;
    const char *restore;      /* --restore DIR */
    const char *snapshot_dir; /* --snapshot-on-signal DIR */
    bool seccomp_off; /* --seccomp off */
    bool jail;                /* --jail */
    bool jail_report;         /* --jail-report: print the jail as seen from inside */
    unsigned jail_uid, jail_gid; /* --jail-user UID[:GID], default 65534:65534 */
    char disk_specs[KVMC_MAX_VIRTIO_DEVICES][512]; /* storage for parsed --disk */
    char vsock_spec[512];     /* storage for parsed --vsock */
};

/* Parses "256M", "1G", "4096K", "1048576" (bytes) into *bytes.
 * Returns false on anything else, including overflow. */
bool parse_size(const char *s, uint64_t *bytes);

/* Parses the arguments after "run". On error writes one line naming the
 * problem into err (without "kvmc: ") and returns false. Values the library
 * configures are checked by the library: the message is its own. */
bool parse_run_options(int argc, char **argv, struct run_options *o, char *err,
                       unsigned errlen);

/* The "options:" part of `kvmc run --help`, from the same table. */
void print_run_options(FILE *out);

#endif
