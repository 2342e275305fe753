/*
 * kvmc: create, run and control KVM guests without QEMU.
 *
 * Conventions (apply to every function below unless it says otherwise):
 *  - Handles are opaque. Whoever gets a handle from a *_new or *_create
 *    function owns it and releases it with the matching _free or _destroy function.
 *  - Functions return KVMC_OK (0) or a negative kvmc_error; each lists the
 *    codes it can return under @return. On error, a human-readable message
 *    naming the bad input is available from kvmc_last_error() on the same
 *    thread until the next failing call.
 *  - No global state: any number of VMs may live in one process.
 *  - Strings passed in are copied; the caller keeps ownership of its buffers.
 *
 * ABI (libkvmc.so.1, since 1.0): every exported symbol is listed by name in
 * the library's version script, under the node of the release that added
 * it; symbols are only ever added. Structs the caller fills start with a
 * `version` field: start from the struct's *_INIT macro, so a program
 * built against this header keeps working with later libraries, which
 * read the struct as the version it says. Structs the library fills keep
 * reserved room at their end for fields added later.
 *
 * Threading:
 *  - A kvmc_config is not thread-safe; build it on one thread.
 *  - kvmc_vm functions may be called from any thread, concurrently, except
 *    kvmc_vm_destroy(), which must be the last call on that VM.
 *  - Each vCPU runs on its own thread created by kvmc_vm_start(). Device
 *    callbacks (PIO/MMIO read/write) run on the vCPU thread that made the
 *    access, so a device shared by several vCPUs must do its own locking.
 *    Console callbacks run on the vCPU thread that wrote the byte.
 *    Lifecycle callbacks run on the thread that caused the transition.
 *  - A callback may call kvmc_vm_stop(), kvmc_vm_read_memory(),
 *    kvmc_vm_write_memory() and kvmc_vm_set_irq_line() on its VM. On the
 *    VM's own threads (in any device, console or event callback of that
 *    VM), kvmc_vm_wait() and kvmc_vm_pause() fail with KVMC_ESTATE and
 *    kvmc_vm_destroy() only stops the VM: all three wait for those threads,
 *    including the one running the callback. Destroy the VM later from
 *    another thread.
 *  - Every kvmc_vm_* function may be called in every state (created,
 *    running, paused, exited); those that do not apply return KVMC_ESTATE.
 *    A NULL handle is refused with KVMC_EINVAL.
 *
 * Signals: to kick a vCPU thread out of KVM_RUN, kvmc sends it a real-time
 * signal, SIGRTMIN+6 (kvmc_kick_signal() returns the number), and installs
 * a no-op handler for it with SA_ONSTACK when the first VM is created. Do
 * not use that signal elsewhere.
 */
#ifndef KVMC_KVMC_H
#define KVMC_KVMC_H

#include <stddef.h>
#include <stdint.h>

#include "kvmc/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(KVMC_STATIC_BUILD)
#define KVMC_API __attribute__((visibility("default")))
#else
#define KVMC_API
#endif

/* ---------------------------------------------------------------- errors */

typedef enum kvmc_error {
    KVMC_OK = 0,
    KVMC_EINVAL = -1,    /* an argument or configuration value is invalid */
    KVMC_ENOMEM = -2,    /* out of host memory */
    KVMC_EIO = -3,       /* a host file could not be opened or read */
    KVMC_EKVM = -4,      /* /dev/kvm is missing or an ioctl failed */
    KVMC_EFORMAT = -5,   /* a kernel or initrd image is malformed */
    KVMC_ESTATE = -6,    /* the call is not valid in the VM's current state */
    KVMC_EBUSY = -7,     /* a bus range overlaps an existing device, or a host
                          * device is in use elsewhere */
    KVMC_ETIMEDOUT = -8, /* a wait ran out of time */
    KVMC_ENOTSUP = -9,   /* the host or the image lacks a needed feature */
} kvmc_error;

/* Message for the last failure on the calling thread ("" if none).
 * @return a thread-local string, valid until the thread's next kvmc call */
KVMC_API const char *kvmc_last_error(void);
/* Static description of an error code.
 * @return a static string; "unknown error" for a value not in kvmc_error */
KVMC_API const char *kvmc_strerror(int err);

/* Library version, for checking against KVMC_VERSION_* at run time.
 * @return a static string, "MAJOR.MINOR.PATCH" */
KVMC_API const char *kvmc_version_string(void);

/* The signal kvmc kicks vCPU threads with (see Signals above). Since 1.0.
 * @return SIGRTMIN + 6 */
KVMC_API int kvmc_kick_signal(void);

/* ---------------------------------------------------------------- config */

typedef struct kvmc_config kvmc_config;

typedef enum kvmc_boot_protocol {
    KVMC_BOOT_AUTO = 0,  /* PVH if an ELF has the PVH note, else Linux 64-bit */
    KVMC_BOOT_LINUX = 1, /* Linux 64-bit boot protocol (bzImage or ELF) */
    KVMC_BOOT_PVH = 2,   /* PVH 32-bit entry from XEN_ELFNOTE_PHYS32_ENTRY */
} kvmc_boot_protocol;

