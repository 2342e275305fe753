/* A whole VM to a snapshot directory and back (issue 18; the format is in
 * docs/snapshots.md, the container in format.h).
 *
 *   DIR/state   the state file: what the guest saw of the host CPU, the
 *               KVM clock, every vCPU, the interrupt controllers and each
 *               device with state, in tagged sections with a checksum
 *   DIR/memory  guest RAM, byte for byte (low RAM, then RAM above 4 GiB);
 *               for a diff snapshot only the pages that differ from its
 *               base (diff.h)
 *
 * Restore goes into a VM created from the same configuration (memory,
 * vCPUs, PIT or not, devices) and not started: the state file says what it
 * was taken from, and a VM that differs is refused, naming the difference.
 * RAM is the memory file mapped copy-on-write (MAP_PRIVATE), so restoring
 * costs the same for any RAM size; a VM whose RAM is a memfd
 * (KVMC_MEM_MEMFD, hugepages) gets a copy instead.
 *
 * What cannot be saved yet is refused by name: virtio devices without
 * save hooks, PCI devices
 * (from programs or VFIO), and devices added through
 * kvmc_vm_add_pio_device/kvmc_vm_add_mmio_device. The I/O thread is held
 * (iothread_suspend) and every virtio device's requests in flight finish
 * before anything is read, so that no completion lands between two parts
 * of the state.
 *
 * The parse is separate from applying it, so that every check a file can
 * fail is made without KVM (and fuzzed: tests/fuzz/fuzz_snapshot.c).
 *
 * Threads: the caller keeps the vCPUs from running (paused, or not
 * started) meanwhile. */
#ifndef KVMC_SNAPSHOT_H
#define KVMC_SNAPSHOT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../x86/vcpu_state.h"
#include "diff.h"
#include "format.h"

struct kvmc_vm;

#define SNAPSHOT_MAX_CPUS 255
#define SNAPSHOT_MAX_DEVICES 16
#define SNAPSHOT_CPUID_LEAVES 3

#define SNAP_META SNAP_TAG('M', 'E', 'T', 'A')
#define SNAP_CPUID SNAP_TAG('C', 'P', 'I', 'D')
#define SNAP_CLOCK SNAP_TAG('C', 'L', 'C', 'K')
#define SNAP_VCPU SNAP_TAG('V', 'C', 'P', 'U')
#define SNAP_IOAPIC SNAP_TAG('I', 'O', 'A', 'P')
#define SNAP_KERNEL_IRQCHIP SNAP_TAG('K', 'I', 'R', 'Q')
#define SNAP_DEVICE SNAP_TAG('P', 'D', 'E', 'V')
#define SNAP_VIRTIO SNAP_TAG('V', 'D', 'E', 'V')

/* The feature words of one CPUID leaf the guest saw. */
struct snapshot_cpuid {
    uint32_t function, index;
    uint32_t eax, ebx, ecx, edx;
};

struct snapshot_device {
    char name[32];
    const uint8_t *state; /* into the file */
    size_t len;
};

/* A state file, checked and decoded; pointers point into the file. */
struct snapshot_image {
    uint64_t ram_size;
    uint32_t ncpus;
    bool kernel_irqchip; /* the kernel's PIC, I/O APIC and PIT */
    struct snapshot_cpuid cpuid[SNAPSHOT_CPUID_LEAVES];
    struct kvm_clock_data clock;
    struct vcpu_state *vcpus; /* ncpus of them, allocated */
    const uint8_t *irq;       /* the IOAPIC or KIRQ section */
    size_t irq_len;
    struct kvm_irqchip chips[3]; /* kernel_irqchip only */
    struct kvm_pit_state2 pit;
    struct snapshot_device devices[SNAPSHOT_MAX_DEVICES];
    unsigned ndevices;
    struct snapshot_device virtio[SNAPSHOT_MAX_DEVICES]; /* either transport */
    unsigned nvirtio;
    char written_by[17];
    /* A diff snapshot (diff.h): its base, and its extents in the file. */
    bool diff;
    struct snapshot_base base;
    const uint8_t *extents;
    uint64_t nextents;
};

/* Checks and decodes a state file: KVMC_EFORMAT (or KVMC_ENOTSUP for a
 * newer format) naming what is wrong. On success free it with
 * snapshot_image_free. */
int snapshot_parse(const uint8_t *file, size_t len, struct snapshot_image *img);
void snapshot_image_free(struct snapshot_image *img);

/* What a VM keeps of its last snapshot (taken or restored) for fast
 * resets: the state file, decoded, and the memory file, which guest RAM
 * is mapped from copy-on-write (or, for memfd RAM, copied from). */
struct snapshot_keep {
    uint8_t *file;
    size_t len;
    struct snapshot_image img; /* points into file */
    int mem_fd;  /* the base's memory file */
    int diff_fd; /* a diff's memory file (img.extents), or -1 */
    bool mapped; /* RAM is mem_fd mapped MAP_PRIVATE */
    struct snapshot_base base; /* the full snapshot RAM is layered on */
};

/* Writes vm (paused) to dir, which is made if missing; the state file is
 * written under another name and renamed, so a failed snapshot never
 * leaves a half-written one behind. Then guest RAM becomes the memory
 * file, mapped copy-on-write (same bytes), and the VM keeps what a reset
 * to this snapshot needs. A diff (diff.h) writes only the pages that
 * differ from the base, and RAM stays as it is. */
int snapshot_vm_save(struct kvmc_vm *vm, const char *dir, bool diff);
/* Loads dir into vm (created, not started), keeping it for resets. */
int snapshot_vm_restore(struct kvmc_vm *vm, const char *dir);
/* Puts vm (paused or not started) back to what it keeps: the RAM pages
 * written since are dropped (the file's come back), or all RAM copied
 * for memfd RAM; then every vCPU, the clock, the interrupt controllers
 * and the devices. KVMC_ESTATE if it keeps nothing. */
int snapshot_vm_reset(struct kvmc_vm *vm);
void snapshot_keep_free(struct snapshot_keep *k);

#endif
