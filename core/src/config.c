/* kvmc_config: a plain description of a VM, validated as it is set. */
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config.h"
#include "vfio/vfio.h"
#include "devmgr.h"
#include "error.h"

#define DEFAULT_MEMORY (256ull << 20)

int kvmc_config_new(kvmc_config **out)
{
    if (!out)
        return kvmc_fail(KVMC_EINVAL, "kvmc_config_new: out is NULL");
    kvmc_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return kvmc_fail(KVMC_ENOMEM, "allocating a config");
    cfg->memory = DEFAULT_MEMORY;
    cfg->cpus = 1;
    cfg->console.kind = CONSOLE_NONE;
    cfg->console.fd = -1;
    cfg->console_in_fd = -1;
    cfg->console_limit = CONSOLE_FILE_LIMIT_DEFAULT;
    *out = cfg;
    return KVMC_OK;
}

void kvmc_config_free(kvmc_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->kernel_path);
    free(cfg->kernel_image);
    free(cfg->initrd_path);
    free(cfg->cmdline);
    free(cfg->console_path);
    for (unsigned i = 0; i < cfg->ndisks; i++) {
        free(cfg->disks[i].path);
        free(cfg->disks[i].serial);
    }
    free(cfg->vconsole.path);
    free(cfg->vsock.path);
    free(cfg);
}

/* Replaces *slot with a copy of value (NULL clears it). */
static int set_string(char **slot, const char *value, const char *what)
{
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return kvmc_fail(KVMC_ENOMEM, "copying the %s", what);
    free(*slot);
    *slot = copy;
    return KVMC_OK;
}

#define CHECK_CFG(cfg)                                                         \
    do {                                                                       \
        if (!(cfg))                                                            \
            return kvmc_fail(KVMC_EINVAL, "%s: config is NULL", __func__);     \
    } while (0)

int kvmc_config_set_kernel(kvmc_config *cfg, const char *path)
{
    CHECK_CFG(cfg);
    if (!path || !*path)
        return kvmc_fail(KVMC_EINVAL, "kernel path is empty");
    free(cfg->kernel_image);
    cfg->kernel_image = NULL;
    cfg->kernel_image_len = 0;
    return set_string(&cfg->kernel_path, path, "kernel path");
}

int kvmc_config_set_kernel_image(kvmc_config *cfg, const void *data, size_t len)
{
    CHECK_CFG(cfg);
    if (!data || len == 0)
        return kvmc_fail(KVMC_EINVAL, "kernel image is empty");
    uint8_t *copy = malloc(len);
    if (!copy)
        return kvmc_fail(KVMC_ENOMEM, "copying a %zu-byte kernel image", len);
    memcpy(copy, data, len);
    free(cfg->kernel_image);
    free(cfg->kernel_path);
    cfg->kernel_path = NULL;
    cfg->kernel_image = copy;
    cfg->kernel_image_len = len;
    return KVMC_OK;
}

int kvmc_config_set_initrd(kvmc_config *cfg, const char *path)
{
    CHECK_CFG(cfg);
    return set_string(&cfg->initrd_path, path && *path ? path : NULL, "initrd path");
}

int kvmc_config_set_cmdline(kvmc_config *cfg, const char *cmdline)
{
    CHECK_CFG(cfg);
    return set_string(&cfg->cmdline, cmdline, "command line");
}

int kvmc_config_set_boot_protocol(kvmc_config *cfg, kvmc_boot_protocol proto)
{
    CHECK_CFG(cfg);
    if (proto != KVMC_BOOT_AUTO && proto != KVMC_BOOT_LINUX && proto != KVMC_BOOT_PVH)
        return kvmc_fail(KVMC_EINVAL, "unknown boot protocol %d", (int)proto);
    cfg->protocol = proto;
    return KVMC_OK;
}

int kvmc_config_set_memory(kvmc_config *cfg, uint64_t bytes)
{
    CHECK_CFG(cfg);
    if (bytes < KVMC_MIN_MEMORY)
        return kvmc_fail(KVMC_EINVAL, "memory %llu bytes is below the minimum of %llu MiB",
                         (unsigned long long)bytes, KVMC_MIN_MEMORY >> 20);
    if (bytes % (1u << 20))
        return kvmc_fail(KVMC_EINVAL, "memory %llu bytes is not a multiple of 1 MiB",
                         (unsigned long long)bytes);
    cfg->memory = bytes;
    return KVMC_OK;
}

int kvmc_config_set_memory_flags(kvmc_config *cfg, unsigned flags)
{
    CHECK_CFG(cfg);
    if (flags & ~(KVMC_MEM_MEMFD | KVMC_MEM_HUGEPAGES))
        return kvmc_fail(KVMC_EINVAL, "unknown memory flags 0x%x", flags);
    cfg->memory_flags = flags;
    return KVMC_OK;
}