/* Bits for kvmc_config_set_memory_flags(). */
#define KVMC_MEM_MEMFD 0x1u     /* back guest RAM with a memfd (shareable) */
#define KVMC_MEM_HUGEPAGES 0x2u /* use hugetlbfs pages (MFD_HUGETLB) */

/* Console output sink: called with bytes the guest wrote to its console. */
typedef void (*kvmc_console_fn)(void *opaque, const uint8_t *data, size_t len);

/* A configuration with the defaults: 1 vCPU, 256 MiB, no console output,
 * no devices beyond the built-in ones.
 * @return KVMC_OK; KVMC_EINVAL (out is NULL); KVMC_ENOMEM */
KVMC_API int kvmc_config_new(kvmc_config **out);
/* NULL is fine. */
KVMC_API void kvmc_config_free(kvmc_config *cfg);

/* Every kvmc_config_* setter below returns KVMC_OK, or KVMC_EINVAL for a
 * NULL cfg or a value it names as invalid, or KVMC_ENOMEM when copying a
 * string fails; nothing is checked against the host (files, KVM) until
 * kvmc_vm_create. A setter that fails leaves the config as it was. */

/* Kernel from a file (bzImage, or ELF vmlinux with or without a PVH note). */
KVMC_API int kvmc_config_set_kernel(kvmc_config *cfg, const char *path);
/* Kernel from memory (copied). */
KVMC_API int kvmc_config_set_kernel_image(kvmc_config *cfg, const void *data,
                                          size_t len);
KVMC_API int kvmc_config_set_initrd(kvmc_config *cfg, const char *path);
KVMC_API int kvmc_config_set_cmdline(kvmc_config *cfg, const char *cmdline);
KVMC_API int kvmc_config_set_boot_protocol(kvmc_config *cfg,
                                           kvmc_boot_protocol proto);
/* Guest RAM in bytes; a multiple of 1 MiB, at least KVMC_MIN_MEMORY. */
KVMC_API int kvmc_config_set_memory(kvmc_config *cfg, uint64_t bytes);
KVMC_API int kvmc_config_set_memory_flags(kvmc_config *cfg, unsigned flags);
/* Number of vCPUs, 1..KVMC_MAX_VCPUS (and at most what KVM allows). */
KVMC_API int kvmc_config_set_cpus(kvmc_config *cfg, unsigned cpus);

/* Console (COM1). The default is no output at all. Each setter replaces the
 * previous choice. The fd is not closed by kvmc.
 *
 * Output to an fd or a file never blocks the guest: a thread of kvmc's
 * writes it from a 64 KiB buffer, and while nobody reads (a full pipe, a
 * stopped terminal) what does not fit is dropped (kvmc says so once on
 * stderr). kvmc_vm_wait() returns once the last output is written, or
 * after 0.5 s in which the reader took nothing. A callback runs on the
 * vCPU thread that wrote the byte and may block it. */
KVMC_API int kvmc_config_set_console_fd(kvmc_config *cfg, int out_fd);
KVMC_API int kvmc_config_set_console_file(kvmc_config *cfg, const char *path);
KVMC_API int kvmc_config_set_console_callback(kvmc_config *cfg,
                                              kvmc_console_fn fn, void *opaque);
/* The size a console file may grow to: 64 MiB by default, 0 for no limit.
 * Output past it is dropped, and a last line in the file says so. Since
 * 0.4. */
KVMC_API int kvmc_config_set_console_limit(kvmc_config *cfg, uint64_t bytes);
/* Where guest console input comes from (-1: none, the default). */
KVMC_API int kvmc_config_set_console_input_fd(kvmc_config *cfg, int in_fd);

/* virtio devices (virtio-mmio, described to the guest in ACPI). At most
 * KVMC_MAX_VIRTIO_DEVICES in all: one more is KVMC_EINVAL. */
#define KVMC_DISK_READ_ONLY 0x1u
#define KVMC_DISK_NO_LOCK 0x2u /* since 0.4: do not lock the image (see below) */
/* A raw disk image as virtio-blk. serial (may be NULL) is what the guest
 * reads as the disk's ID, at most 20 bytes.
 *
 * Since 0.4 the image is locked while the VM exists, as QEMU does: an
 * exclusive lock for a writable disk, a shared one for a read-only disk
 * (an open file description lock, F_OFD_SETLK). A second VM or program
 * that wants the image writable, or a writable disk that another holds
 * even read-only, makes kvmc_vm_create fail with KVMC_EBUSY naming the
 * image. KVMC_DISK_NO_LOCK skips the lock (a cluster file system that
 * arbitrates itself, say). */
KVMC_API int kvmc_config_add_disk(kvmc_config *cfg, const char *path, unsigned flags,
                                  const char *serial);
/* A virtio-rng device fed from getrandom(2). */
KVMC_API int kvmc_config_set_rng(kvmc_config *cfg, int enabled);

