"""The C declarations of libkvmc that the binding uses (cffi, ABI mode: no
compiler is needed to install or import the package).

They restate core/include/kvmc/kvmc.h; tests/test_parity.py fails when the
two disagree (a function, a parameter, a struct field or a constant), so a
change to the header cannot go unnoticed here."""
import os

from cffi import FFI

CDEF = """
typedef struct kvmc_config kvmc_config;
typedef struct kvmc_vm kvmc_vm;

typedef enum kvmc_error {
    KVMC_OK = 0, KVMC_EINVAL = -1, KVMC_ENOMEM = -2, KVMC_EIO = -3, KVMC_EKVM = -4,
    KVMC_EFORMAT = -5, KVMC_ESTATE = -6, KVMC_EBUSY = -7, KVMC_ETIMEDOUT = -8,
    KVMC_ENOTSUP = -9
} kvmc_error;
typedef enum kvmc_boot_protocol {
    KVMC_BOOT_AUTO = 0, KVMC_BOOT_LINUX = 1, KVMC_BOOT_PVH = 2
} kvmc_boot_protocol;
typedef enum kvmc_vm_state {
    KVMC_STATE_INVALID = -1, KVMC_STATE_CREATED = 0, KVMC_STATE_RUNNING = 1,
    KVMC_STATE_PAUSED = 2, KVMC_STATE_EXITED = 3
} kvmc_vm_state;
typedef enum kvmc_exit_reason {
    KVMC_EXIT_NONE = 0, KVMC_EXIT_POWEROFF = 1, KVMC_EXIT_RESET = 2, KVMC_EXIT_STOPPED = 3,
    KVMC_EXIT_TRIPLE_FAULT = 4, KVMC_EXIT_INTERNAL_ERROR = 5, KVMC_EXIT_FAIL_ENTRY = 6,
    KVMC_EXIT_VMM_ERROR = 7, KVMC_EXIT_GUEST_PANIC = 8
} kvmc_exit_reason;
typedef enum kvmc_event {
    KVMC_EVENT_STARTED = 1, KVMC_EVENT_PAUSED = 2, KVMC_EVENT_RESUMED = 3,
    KVMC_EVENT_EXITED = 4
} kvmc_event;

typedef struct kvmc_exit_info {
    kvmc_exit_reason reason;
    int32_t code;
    int32_t vcpu;
    uint64_t rip, rsp, rflags, cr0, cr3, cr4, efer;
    uint16_t cs;
    char message[256];
    uint64_t reserved[8];
} kvmc_exit_info;

typedef struct kvmc_device_ops {
    unsigned int version;
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    void (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t value);
} kvmc_device_ops;

typedef struct kvmc_regs {
    unsigned int version;
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
} kvmc_regs;

typedef struct kvmc_stats {
    uint32_t size;
    uint32_t reserved;
    uint64_t exit_io_in, exit_io_out, exit_mmio_read, exit_mmio_write;
    uint64_t exit_other;
    uint64_t block_read_count, block_read_bytes, block_write_count, block_write_bytes;
    uint64_t block_flush_count;
    uint64_t block_errors;
    uint64_t net_rx_packets, net_rx_bytes;
    uint64_t net_rx_dropped;
    uint64_t net_tx_packets, net_tx_bytes;
    uint64_t vsock_conns_opened, vsock_conns_closed, vsock_rx_bytes, vsock_tx_bytes;
    uint64_t rng_bytes;
    uint64_t virtio_errors;
} kvmc_stats;

typedef struct kvmc_snapshot_options {
    unsigned int version;
    unsigned int flags;
} kvmc_snapshot_options;

typedef enum kvmc_virtio_transport {
    KVMC_VIRTIO_MMIO = 0, KVMC_VIRTIO_PCI = 1
} kvmc_virtio_transport;

typedef struct kvmc_pci_bar {
    uint64_t size;
    unsigned int kind;
} kvmc_pci_bar;
typedef struct kvmc_pci_device {
    unsigned int version;
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_id;
    uint32_t class_code;
    uint8_t revision;
    kvmc_pci_bar bars[6];
    unsigned int msix_vectors;
    uint64_t (*read)(void *opaque, unsigned bar, uint64_t offset, unsigned size);
    void (*write)(void *opaque, unsigned bar, uint64_t offset, unsigned size, uint64_t value);
} kvmc_pci_device;

typedef void (*kvmc_console_fn)(void *opaque, const uint8_t *data, size_t len);
typedef void (*kvmc_event_fn)(void *opaque, kvmc_vm *vm, kvmc_event event);
typedef int (*kvmc_vsock_connect_fn)(void *opaque, uint32_t port);

#define KVMC_MEM_MEMFD 1
#define KVMC_MEM_HUGEPAGES 2
#define KVMC_DISK_READ_ONLY 1
#define KVMC_DISK_NO_LOCK 2
#define KVMC_MAX_VFIO_DEVICES 8
#define KVMC_MAX_VIRTIO_DEVICES 8
#define KVMC_MAX_VCPUS 64
#define KVMC_VCPU_NAME_MAX 13
#define KVMC_DEVICE_OPS_VERSION 1
#define KVMC_REGS_VERSION 1
#define KVMC_SNAPSHOT_OPTIONS_VERSION 1
#define KVMC_SNAPSHOT_DIFF 1
#define KVMC_PCI_DEVICE_VERSION 1
#define KVMC_PCI_BAR_NONE 0
#define KVMC_PCI_BAR_MEM32 1
#define KVMC_PCI_BAR_MEM64 2
#define KVMC_PCI_BAR_IO 3
#define KVMC_PCI_BAR_PREFETCHABLE 256
#define KVMC_PCI_MAX_BARS 6
#define KVMC_PCI_MAX_MSIX_VECTORS 2048

const char *kvmc_last_error(void);
const char *kvmc_strerror(int err);
const char *kvmc_version_string(void);
const char *kvmc_exit_reason_name(kvmc_exit_reason reason);
int kvmc_kick_signal(void);

int kvmc_config_new(kvmc_config **out);
void kvmc_config_free(kvmc_config *cfg);
int kvmc_config_set_kernel(kvmc_config *cfg, const char *path);
int kvmc_config_set_kernel_image(kvmc_config *cfg, const void *data, size_t len);
int kvmc_config_set_initrd(kvmc_config *cfg, const char *path);
int kvmc_config_set_cmdline(kvmc_config *cfg, const char *cmdline);
int kvmc_config_set_boot_protocol(kvmc_config *cfg, kvmc_boot_protocol proto);
int kvmc_config_set_memory(kvmc_config *cfg, uint64_t bytes);
int kvmc_config_set_memory_flags(kvmc_config *cfg, unsigned flags);
int kvmc_config_set_cpus(kvmc_config *cfg, unsigned cpus);
int kvmc_config_set_console_fd(kvmc_config *cfg, int out_fd);
int kvmc_config_set_console_file(kvmc_config *cfg, const char *path);
int kvmc_config_set_console_callback(kvmc_config *cfg, kvmc_console_fn fn, void *opaque);
int kvmc_config_set_console_limit(kvmc_config *cfg, uint64_t bytes);
int kvmc_config_set_console_input_fd(kvmc_config *cfg, int in_fd);
int kvmc_config_add_disk(kvmc_config *cfg, const char *path, unsigned flags,
                         const char *serial);
int kvmc_config_set_rng(kvmc_config *cfg, int enabled);
int kvmc_config_set_virtio_console_socket(kvmc_config *cfg, const char *path);
int kvmc_config_set_virtio_console_callback(kvmc_config *cfg, kvmc_console_fn fn,
                                            void *opaque);
int kvmc_config_set_vsock(kvmc_config *cfg, uint32_t guest_cid, const char *uds_path);
int kvmc_config_set_vsock_connector(kvmc_config *cfg, kvmc_vsock_connect_fn fn, void *opaque);
int kvmc_config_add_net(kvmc_config *cfg, const char *spec);
int kvmc_config_set_pit(kvmc_config *cfg, int enabled);
int kvmc_config_set_virtio_transport(kvmc_config *cfg, kvmc_virtio_transport transport);
int kvmc_config_set_vcpu_thread_name(kvmc_config *cfg, const char *prefix);
int kvmc_config_add_vfio(kvmc_config *cfg, const char *address);

int kvmc_vm_create(const kvmc_config *cfg, kvmc_vm **out);
void kvmc_vm_destroy(kvmc_vm *vm);
int kvmc_vm_set_event_callback(kvmc_vm *vm, kvmc_event_fn fn, void *opaque);
int kvmc_vm_start(kvmc_vm *vm);
int kvmc_vm_wait(kvmc_vm *vm, int timeout_ms, kvmc_exit_info *info);
int kvmc_vm_stop(kvmc_vm *vm);
int kvmc_vm_pause(kvmc_vm *vm);
int kvmc_vm_resume(kvmc_vm *vm);
kvmc_vm_state kvmc_vm_get_state(const kvmc_vm *vm);
unsigned kvmc_vm_cpu_count(const kvmc_vm *vm);
uint64_t kvmc_vm_memory_size(const kvmc_vm *vm);
int kvmc_vm_read_memory(kvmc_vm *vm, uint64_t gpa, void *buf, size_t len);
int kvmc_vm_virtio_console_write(kvmc_vm *vm, const void *data, size_t len, size_t *written);
int kvmc_vm_send_ctrl_alt_del(kvmc_vm *vm);
int kvmc_vm_get_stats(const kvmc_vm *vm, kvmc_stats *stats);
int kvmc_vm_write_memory(kvmc_vm *vm, uint64_t gpa, const void *buf, size_t len);
int kvmc_vm_get_regs(kvmc_vm *vm, unsigned vcpu, kvmc_regs *regs);
int kvmc_vm_set_regs(kvmc_vm *vm, unsigned vcpu, const kvmc_regs *regs);
int kvmc_vm_snapshot(kvmc_vm *vm, const char *dir);
int kvmc_vm_snapshot_ext(kvmc_vm *vm, const char *dir, const kvmc_snapshot_options *opts);
int kvmc_vm_restore(kvmc_vm *vm, const char *dir);
int kvmc_vm_reset_to_snapshot(kvmc_vm *vm);
int kvmc_vm_set_seccomp(kvmc_vm *vm, int enabled);
int kvmc_seccomp_confine_control_thread(void);
int kvmc_vm_add_pio_device(kvmc_vm *vm, uint16_t base, uint16_t size,
                           const kvmc_device_ops *ops, void *opaque);
int kvmc_vm_add_mmio_device(kvmc_vm *vm, uint64_t base, uint64_t size,
                            const kvmc_device_ops *ops, void *opaque);
int kvmc_vm_set_irq_line(kvmc_vm *vm, unsigned gsi, int level);
int kvmc_vm_add_pci_device(kvmc_vm *vm, const kvmc_pci_device *dev, void *opaque,
                           unsigned *slot);
int kvmc_vm_pci_msix_notify(kvmc_vm *vm, unsigned slot, unsigned vector);
"""

ffi = FFI()
ffi.cdef(CDEF)


BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libkvmc.so.1")


def _where():
    """Which libkvmc to load: $KVMC_LIBRARY, else the one the wheel carries
    next to this file, else the system's (an installed libkvmc1)."""
    path = os.environ.get("KVMC_LIBRARY")
    if path:
        return path
    return BUNDLED if os.path.exists(BUNDLED) else "libkvmc.so.1"


def _load():
    path = _where()
    try:
        return ffi.dlopen(path), path
    except OSError as e:
        raise ImportError(
            f"cannot load libkvmc ({path}): {e}; reinstall the package (its wheel carries "
            "libkvmc), install kvmc, or set KVMC_LIBRARY to the path of libkvmc.so.1") from e


lib, LIBRARY = _load()