int kvmc_config_set_cpus(kvmc_config *cfg, unsigned cpus)
{
    CHECK_CFG(cfg);
    if (cpus == 0 || cpus > KVMC_MAX_VCPUS)
        return kvmc_fail(KVMC_EINVAL, "cpus %u: must be between 1 and %u", cpus,
                         KVMC_MAX_VCPUS);
    cfg->cpus = cpus;
    return KVMC_OK;
}

static void reset_console(kvmc_config *cfg)
{
    free(cfg->console_path);
    cfg->console_path = NULL;
    cfg->console = (struct console_sink){.kind = CONSOLE_NONE, .fd = -1};
}

int kvmc_config_set_console_fd(kvmc_config *cfg, int out_fd)
{
    CHECK_CFG(cfg);
    reset_console(cfg);
    if (out_fd >= 0)
        cfg->console = (struct console_sink){.kind = CONSOLE_FD, .fd = out_fd};
    return KVMC_OK;
}

int kvmc_config_set_console_file(kvmc_config *cfg, const char *path)
{
    CHECK_CFG(cfg);
    if (!path || !*path)
        return kvmc_fail(KVMC_EINVAL, "console file path is empty");
    reset_console(cfg);
    cfg->console.kind = CONSOLE_FILE;
    return set_string(&cfg->console_path, path, "console path");
}

int kvmc_config_set_console_callback(kvmc_config *cfg, kvmc_console_fn fn, void *opaque)
{
    CHECK_CFG(cfg);
    reset_console(cfg);
    if (fn)
        cfg->console = (struct console_sink){.kind = CONSOLE_CALLBACK, .fd = -1,
                                             .fn = fn, .opaque = opaque};
    return KVMC_OK;
}

int kvmc_config_set_console_limit(kvmc_config *cfg, uint64_t bytes)
{
    CHECK_CFG(cfg);
    cfg->console_limit = bytes;
    return KVMC_OK;
}

int kvmc_config_set_console_input_fd(kvmc_config *cfg, int in_fd)
{
    CHECK_CFG(cfg);
    cfg->console_in_fd = in_fd < 0 ? -1 : in_fd;
    return KVMC_OK;
}

/* Room for one more virtio device, unless the setter replaces one that is
 * already configured (`replacing`). */
static int check_room(const kvmc_config *cfg, bool replacing)
{
    if (!replacing && devmgr_virtio_count(cfg) == KVMC_MAX_VIRTIO_DEVICES)
        return kvmc_fail(KVMC_EINVAL, "at most %u virtio devices", KVMC_MAX_VIRTIO_DEVICES);
    return KVMC_OK;
}

int kvmc_config_add_disk(kvmc_config *cfg, const char *path, unsigned flags,
                         const char *serial)
{
    CHECK_CFG(cfg);
    if (!path || !*path)
        return kvmc_fail(KVMC_EINVAL, "disk path is empty");
    if (flags & ~(KVMC_DISK_READ_ONLY | KVMC_DISK_NO_LOCK))
        return kvmc_fail(KVMC_EINVAL, "unknown disk flags 0x%x", flags);
    if (serial && strlen(serial) > 20)
        return kvmc_fail(KVMC_EINVAL, "disk serial '%s' is longer than 20 bytes", serial);
    if (check_room(cfg, false))
        return KVMC_EINVAL;
    struct disk_config *d = &cfg->disks[cfg->ndisks];
    *d = (struct disk_config){.flags = flags};
    if (set_string(&d->path, path, "disk path") ||
        (serial && set_string(&d->serial, serial, "disk serial"))) {
        free(d->path);
        *d = (struct disk_config){0};
        return KVMC_ENOMEM;
    }
    cfg->ndisks++;
    return KVMC_OK;
}

int kvmc_config_set_rng(kvmc_config *cfg, int enabled)
{
    CHECK_CFG(cfg);
    if (enabled && check_room(cfg, cfg->rng))
        return KVMC_EINVAL;
    cfg->rng = enabled != 0;
    return KVMC_OK;
}

int kvmc_config_set_virtio_transport(kvmc_config *cfg, kvmc_virtio_transport transport)
{
    CHECK_CFG(cfg);
    if (transport != KVMC_VIRTIO_MMIO && transport != KVMC_VIRTIO_PCI)
        return kvmc_fail(KVMC_EINVAL, "unknown virtio transport %d (0: mmio, 1: pci)",
                         (int)transport);
    cfg->transport = transport;
    return KVMC_OK;
}