/* virtio-console: a second console (hvc0 in Linux), owned either by one
 * client at a time of a Unix socket kvmc listens on, or by a callback that
 * gets the guest's output on the VM's I/O thread (input then comes from
 * kvmc_vm_virtio_console_write). While no socket client is connected, guest
 * output waits in the queue: nothing is dropped. Each setter replaces the
 * other. Since 0.2. */
KVMC_API int kvmc_config_set_virtio_console_socket(kvmc_config *cfg, const char *path);
KVMC_API int kvmc_config_set_virtio_console_callback(kvmc_config *cfg,
                                                     kvmc_console_fn fn, void *opaque);

/* virtio-vsock with Firecracker's Unix-socket convention. Host to guest: a
 * host program connects to uds_path and writes "CONNECT <port>\n"; kvmc
 * answers "OK <host port>\n" once the guest accepts, then the socket carries
 * the stream. Guest to host: a guest connection to CID 2, port P is
 * connected to the Unix socket "<uds_path>_<P>". guest_cid >= 3. Since 0.2. */
KVMC_API int kvmc_config_set_vsock(kvmc_config *cfg, uint32_t guest_cid,
                                   const char *uds_path);

/* Connects a guest's vsock connection to host port `port`: returns a
 * connected stream socket, which kvmc then owns (and makes non-blocking),
 * or -1 to refuse (the guest sees a reset). Runs on the VM's I/O thread,
 * which serves every device: it must not block for long, and with
 * kvmc_vm_set_seccomp() on it runs under that thread's list (socket I/O on
 * descriptors it has, sendmsg/recvmsg, close: see core/tools/seccomp_policy.c). */
typedef int (*kvmc_vsock_connect_fn)(void *opaque, uint32_t port);
/* Replaces how guest connections to the host are made (by default kvmc
 * connects to "<uds_path>_<port>" itself): a program can route them
 * anywhere, or a privileged helper can make them for a confined VMM (what
 * `kvmc run --jail` does). NULL restores the default. Since 0.4. */
KVMC_API int kvmc_config_set_vsock_connector(kvmc_config *cfg, kvmc_vsock_connect_fn fn,
                                             void *opaque);

/* A virtio-net device, described by spec:
 *   "user[,mac=M][,hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
 *        [,dns-server=IPV4[:PORT]]"
 *       user-mode networking (libslirp), no root and no set-up: network
 *       10.0.2.0/24, gateway and host 10.0.2.2, DNS 10.0.2.3, DHCP hands
 *       out 10.0.2.15. hostfwd forwards a host port (on 127.0.0.1 unless an
 *       address is given) to the guest; udp: works too. DNS queries to
 *       10.0.2.3 go to dns-server, by default the first nameserver of the
 *       host's /etc/resolv.conf as it was when the VM was created (UDP only).
 *       A guest holds at most 128 host sockets at a time; further
 *       connections wait until some close.
 *   "tap=IFNAME[,mac=M]"
 *       an existing or new host tap interface (needs CAP_NET_ADMIN to create).
 * The default MAC is 52:54:00:12:34:(0x56 + index). At most 4. Since 0.2. */
KVMC_API int kvmc_config_add_net(kvmc_config *cfg, const char *spec);

/* An i8254 PIT (ports 0x40-0x43, IRQ 0), emulated in the kernel. Off by
 * default since 0.3: Linux on KVM keeps time with kvmclock and the local
 * APIC timer and boots without it (measured in the nested lab), and
 * tearing a PIT down costs the host about 18 ms at VM exit (two SRCU
 * grace periods and a kernel worker). Turn it on for guests that calibrate
 * or tick with the PIT. Since 0.3. */
KVMC_API int kvmc_config_set_pit(kvmc_config *cfg, int enabled);

/* How virtio devices reach the guest: virtio-mmio (described in ACPI, one
 * interrupt line each) or virtio-pci (modern virtio 1.x on kvmc's PCIe root
 * complex, an MSI-X vector per queue). Every virtio device of the VM uses
 * the same one. Since 1.0.
 * @return KVMC_OK; KVMC_EINVAL (NULL cfg, unknown transport) */
typedef enum kvmc_virtio_transport {
    KVMC_VIRTIO_MMIO = 0,
    KVMC_VIRTIO_PCI = 1,
} kvmc_virtio_transport;
KVMC_API int kvmc_config_set_virtio_transport(kvmc_config *cfg,
                                              kvmc_virtio_transport transport);

/* Names the vCPU threads `prefix` followed by the vCPU's index ("kvmc-vcpu0"
 * by default), as tools like ps and top show them: for a program with its
 * own convention, such as Firecracker's "fc_vcpu 0", by which Kata
 * Containers finds its vCPU threads. At most KVMC_VCPU_NAME_MAX bytes of
 * printable ASCII, so that the name with any index fits Linux's 15. NULL
 * or "" restores the default. Since 1.2.
 * @return KVMC_OK; KVMC_EINVAL (NULL cfg, prefix too long or not printable) */
KVMC_API int kvmc_config_set_vcpu_thread_name(kvmc_config *cfg, const char *prefix);
#define KVMC_VCPU_NAME_MAX 13u

