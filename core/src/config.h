/* kvmc_config: a plain description of a VM, filled by the kvmc_config_*
 * setters (config.c) and read when the VM is created. Devices read their own
 * part of it; nothing here refers to a running VM. */
#ifndef KVMC_CONFIG_H
#define KVMC_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "console.h"
#include "kvmc/kvmc.h"
#include "net_spec.h"

struct disk_config {
    char *path;
    char *serial;
    unsigned flags; /* KVMC_DISK_* */
};

struct vconsole_config {
    bool enabled;
    char *path;          /* socket mode: listen here */
    kvmc_console_fn fn;  /* callback mode */
    void *opaque;
};

struct vsock_config {
    bool enabled;
    uint32_t cid;
    char *path;
    kvmc_vsock_connect_fn connect; /* NULL: connect to "<path>_<port>" ourselves */
    void *connect_opaque;
};

#define KVMC_MAX_NETS 4

struct kvmc_config {
    char *kernel_path;
    uint8_t *kernel_image; /* set by kvmc_config_set_kernel_image */
    size_t kernel_image_len;
    char *initrd_path;
    char *cmdline;
    kvmc_boot_protocol protocol;
    uint64_t memory;
    unsigned memory_flags;
    unsigned cpus;
    struct console_sink console; /* CONSOLE_FILE holds a path, not an fd */
    char *console_path;
    uint64_t console_limit;      /* a console file's limit, bytes; 0: none */
    int console_in_fd;
    struct disk_config disks[KVMC_MAX_VIRTIO_DEVICES];
    unsigned ndisks;
    bool rng;
    bool pit;
    struct vconsole_config vconsole;
    struct vsock_config vsock;
    struct net_config nets[KVMC_MAX_NETS];
    unsigned nnets;
    kvmc_virtio_transport transport;
    char vfio[KVMC_MAX_VFIO_DEVICES][16]; /* canonical PCI addresses */
    unsigned nvfio;
    char vcpu_name[KVMC_VCPU_NAME_MAX + 1]; /* the vCPU threads' prefix; "": kvmc's */
};

#endif
