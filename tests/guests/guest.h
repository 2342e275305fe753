/* Shared between the test guest's assembly stub and its C code. */
#ifndef KVMC_GUEST_H
#define KVMC_GUEST_H

#define GUEST_MAX_CPUS 64 /* KVMC_MAX_VCPUS */
#define KSTACK_SIZE 4096
#define USTACK_SIZE 16384

/* GDT layout */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x18
#define SEL_UCODE 0x20
#define SEL_CODE32 0x28
#define SEL_TSS 0x30 /* 16 bytes; only the BSP has a TSS */

#define BOOT_KIND_PVH 1
#define BOOT_KIND_LINUX 2

/* There is no way back from CPL3 to CPL0: PVM turns `int n` from CPL3 into
 * #UD and does not run `syscall` targets at CPL0. So application processors
 * report in and halt in their CPL0 stub, and CPL3 code only writes memory
 * (IDT, GDT, TSS, trampoline) that the CPL0 stubs then use. */

#define AP_TRAMPOLINE 0x8000  /* SIPI vector 0x08 */

/* Each TSS carries a full I/O permission bitmap of zeros, so `in`/`out` at
 * CPL3 are allowed by the bitmap. (PVM forces RFLAGS.IOPL to 0 in user mode
 * and emulates a faulting I/O instruction, checking the TSS bitmap.) */
#define TSS_IOMAP_OFFSET 104
#define TSS_LIMIT (TSS_IOMAP_OFFSET + 8192)

#ifndef __ASSEMBLER__
#include <stdint.h>

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp0, rsp1, rsp2;
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
    uint8_t iomap[8192];
    uint8_t iomap_end; /* must be 0xff */
} __attribute__((packed, aligned(16)));

extern uint32_t boot_kind;
extern uint64_t boot_info;
extern uint64_t gdt[];
extern struct tss64 tss;
extern uint8_t kstack[KSTACK_SIZE];
extern uint8_t ustack[USTACK_SIZE];
extern uint8_t ap_trampoline_start[], ap_trampoline_end[];
extern uint8_t ap_trampoline_gdtr[], ap_trampoline_cr3[];
extern uint64_t pml4[];

extern volatile uint32_t cpus_up;
extern volatile uint8_t apic_seen[256];

void guest_main(void);
uint64_t fnv1a(const uint8_t *p, uint64_t n); /* FNV-1a 64 */

/* main.c: output on COM1 and the command line. */
_Bool starts_with(const char *s, const char *prefix);
void puts_serial(const char *s);
void put_hex(uint64_t v, int digits);
void put_dec(uint64_t v);
_Bool cmdline_get(const char *cmdline, const char *key, char *out, unsigned cap);
/* The local APIC (main.c). */
#define LAPIC_SVR 0x0f0
void lapic_write(unsigned reg, uint32_t v);
uint8_t my_apic_id(void);
_Bool lapic_pending(uint8_t vector);
void accept_all_interrupts(void);



/* virtio.c: the polling virtio-mmio driver's transport part. */
#define VQ_SIZE 64
struct vq_desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct vq_ring {
    struct vq_desc desc[VQ_SIZE] __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[VQ_SIZE], event; } avail __attribute__((aligned(2)));
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[VQ_SIZE]; uint16_t event; }
        used __attribute__((aligned(4)));
};
struct vq {
    uint64_t base;
    unsigned index;
    struct vq_ring *ring;
    uint16_t seen; /* used entries consumed */
};
#define VQ_F_NEXT 1
#define VQ_F_WRITE 2
/* A handle for the first virtio device with this ID, or 0: kvmc's
 * virtio-mmio windows first, then virtio-pci (the handle has bit 0 set),
 * then QEMU microvm's windows (so benchmarks run one guest on both VMMs). */
uint64_t virtio_find(uint32_t device_id);
/* Negotiates VERSION_1 plus features_lo and brings up nq queues. */
_Bool virtio_setup(uint64_t base, uint32_t features_lo, struct vq *qs, struct vq_ring *rings,
                   unsigned nq);
uint8_t virtio_config8(uint64_t base, unsigned offset);
uint32_t virtio_config32(uint64_t base, unsigned offset);
/* Makes descriptor head available and notifies. */
void vq_offer(struct vq *q, uint16_t head);
/* Takes the next used entry, waiting at most ~`seconds`; 0 if none came. */
_Bool vq_take(struct vq *q, uint32_t *id, uint32_t *len, unsigned seconds);

uint64_t rdtsc_now(void);
void test_virtio_console(void);
void test_virtio_scribble(void);
void test_virtio_vsock(void);
/* disk-count's vsock part (virtio_stream.c). */
_Bool vsock_count_open(void);
_Bool vsock_count_line(uint64_t i);
unsigned vsock_count_resets(void);
void test_virtio_net(const char *cmdline);
void test_virtio_net_ports(const char *cmdline);
/* Throughput benchmarks (bench/run.py): block and net, driven at CPL3. */
void bench_virtio_blk(const char *cmdline);
void bench_virtio_notify(const char *cmdline);
void bench_virtio_net(const char *cmdline);
/* Free guest RAM for benchmark buffers: [32 MiB, 48 MiB). */
#define BENCH_SCRATCH 0x2000000ull
/* pci.c: config space through ECAM and ports 0xcf8/0xcfc, the virtio-pci
 * transport of the polling driver, and the PCI tests. */
uint32_t pci_cfg_read(unsigned dev, unsigned reg, unsigned size);
void pci_cfg_write(unsigned dev, unsigned reg, unsigned size, uint32_t v);
uint32_t pci_port_read(unsigned dev, unsigned reg);
/* A virtio-pci device handle for the driver in virtio.c (bit 0 set), or 0. */
uint64_t vpci_find(uint32_t device_id, unsigned nth);
_Bool vpci_setup(uint64_t dev, uint32_t features_lo, struct vq *qs, struct vq_ring *rings,
                 unsigned nq);
void vpci_notify(uint64_t dev, unsigned queue);
uint32_t vpci_config32(uint64_t dev, unsigned offset);
uint8_t vpci_status(uint64_t dev);
uint8_t vpci_isr(uint64_t dev);
void test_pci(void);
void test_pci_scribble(void);
void run_virtio_tests(_Bool hostile);
void disk_count(void);
#endif

#endif