/* Passes the host PCI device at `address` ("0000:00:03.0", or "00:03.0"
 * for domain 0) through to the guest with VFIO: the device must be bound
 * to vfio-pci, alone in its IOMMU group (or with the rest of the group
 * bound to vfio-pci too), and have MSI-X. It appears on the guest's PCI
 * bus with its own IDs and BARs; all guest RAM is mapped for its DMA (and
 * so pinned) when the VM is created, which is also when the device is
 * opened and reset. At most KVMC_MAX_VFIO_DEVICES. The checks of the host
 * (driver, IOMMU, group, permission, busy) happen in kvmc_vm_create, whose
 * error names the device. Since 1.1.
 * @return KVMC_OK; KVMC_EINVAL (NULL cfg, not a PCI address, the same
 *   device twice, too many devices); KVMC_ENOMEM */
KVMC_API int kvmc_config_add_vfio(kvmc_config *cfg, const char *address);

#define KVMC_MAX_VFIO_DEVICES 8u
#define KVMC_MAX_VIRTIO_DEVICES 8u
#define KVMC_MIN_MEMORY (4ull << 20)
#define KVMC_MAX_VCPUS 64u

/* ------------------------------------------------------------------- VM */

typedef struct kvmc_vm kvmc_vm;

typedef enum kvmc_vm_state {
    KVMC_STATE_INVALID = -1, /* kvmc_vm_get_state(NULL); since 0.4 */
    KVMC_STATE_CREATED = 0, /* configured, vCPUs not running yet */
    KVMC_STATE_RUNNING = 1,
    KVMC_STATE_PAUSED = 2,
    KVMC_STATE_EXITED = 3,  /* guest or host ended the run; see exit info */
} kvmc_vm_state;

typedef enum kvmc_exit_reason {
    KVMC_EXIT_NONE = 0,          /* still running */
    KVMC_EXIT_POWEROFF = 1,      /* guest powered off: ACPI S5, or a status
                                    byte on port 0x501 (code = that status) */
    KVMC_EXIT_RESET = 2,         /* guest reset: i8042 or the ACPI reset register */
    KVMC_EXIT_STOPPED = 3,       /* kvmc_vm_stop() was called */
    KVMC_EXIT_TRIPLE_FAULT = 4,  /* KVM_EXIT_SHUTDOWN: triple fault */
    KVMC_EXIT_INTERNAL_ERROR = 5,/* KVM internal error, e.g. emulation failure */
    KVMC_EXIT_FAIL_ENTRY = 6,    /* hardware refused to enter the guest */
    KVMC_EXIT_VMM_ERROR = 7,     /* a host-side failure ended the VM */
    KVMC_EXIT_GUEST_PANIC = 8,   /* the guest kernel reported a panic (pvpanic) */
} kvmc_exit_reason;

/* The reason's name, the one spelling every binding and the CLI use:
 * "none", "poweroff", "reset", "stopped", "triple_fault", "internal_error",
 * "fail_entry", "vmm_error", "guest_panic". Since 0.4.
 * @return a static string; "unknown" for any other value */
KVMC_API const char *kvmc_exit_reason_name(kvmc_exit_reason reason);

/* Why and how a VM ended, filled by kvmc_vm_wait. Registers are from the
 * vCPU that ended it. */
typedef struct kvmc_exit_info {
    kvmc_exit_reason reason;
    int32_t code;       /* POWEROFF: guest status; INTERNAL_ERROR: suberror;
                           FAIL_ENTRY: hardware reason (low 32 bits) */
    int32_t vcpu;       /* vCPU index, or -1 when not tied to a vCPU */
    uint64_t rip, rsp, rflags, cr0, cr3, cr4, efer;
    uint16_t cs;
    char message[256];  /* one line, for humans */
    uint64_t reserved[8]; /* zero; room for fields added in 1.x */
} kvmc_exit_info;

/* Lifecycle events, delivered to a kvmc_event_fn. */
typedef enum kvmc_event {
    KVMC_EVENT_STARTED = 1,
    KVMC_EVENT_PAUSED = 2,
    KVMC_EVENT_RESUMED = 3,
    KVMC_EVENT_EXITED = 4, /* the exit info is final when this is delivered */
} kvmc_event;
typedef void (*kvmc_event_fn)(void *opaque, kvmc_vm *vm, kvmc_event event);

/* Creates the KVM VM, guest memory, vCPUs and devices, and loads the
 * kernel. The config is only read; it may be freed afterwards. Without a
 * kernel (since 1.2) the VM is created empty, for kvmc_vm_restore;
 * kvmc_vm_start refuses it until a snapshot is restored.
 * @return KVMC_OK;
 *   KVMC_EINVAL   cfg or out is NULL, memory beyond the host's;
 *   KVMC_ENOMEM;
 *   KVMC_EIO      a kernel, initrd or disk file cannot be opened or read,
 *                 a socket path cannot be bound;
 *   KVMC_EKVM     /dev/kvm cannot be opened, or a KVM ioctl failed;
 *   KVMC_EFORMAT  the kernel is neither a bzImage nor an ELF it can load;
 *   KVMC_EBUSY    a disk image is locked by another VM or program;
 *   KVMC_ENOTSUP  the host's KVM lacks a capability kvmc needs, or the
 *                 kernel lacks what the boot protocol asked for needs */