int kvmc_config_set_vcpu_thread_name(kvmc_config *cfg, const char *prefix)
{
    CHECK_CFG(cfg);
    size_t n = prefix ? strlen(prefix) : 0;
    if (n > KVMC_VCPU_NAME_MAX)
        return kvmc_fail(KVMC_EINVAL, "vCPU thread name '%.32s': %zu bytes, at most %u (Linux "
                                      "names threads in 15, the index included)",
                         prefix, n, KVMC_VCPU_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (prefix[i] < 0x20 || prefix[i] > 0x7e)
            return kvmc_fail(KVMC_EINVAL, "vCPU thread name: byte %zu (0x%02x) is not "
                                          "printable ASCII", i, (unsigned char)prefix[i]);
    memcpy(cfg->vcpu_name, n ? prefix : "", n + 1);
    return KVMC_OK;
}

int kvmc_config_add_vfio(kvmc_config *cfg, const char *address)
{
    CHECK_CFG(cfg);
    char bdf[VFIO_BDF_LEN];
    if (!vfio_parse_bdf(address, bdf))
        return kvmc_fail(KVMC_EINVAL, "VFIO device '%s' is not a PCI address "
                         "(domain:bus:device.function, e.g. 0000:00:03.0)",
                         address ? address : "(null)");
    for (unsigned i = 0; i < cfg->nvfio; i++)
        if (strcmp(cfg->vfio[i], bdf) == 0)
            return kvmc_fail(KVMC_EINVAL, "VFIO device %s is added twice", bdf);
    if (cfg->nvfio == KVMC_MAX_VFIO_DEVICES)
        return kvmc_fail(KVMC_EINVAL, "VFIO device %s: at most %u VFIO devices", bdf,
                         KVMC_MAX_VFIO_DEVICES);
    memcpy(cfg->vfio[cfg->nvfio++], bdf, sizeof(bdf));
    return KVMC_OK;
}

int kvmc_config_set_pit(kvmc_config *cfg, int enabled)
{
    CHECK_CFG(cfg);
    cfg->pit = enabled != 0;
    return KVMC_OK;
}

int kvmc_config_set_virtio_console_socket(kvmc_config *cfg, const char *path)
{
    CHECK_CFG(cfg);
    if (!path || !*path)
        return kvmc_fail(KVMC_EINVAL, "virtio-console socket path is empty");
    if (check_room(cfg, cfg->vconsole.enabled))
        return KVMC_EINVAL;
    if (set_string(&cfg->vconsole.path, path, "virtio-console socket path"))
        return KVMC_ENOMEM;
    cfg->vconsole.enabled = true;
    cfg->vconsole.fn = NULL;
    return KVMC_OK;
}

int kvmc_config_set_virtio_console_callback(kvmc_config *cfg, kvmc_console_fn fn,
                                            void *opaque)
{
    CHECK_CFG(cfg);
    if (!fn)
        return kvmc_fail(KVMC_EINVAL, "virtio-console callback is NULL");
    if (check_room(cfg, cfg->vconsole.enabled))
        return KVMC_EINVAL;
    set_string(&cfg->vconsole.path, NULL, "virtio-console socket path");
    cfg->vconsole = (struct vconsole_config){.enabled = true, .fn = fn, .opaque = opaque};
    return KVMC_OK;
}

int kvmc_config_set_vsock(kvmc_config *cfg, uint32_t guest_cid, const char *uds_path)
{
    CHECK_CFG(cfg);
    if (guest_cid < 3 || guest_cid == 0xffffffffu)
        return kvmc_fail(KVMC_EINVAL, "vsock guest CID %u is reserved (use 3..4294967294)",
                         guest_cid);
    if (!uds_path || !*uds_path)
        return kvmc_fail(KVMC_EINVAL, "vsock socket path is empty");
    /* Guest connections go to "<path>_<port>": that must fit a Unix address. */
    if (strlen(uds_path) + sizeof("_4294967295") > sizeof(((struct sockaddr_un *)0)->sun_path))
        return kvmc_fail(KVMC_EINVAL, "vsock socket path '%s' is too long: with \"_<port>\" "
                         "added it must fit in %zu bytes", uds_path,
                         sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    if (check_room(cfg, cfg->vsock.enabled))
        return KVMC_EINVAL;
    if (set_string(&cfg->vsock.path, uds_path, "vsock socket path"))
        return KVMC_ENOMEM;
    cfg->vsock.enabled = true;
    cfg->vsock.cid = guest_cid;
    return KVMC_OK;
}

int kvmc_config_set_vsock_connector(kvmc_config *cfg, kvmc_vsock_connect_fn fn, void *opaque)
{
    CHECK_CFG(cfg);
    cfg->vsock.connect = fn;
    cfg->vsock.connect_opaque = fn ? opaque : NULL;
    return KVMC_OK;
}

int kvmc_config_add_net(kvmc_config *cfg, const char *spec)
{
    CHECK_CFG(cfg);
    if (cfg->nnets == KVMC_MAX_NETS)
        return kvmc_fail(KVMC_EINVAL, "at most %d network devices", KVMC_MAX_NETS);
    if (check_room(cfg, false))
        return KVMC_EINVAL;
    int err = net_spec_parse(spec, &cfg->nets[cfg->nnets]);
    if (err)
        return err;
    cfg->nnets++;
    return KVMC_OK;
}