KVMC_API int kvmc_vm_create(const kvmc_config *cfg, kvmc_vm **out);
/* Stops the VM if it runs, joins all threads, frees everything. NULL ok.
 * On one of the VM's own threads it only stops the VM (see Threading). */
KVMC_API void kvmc_vm_destroy(kvmc_vm *vm);

/* fn (NULL: none) gets every lifecycle event from now on.
 * @return KVMC_OK; KVMC_EINVAL (vm is NULL) */
KVMC_API int kvmc_vm_set_event_callback(kvmc_vm *vm, kvmc_event_fn fn,
                                        void *opaque);

/* Starts all vCPUs. Valid once, in state CREATED.
 * @return KVMC_OK; KVMC_EINVAL (vm is NULL); KVMC_ESTATE (already started
 *   or stopped, no kernel and no snapshot restored, or a failed restore);
 *   KVMC_EIO (a thread could not be started: the VM then
 *   exits with KVMC_EXIT_VMM_ERROR) */
KVMC_API int kvmc_vm_start(kvmc_vm *vm);
/* Waits until the VM has exited. timeout_ms < 0 waits forever. On success
 * fills *info (may be NULL).
 * @return KVMC_OK; KVMC_EINVAL (vm is NULL); KVMC_ESTATE (never started,
 *   or called on one of the VM's own threads); KVMC_ETIMEDOUT (still
 *   running after timeout_ms) */
KVMC_API int kvmc_vm_wait(kvmc_vm *vm, int timeout_ms, kvmc_exit_info *info);
/* Asks all vCPUs to stop; returns at once. Exit reason STOPPED unless the
 * VM had already exited for another reason.
 * @return KVMC_OK (in every state); KVMC_EINVAL (vm is NULL) */
KVMC_API int kvmc_vm_stop(kvmc_vm *vm);
/* Pauses all vCPUs and returns once none of them runs guest code.
 * @return KVMC_OK; KVMC_EINVAL (vm is NULL); KVMC_ESTATE (not running, the
 *   VM exited meanwhile, or called on one of the VM's own threads) */
KVMC_API int kvmc_vm_pause(kvmc_vm *vm);
/* @return KVMC_OK; KVMC_EINVAL (vm is NULL); KVMC_ESTATE (not paused) */
KVMC_API int kvmc_vm_resume(kvmc_vm *vm);
/* @return the state; KVMC_STATE_INVALID for NULL */
KVMC_API kvmc_vm_state kvmc_vm_get_state(const kvmc_vm *vm);
/* @return the number of vCPUs; 0 for NULL */
KVMC_API unsigned kvmc_vm_cpu_count(const kvmc_vm *vm);
/* @return guest RAM in bytes; 0 for NULL */
KVMC_API uint64_t kvmc_vm_memory_size(const kvmc_vm *vm);

/* Guest physical memory access, bounds-checked: the whole range must be
 * guest RAM, else nothing is copied. In every state; while vCPUs run, the
 * copy races with the guest like any DMA.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm or buffer, range not all RAM) */
KVMC_API int kvmc_vm_read_memory(kvmc_vm *vm, uint64_t gpa, void *buf,
                                 size_t len);
/* Queues input for the virtio-console's callback mode; *written (may be
 * NULL) says how much fit (the buffer holds 64 KiB until the guest reads).
 * Since 0.2.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm, or NULL data with len > 0);
 *   KVMC_ESTATE (the VM has no virtio-console) */
KVMC_API int kvmc_vm_virtio_console_write(kvmc_vm *vm, const void *data, size_t len,
                                          size_t *written);
/* A VM's counters since it was created (a restore or a fast reset does not
 * clear them), for metrics: vCPU exits by kind, and what its virtio devices
 * did, all devices of a kind together. "rx" is towards the guest, "tx" from
 * it. Set size to sizeof(kvmc_stats) (KVMC_STATS_INIT); fields added later
 * go at the end, so a caller built against an older header gets what its
 * size holds. Since 1.2. */
typedef struct kvmc_stats {
    uint32_t size;     /* in: the caller's sizeof(kvmc_stats); out: bytes filled */
    uint32_t reserved;
    uint64_t exit_io_in, exit_io_out, exit_mmio_read, exit_mmio_write;
    uint64_t exit_other;         /* every other exit to kvmc (interrupt window, EOI...) */
    uint64_t block_read_count, block_read_bytes, block_write_count, block_write_bytes;
    uint64_t block_flush_count;
    uint64_t block_errors;       /* requests answered with an I/O error */
    uint64_t net_rx_packets, net_rx_bytes;
    uint64_t net_rx_dropped;     /* frames for the guest with no buffer to take them */
    uint64_t net_tx_packets, net_tx_bytes;
    uint64_t vsock_conns_opened, vsock_conns_closed, vsock_rx_bytes, vsock_tx_bytes;
    uint64_t rng_bytes;
    uint64_t virtio_errors;      /* a driver broke a device's rules (needs reset) */
} kvmc_stats;

#define KVMC_STATS_INIT {sizeof(kvmc_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, \
                         0, 0, 0, 0, 0, 0, 0, 0, 0}

/* Reads the counters into *stats (see kvmc_stats). Any thread, any state;
 * the counters of a running VM move while they are read, each on its own.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm or stats, or a size too small for
 *   the first counter) */
KVMC_API int kvmc_vm_get_stats(const kvmc_vm *vm, kvmc_stats *stats);

/* Presses Ctrl-Alt-Del on the VM's AT keyboard (the i8042 controller at
 * ports 0x60/0x64, IRQ 1): what Firecracker's SendCtrlAltDel action does.
 * Linux with its i8042 and atkbd drivers reboots on it, which ends the run
 * with KVMC_EXIT_RESET. Does not wait for the guest. In every state but
 * destroyed; the guest sees the keys when it runs. Since 1.2.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm); KVMC_EBUSY (the guest has not
 *   read the keys pressed before) */
KVMC_API int kvmc_vm_send_ctrl_alt_del(kvmc_vm *vm);

/* @return as kvmc_vm_read_memory */
KVMC_API int kvmc_vm_write_memory(kvmc_vm *vm, uint64_t gpa, const void *buf,
                                  size_t len);

/* General-purpose registers of one vCPU (x86-64). Other register classes
 * get structs of their own. */
#define KVMC_REGS_VERSION 1u
typedef struct kvmc_regs {
    unsigned int version; /* KVMC_REGS_VERSION; kvmc_vm_get_regs sets it */
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
} kvmc_regs;
#define KVMC_REGS_INIT {KVMC_REGS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

/* Reads or writes vCPU `vcpu`'s registers. Only while no vCPU runs guest
 * code: before start, while paused, or after exit. For set, regs comes from
 * kvmc_vm_get_regs or KVMC_REGS_INIT.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm or regs, no such vCPU, set with a
 *   version of 0); KVMC_ENOTSUP (set with a version newer than the
 *   library's); KVMC_ESTATE (vCPUs running); KVMC_EKVM */
KVMC_API int kvmc_vm_get_regs(kvmc_vm *vm, unsigned vcpu, kvmc_regs *regs);
KVMC_API int kvmc_vm_set_regs(kvmc_vm *vm, unsigned vcpu, const kvmc_regs *regs);

/* ------------------------------------------------------------- snapshots */

/* Saves a paused VM into directory `dir` (made if missing, mode 0700):
 * `dir/state` (every vCPU, the clock, the interrupt controllers, the
 * devices) and `dir/memory` (guest RAM, sparse). Each file is written
 * under a temporary name and renamed, `state` last, so a snapshot that
 * fails leaves nothing half-written. The VM stays paused; resume or
 * destroy it after. Every virtio device is saved, on either transport
 * (disk requests in flight finish first); a restore or reset ends the
 * vsock connections (the guest gets a transport reset) and user
 * networking's. Not yet savable, and refused naming them: PCI devices
 * from the program, VFIO devices and devices added by
 * kvmc_vm_add_pio_device/mmio_device. Format: docs/snapshots.md. Not on
 * the VM's own threads. Since 1.2.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm or dir); KVMC_ESTATE (not paused,
 *   or on one of the VM's threads); KVMC_ENOTSUP (a device that cannot be
 *   saved); KVMC_EIO (writing the files); KVMC_EKVM; KVMC_ENOMEM */
KVMC_API int kvmc_vm_snapshot(kvmc_vm *vm, const char *dir);
/* What kvmc_vm_snapshot_ext saves. Since 1.2. */
#define KVMC_SNAPSHOT_OPTIONS_VERSION 1u
#define KVMC_SNAPSHOT_DIFF 1u /* only the RAM that differs from the base */
typedef struct kvmc_snapshot_options {
    unsigned int version; /* KVMC_SNAPSHOT_OPTIONS_VERSION */
    unsigned int flags;   /* KVMC_SNAPSHOT_*; 0: as kvmc_vm_snapshot */
} kvmc_snapshot_options;
#define KVMC_SNAPSHOT_OPTIONS_INIT {KVMC_SNAPSHOT_OPTIONS_VERSION, 0}

/* kvmc_vm_snapshot with options (NULL: none). With KVMC_SNAPSHOT_DIFF, a
 * diff snapshot: `dir/state` as always, and `dir/memory` holding only the
 * RAM pages that differ from the VM's base, the full snapshot it last took
 * or was restored from (directly or through a diff): every page written
 * since, by the guest, by KVM or by kvmc's devices. A diff is layered on
 * its base alone (a diff after a diff holds the first one's pages too), so
 * restoring one never needs a chain. kvmc_vm_restore of a diff reads the
 * base from where it was when the diff was taken, and refuses a base that
 * is gone or was replaced; a fast reset then goes back to the diff. Only
 * a VM whose RAM is mapped from its base's memory file can take one (not
 * memfd or hugepage RAM). `dir` must not be the base's directory. Not on
 * the VM's own threads. Since 1.2.
 * @return as kvmc_vm_snapshot, and KVMC_EINVAL (opts of version 0, flags
 *   unknown, or dir is the base's directory); KVMC_ENOTSUP (opts of a newer
 *   version; a diff of memfd or hugepage RAM); KVMC_ESTATE (a diff of a VM
 *   that took no snapshot and was restored from none) */
KVMC_API int kvmc_vm_snapshot_ext(kvmc_vm *vm, const char *dir,
                                  const kvmc_snapshot_options *opts);
/* Loads the snapshot in `dir` into a VM created (kvmc_vm_create) from the
 * configuration the snapshot was taken with, and not started: the same
 * memory size, vCPU count, PIT choice and devices (the kernel and command
 * line do not matter; the snapshot replaces them). kvmc_vm_start then
 * continues the guest where it was saved. RAM is the memory file mapped
 * copy-on-write, so restoring costs the same for any RAM size (copied
 * instead for memfd or hugepage RAM). A file that is truncated, corrupt,
 * of a newer format or of another VM is refused with one message naming
 * what is wrong; a failed restore leaves a VM that cannot start (destroy
 * it). Since 1.2.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm or dir, or the VM differs from the
 *   snapshot's); KVMC_ESTATE (started already); KVMC_EFORMAT (a bad state
 *   or memory file); KVMC_ENOTSUP (a newer format, a device that cannot be
 *   restored, or CPU features this host lacks); KVMC_EIO; KVMC_EKVM (KVM
 *   refused a saved register); KVMC_ENOMEM */
KVMC_API int kvmc_vm_restore(kvmc_vm *vm, const char *dir);
/* Fast reset for test harnesses: puts the VM back to the snapshot it last
 * took (kvmc_vm_snapshot) or was restored from (kvmc_vm_restore), without
 * recreating it. After either, guest RAM is the snapshot's memory file
 * mapped copy-on-write, so a reset drops only the pages the guest wrote
 * since (memfd or hugepage RAM is copied back whole); then every vCPU, the
 * clock, the interrupt controllers and the devices are put back. A running
 * VM is paused for it and resumed after; a paused one stays paused. Not on
 * the VM's own threads. Since 1.2.
 * @return KVMC_OK; KVMC_EINVAL (vm is NULL); KVMC_ESTATE (no snapshot
 *   taken or restored in this VM, the VM exited, or called on one of its
 *   threads); KVMC_EIO; KVMC_EKVM */
KVMC_API int kvmc_vm_reset_to_snapshot(kvmc_vm *vm);

/* ---------------------------------------------------------------- seccomp */

/* Confines kvmc's own threads with seccomp allow-lists (libseccomp): each
 * vCPU, I/O and console-input thread installs the list for its role as it
 * starts, so call this before kvmc_vm_start(). Use it only when every device
 * callback is C code that stays within those lists: a callback into Python,
 * Go or Lua may make any system call. A system call outside the lists kills
 * the process with SIGSYS.
 * @return KVMC_OK; KVMC_EINVAL (vm is NULL); KVMC_ESTATE (already started);
 *   KVMC_ENOTSUP (enabling it in a libkvmc built without libseccomp, as
 *   the Python wheel is on a machine without its headers) */
KVMC_API int kvmc_vm_set_seccomp(kvmc_vm *vm, int enabled);
/* Confines the calling thread with the list for a thread that controls VMs
 * (start, wait, stop, pause, resume, write to stderr, exit). Irreversible.
 * @return KVMC_OK; KVMC_ENOTSUP (the kernel refused the filter, or a
 *   libkvmc built without libseccomp) */
KVMC_API int kvmc_seccomp_confine_control_thread(void);

/* --------------------------------------------------------------- devices */

/* A device on the port I/O or MMIO bus. offset is relative to the base of
 * the registered range; size is 1, 2, 4 or 8 bytes. read() returns the value
 * (only the low `size` bytes are used). Either function may be NULL: reads
 * then return all ones and writes are ignored. Called on vCPU threads.
 * Start from KVMC_DEVICE_OPS_INIT:
 *   kvmc_device_ops ops = KVMC_DEVICE_OPS_INIT;
 *   ops.read = my_read; */
#define KVMC_DEVICE_OPS_VERSION 1u
typedef struct kvmc_device_ops {
    unsigned int version; /* KVMC_DEVICE_OPS_VERSION */
    uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
    void (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t value);
} kvmc_device_ops;
#define KVMC_DEVICE_OPS_INIT {KVMC_DEVICE_OPS_VERSION, 0, 0}

/* Registers a device before kvmc_vm_start(). ops is copied; opaque must
 * outlive the VM. PIO ranges lie within 0..0xffff; an MMIO range must not
 * overlap guest RAM.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm or ops, ops->version 0, an empty
 *   or wrapping range, PIO past 0xffff); KVMC_ENOTSUP (ops->version newer
 *   than the library's); KVMC_ESTATE (the VM was started); KVMC_EBUSY (the
 *   range overlaps a device or, for MMIO, guest RAM); KVMC_ENOMEM */
KVMC_API int kvmc_vm_add_pio_device(kvmc_vm *vm, uint16_t base, uint16_t size,
                                    const kvmc_device_ops *ops, void *opaque);
KVMC_API int kvmc_vm_add_mmio_device(kvmc_vm *vm, uint64_t base, uint64_t size,
                                     const kvmc_device_ops *ops, void *opaque);

/* A PCI device whose BARs are served by callbacks, on kvmc's PCIe root
 * complex (bus 0, which every VM has): the guest's PCI core enumerates it
 * through ECAM or ports 0xcf8/0xcfc, sizes and maps its BARs, and enables
 * its MSI-X vectors. Start from KVMC_PCI_DEVICE_INIT.
 *
 * bars[i].size is a power of two (memory: 16 bytes to 2 GiB, or 1 TiB for
 * MEM64; I/O: 4 to 256 bytes); a MEM64 BAR takes slot i+1 too, which must
 * be unused. With msix_vectors > 0 kvmc adds the MSI-X capability and puts
 * its table in the first unused BAR slot (one must be left).
 *
 * read/write get the BAR number and the offset in it; size is 1, 2, 4 or
 * 8. They run on vCPU threads while the guest has the BAR's decoding on.
 * Either may be NULL (reads all ones, writes ignored). */
#define KVMC_PCI_DEVICE_VERSION 1u
#define KVMC_PCI_BAR_NONE 0u
#define KVMC_PCI_BAR_MEM32 1u
#define KVMC_PCI_BAR_MEM64 2u
#define KVMC_PCI_BAR_IO 3u
#define KVMC_PCI_BAR_PREFETCHABLE 0x100u /* or-ed into a memory kind */
#define KVMC_PCI_MAX_BARS 6u
#define KVMC_PCI_MAX_MSIX_VECTORS 2048u
typedef struct kvmc_pci_bar {
    uint64_t size;
    unsigned int kind; /* KVMC_PCI_BAR_* */
} kvmc_pci_bar;
typedef struct kvmc_pci_device {
    unsigned int version; /* KVMC_PCI_DEVICE_VERSION */
    uint16_t vendor_id, device_id;
    uint16_t subsystem_vendor_id, subsystem_id;
    uint32_t class_code;  /* base class << 16 | subclass << 8 | prog-if */
    uint8_t revision;
    kvmc_pci_bar bars[6];
    unsigned int msix_vectors; /* 0: no MSI-X */
    uint64_t (*read)(void *opaque, unsigned bar, uint64_t offset, unsigned size);
    void (*write)(void *opaque, unsigned bar, uint64_t offset, unsigned size, uint64_t value);
} kvmc_pci_device;
#define KVMC_PCI_DEVICE_INIT {KVMC_PCI_DEVICE_VERSION, 0, 0, 0, 0, 0, 0, {{0, 0}}, 0, 0, 0}

/* Plugs a PCI device in before kvmc_vm_start(). dev is copied; opaque
 * must outlive the VM. *slot (may be NULL) gets its device number on bus
 * 0, which kvmc_vm_pci_msix_notify takes. Since 1.0.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm or dev, version 0, a bad BAR,
 *   too many vectors or no BAR slot left for the MSI-X table);
 *   KVMC_ENOTSUP (version newer than the library's); KVMC_ESTATE (the VM
 *   was started); KVMC_EBUSY (bus 0 is full, or a BAR window is);
 *   KVMC_ENOMEM */
KVMC_API int kvmc_vm_add_pci_device(kvmc_vm *vm, const kvmc_pci_device *dev, void *opaque,
                                    unsigned *slot);
/* Signals MSI-X vector `vector` of the device in `slot`, from any thread:
 * delivered at once, or held pending while the guest masks it. Lost if the
 * guest has not enabled MSI-X (there is no INTx). Since 1.0.
 * @return KVMC_OK; KVMC_EINVAL (NULL vm, no such device added through
 *   kvmc_vm_add_pci_device, no such vector) */
KVMC_API int kvmc_vm_pci_msix_notify(kvmc_vm *vm, unsigned slot, unsigned vector);

/* Raises (level=1) or lowers (level=0) a GSI: an I/O APIC pin, 0 to 23.
 * The guest programs each pin edge- or level-triggered. On an edge-triggered
 * pin every raise is one interrupt, even of a line already raised (so two
 * threads raising it at once give two), and one raised while the guest has
 * the pin masked waits for the unmask. A level-triggered pin interrupts
 * while raised, once per EOI. Safe from any thread, in every state.
 * @return KVMC_OK; KVMC_EINVAL (vm is NULL, gsi past the last pin);
 *   KVMC_EKVM (with the kernel's irqchip: KVM_IRQ_LINE failed) */
KVMC_API int kvmc_vm_set_irq_line(kvmc_vm *vm, unsigned gsi, int level);

#ifdef __cplusplus
}
#endif

#endif /* KVMC_KVMC_H */
