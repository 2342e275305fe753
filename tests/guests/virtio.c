/* A minimal virtio driver at CPL3, polling (no interrupts): enough to read
 * and write sectors of a virtio-blk disk and pull bytes from virtio-rng, so
 * the integration tests drive kvmc's devices from a real guest on the
 * host's /dev/kvm. virtio-mmio here; handles with bit 0 set are virtio-pci
 * devices, whose transport is in pci.c. Output lines are a contract with
 * tests/integration/test_virtio.c. */
#include <stdbool.h>
#include <stdint.h>

#include "guest.h"

#define VIRTIO_MMIO_BASE 0xc0000000ull
#define VIRTIO_MMIO_STRIDE 0x1000
#define VIRTIO_MMIO_MAX 8
/* QEMU's microvm machine: 24 transports of 512 bytes. */
#define MICROVM_MMIO_BASE 0xfeb00000ull
#define MICROVM_MMIO_STRIDE 0x200
#define MICROVM_MMIO_MAX 24

enum {
    R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_DEVICE_FEATURES = 0x010,
    R_DEVICE_FEATURES_SEL = 0x014, R_DRIVER_FEATURES = 0x020, R_DRIVER_FEATURES_SEL = 0x024,
    R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038, R_QUEUE_READY = 0x044,
    R_QUEUE_NOTIFY = 0x050, R_INTERRUPT_STATUS = 0x060, R_INTERRUPT_ACK = 0x064,
    R_STATUS = 0x070, R_DESC_LO = 0x080, R_DESC_HI = 0x084, R_AVAIL_LO = 0x090,
    R_AVAIL_HI = 0x094, R_USED_LO = 0x0a0, R_USED_HI = 0x0a4, R_CONFIG = 0x100,
};
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8

static struct vq_ring rings[2] __attribute__((aligned(4096)));
static struct vq blk_q, rng_q;
static uint8_t blk_buf[4096] __attribute__((aligned(4096)));
static struct { uint32_t type, reserved; uint64_t sector; } blk_hdr;
static volatile uint8_t blk_status;

static uint32_t rd(uint64_t base, unsigned reg) { return *(volatile uint32_t *)(base + reg); }
static void wr(uint64_t base, unsigned reg, uint32_t v) { *(volatile uint32_t *)(base + reg) = v; }

static void setup_queue(uint64_t base, unsigned qi, struct vq_ring *r)
{
    wr(base, R_QUEUE_SEL, qi);
    wr(base, R_QUEUE_NUM, VQ_SIZE);
    uint64_t d = (uint64_t)&r->desc, a = (uint64_t)&r->avail, u = (uint64_t)&r->used;
    wr(base, R_DESC_LO, (uint32_t)d);
    wr(base, R_DESC_HI, (uint32_t)(d >> 32));
    wr(base, R_AVAIL_LO, (uint32_t)a);
    wr(base, R_AVAIL_HI, (uint32_t)(a >> 32));
    wr(base, R_USED_LO, (uint32_t)u);
    wr(base, R_USED_HI, (uint32_t)(u >> 32));
    wr(base, R_QUEUE_READY, 1);
}

bool virtio_setup(uint64_t base, uint32_t features_lo, struct vq *qs, struct vq_ring *rings,
                  unsigned nq)
{
    if (base & 1)
        return vpci_setup(base, features_lo, qs, rings, nq);
    wr(base, R_STATUS, 0);
    wr(base, R_STATUS, S_ACK | S_DRIVER);
    wr(base, R_DEVICE_FEATURES_SEL, 1);
    if (!(rd(base, R_DEVICE_FEATURES) & 1)) /* VERSION_1 is bit 32 */
        return false;
    wr(base, R_DRIVER_FEATURES_SEL, 0);
    wr(base, R_DRIVER_FEATURES, features_lo);
    wr(base, R_DRIVER_FEATURES_SEL, 1);
    wr(base, R_DRIVER_FEATURES, 1);
    wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(rd(base, R_STATUS) & S_FEATURES_OK))
        return false;
    for (unsigned qi = 0; qi < nq; qi++) {
        wr(base, R_QUEUE_SEL, qi);
        if (rd(base, R_QUEUE_NUM_MAX) < VQ_SIZE)
            return false;
        for (unsigned i = 0; i < sizeof(rings[qi]); i++)
            ((volatile uint8_t *)&rings[qi])[i] = 0;
        /* This driver polls: ask the device for no used-buffer interrupts
         * (they would cost the VMM an irqfd write per buffer). */
        rings[qi].avail.flags = 1; /* VRING_AVAIL_F_NO_INTERRUPT */
        setup_queue(base, qi, &rings[qi]);
        qs[qi] = (struct vq){.base = base, .index = qi, .ring = &rings[qi]};
    }
    wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    return true;
}

static uint64_t find_in(uint64_t first, uint64_t stride, unsigned count, uint32_t device_id)
{
    for (unsigned i = 0; i < count; i++) {
        uint64_t base = first + i * stride;
        if (rd(base, R_MAGIC) == 0x74726976 && rd(base, R_VERSION) == 2 &&
            rd(base, R_DEVICE_ID) == device_id)
            return base;
    }
    return 0;
}

uint64_t virtio_find(uint32_t device_id)
{
    uint64_t base = find_in(VIRTIO_MMIO_BASE, VIRTIO_MMIO_STRIDE, VIRTIO_MMIO_MAX, device_id);
    if (!base)
        base = vpci_find(device_id, 0);
    return base ? base
                : find_in(MICROVM_MMIO_BASE, MICROVM_MMIO_STRIDE, MICROVM_MMIO_MAX, device_id);
}

uint8_t virtio_config8(uint64_t base, unsigned offset)
{
    if (base & 1)
        return (uint8_t)(vpci_config32(base, offset & ~3u) >> (8 * (offset & 3)));
    return *(volatile uint8_t *)(base + R_CONFIG + offset);
}

uint32_t virtio_config32(uint64_t base, unsigned offset)
{
    return base & 1 ? vpci_config32(base, offset) : rd(base, R_CONFIG + offset);
}

static uint32_t virtio_status(uint64_t base)
{
    return base & 1 ? vpci_status(base) : rd(base, R_STATUS);
}

/* What the device last said it interrupted for (virtio-pci: read to clear). */
static uint32_t virtio_interrupt_status(uint64_t base)
{
    return base & 1 ? vpci_isr(base) : rd(base, R_INTERRUPT_STATUS);
}

void vq_offer(struct vq *q, uint16_t head)
{
    struct vq_ring *r = q->ring;
    r->avail.ring[r->avail.idx % VQ_SIZE] = head;
    __atomic_store_n(&r->avail.idx, (uint16_t)(r->avail.idx + 1), __ATOMIC_RELEASE);
    /* Skip the notify (an exit) while the device says it is consuming; the
     * index store must be visible before the flag is read. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!(__atomic_load_n(&r->used.flags, __ATOMIC_RELAXED) & 1 /* NO_NOTIFY */)) {
        if (q->base & 1)
            vpci_notify(q->base, q->index);
        else
            wr(q->base, R_QUEUE_NOTIFY, q->index);
    }
}

uint64_t rdtsc_now(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

bool vq_take(struct vq *q, uint32_t *id, uint32_t *len, unsigned seconds)
{
    uint64_t start = rdtsc_now();
    while (__atomic_load_n(&q->ring->used.idx, __ATOMIC_ACQUIRE) == q->seen) {
        if (rdtsc_now() - start > seconds * 3000000000ull)
            return false;
        __asm__ volatile("pause");
    }
    *id = q->ring->used.ring[q->seen % VQ_SIZE].id;
    *len = q->ring->used.ring[q->seen % VQ_SIZE].len;
    q->seen++;
    return true;
}

/* Offers the chain starting at descriptor 0 and waits for it (bounded). */
static bool submit_and_wait(struct vq *q, uint32_t *used_len)
{
    uint32_t id;
    vq_offer(q, 0);
    return vq_take(q, &id, used_len, 7);
}

static uint8_t blk_request(uint32_t type, uint64_t sector, uint32_t len, bool data_in)
{
    struct vq_ring *r = blk_q.ring;
    blk_hdr.type = type;
    blk_hdr.sector = sector;
    blk_status = 0xff;
    r->desc[0] = (struct vq_desc){(uint64_t)&blk_hdr, sizeof(blk_hdr), VQ_F_NEXT, 1};
    r->desc[1] = (struct vq_desc){(uint64_t)blk_buf, len,
                                  (uint16_t)(VQ_F_NEXT | (data_in ? VQ_F_WRITE : 0)), 2};
    r->desc[2] = (struct vq_desc){(uint64_t)&blk_status, 1, VQ_F_WRITE, 0};
    uint32_t used_len;
    if (!submit_and_wait(&blk_q, &used_len))
        return 0xfe;
    return blk_status;
}

/* Hashes sectors 0-3, writes a pattern to sector 5 and reads it back. */
static void test_blk(uint64_t base)
{
    uint64_t capacity = virtio_config32(base, 0) | ((uint64_t)virtio_config32(base, 4) << 32);
    puts_serial("virtio-blk: ");
    put_dec(capacity);
    puts_serial(" sectors");
    if (!virtio_setup(base, 0, &blk_q, &rings[0], 1)) {
        puts_serial(", setup FAILED\n");
        return;
    }
    uint8_t st = blk_request(0 /* IN */, 0, 2048, true);
    puts_serial(", read status ");
    put_dec(st);
    puts_serial(", sectors 0-3 fnv1a 0x");
    put_hex(fnv1a(blk_buf, 2048), 16);
    for (unsigned i = 0; i < 512; i++)
        blk_buf[i] = (uint8_t)(0xa5 ^ i);
    uint8_t wst = blk_request(1 /* OUT */, 5, 512, false);
    for (unsigned i = 0; i < 512; i++)
        blk_buf[i] = 0;
    uint8_t rst = blk_request(0, 5, 512, true);
    bool same = wst == 0 && rst == 0;
    for (unsigned i = 0; i < 512; i++)
        same &= blk_buf[i] == (uint8_t)(0xa5 ^ i);
    puts_serial(same ? ", sector 5 write+read ok" : ", sector 5 write+read FAILED");
    uint8_t ist = blk_request(8 /* GET_ID */, 0, 20, true);
    blk_buf[20] = 0;
    puts_serial(", serial ");
    puts_serial(ist == 0 ? (const char *)blk_buf : "?");
    uint8_t bad = blk_request(0, capacity, 512, true);
    puts_serial(", past-end read status ");
    put_dec(bad);
    puts_serial("\n");
}

static void test_rng(uint64_t base)
{
    if (!virtio_setup(base, 0, &rng_q, &rings[1], 1)) {
        puts_serial("virtio-rng: setup FAILED\n");
        return;
    }
    static uint8_t buf[64];
    rng_q.ring->desc[0] = (struct vq_desc){(uint64_t)buf, sizeof(buf), VQ_F_WRITE, 0};
    uint32_t got = 0;
    submit_and_wait(&rng_q, &got);
    uint8_t seen[256] = {0};
    unsigned distinct = 0;
    for (unsigned i = 0; i < got && i < sizeof(buf); i++)
        if (!seen[buf[i]]++)
            distinct++;
    puts_serial("virtio-rng: ");
    put_dec(got);
    puts_serial(" bytes, ");
    put_dec(distinct);
    puts_serial(" distinct\n");
}

/* Sends a descriptor chain that loops on itself: the device must flag
 * NEEDS_RESET (0x40) and keep the VMM alive; after a reset it works again. */
static void test_hostile(uint64_t base)
{
    if (!virtio_setup(base, 0, &blk_q, &rings[0], 1))
        return;
    blk_q.ring->desc[0] = (struct vq_desc){(uint64_t)&blk_hdr, sizeof(blk_hdr), VQ_F_NEXT, 0};
    vq_offer(&blk_q, 0);
    uint64_t start = rdtsc_now();
    while (!(virtio_status(base) & 0x40) && rdtsc_now() - start < 20000000000ull)
        __asm__ volatile("pause");
    puts_serial("virtio-hostile: status 0x");
    put_hex(virtio_status(base), 2);
    puts_serial(", interrupt status 0x");
    put_hex(virtio_interrupt_status(base), 1);
    /* Reset and bring it up again from scratch (virtio_setup clears the ring). */
    virtio_setup(base, 0, &blk_q, &rings[0], 1);
    puts_serial(blk_request(0, 0, 512, true) == 0 ? ", after reset read ok\n"
                                                   : ", after reset read FAILED\n");
}

unsigned vpci_all(uint64_t *devs, uint32_t *ids, unsigned max);

void run_virtio_tests(bool hostile)
{
    uint64_t devs[2 * VIRTIO_MMIO_MAX];
    uint32_t ids[2 * VIRTIO_MMIO_MAX];
    unsigned n = 0;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX; i++) {
        uint64_t base = VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_STRIDE;
        if (rd(base, R_MAGIC) != 0x74726976 || rd(base, R_VERSION) != 2)
            continue;
        ids[n] = rd(base, R_DEVICE_ID);
        devs[n++] = base;
    }
    n += vpci_all(devs + n, ids + n, VIRTIO_MMIO_MAX);
    unsigned found = n;
    for (unsigned i = 0; i < n; i++) {
        uint64_t base = devs[i];
        uint32_t id = ids[i];
        if (id == 2 && hostile)
            test_hostile(base);
        else if (id == 2)
            test_blk(base);
        else if (id == 4)
            test_rng(base);
    }
    puts_serial("virtio: ");
    put_dec(found);
    puts_serial(" devices\n");
}

/* kvmc.test=disk-count: forever, line i writes sector 16 + i % 64 with a
 * pattern of i, reads it back, checks it, takes 16 bytes from the rng when
 * there is one, makes a vsock connection to the host's port 5000 when
 * there is a vsock (virtio_stream.c), and prints "disk line <i> ok" (or
 * FAILED), with " vsock resets <n>" once transport resets came: a guest
 * whose virtio devices are in use whenever a snapshot is taken. */
void disk_count(void)
{
    uint64_t blk = virtio_find(2), rng = virtio_find(4); /* virtio-mmio or virtio-pci */
    if (!blk || !virtio_setup(blk, 0, &blk_q, &rings[0], 1) ||
        (rng && !virtio_setup(rng, 0, &rng_q, &rings[1], 1))) {
        puts_serial("disk-count: no virtio-blk, or setup FAILED\n");
        return;
    }
    static uint8_t entropy[16];
    bool vsock = virtio_find(19) != 0;
    if (vsock && !vsock_count_open()) {
        puts_serial("disk-count: virtio-vsock setup FAILED\n");
        return;
    }
    for (uint64_t i = 0;; i++) {
        for (unsigned k = 0; k < 512; k++)
            blk_buf[k] = (uint8_t)(i * 31 + k);
        bool ok = blk_request(1 /* OUT */, 16 + i % 64, 512, false) == 0;
        for (unsigned k = 0; k < 512; k++)
            blk_buf[k] = 0;
        ok &= blk_request(0 /* IN */, 16 + i % 64, 512, true) == 0;
        for (unsigned k = 0; k < 512; k++)
            ok &= blk_buf[k] == (uint8_t)(i * 31 + k);
        if (rng) {
            uint32_t got = 0;
            rng_q.ring->desc[0] = (struct vq_desc){(uint64_t)entropy, sizeof(entropy), VQ_F_WRITE,
                                                   0};
            ok &= submit_and_wait(&rng_q, &got) && got == sizeof(entropy);
        }
        bool vsock_ok = !vsock || vsock_count_line(i);
        puts_serial("disk line ");
        put_dec(i);
        puts_serial(ok && vsock_ok ? " ok" : ok ? " FAILED (vsock)" : " FAILED (disk or rng)");
        if (vsock && vsock_count_resets()) {
            puts_serial(" vsock resets ");
            put_dec(vsock_count_resets());
        }
        puts_serial("\n");
    }
}

/* ------------------------------------------------ hostile driver, for real */

static uint64_t scribble_state = 0x9e3779b97f4a7c15ull;
static uint64_t scribble_rand(void) /* xorshift64 */
{
    scribble_state ^= scribble_state << 13;
    scribble_state ^= scribble_state >> 7;
    scribble_state ^= scribble_state << 17;
    return scribble_state;
}

/* What a hostile driver writes to a register: anything, except that queue
 * addresses land in the scratch area or far past RAM, so the device's
 * writes cannot hit this guest's own code (that would test the guest, not
 * the VMM). */
static uint32_t scribble_value(unsigned reg)
{
    uint32_t v = (uint32_t)scribble_rand();
    if (reg >= R_DESC_LO && reg <= R_USED_HI) /* 1- and 2-byte writes are ignored */
        return (reg & 4) ? (v & 1 ? v : 0) : (uint32_t)BENCH_SCRATCH + (v & 0xfff000);
    return v;
}

/* Every register of every virtio-mmio window, at every access size, through
 * real MMIO exits; the queue memory is random too. */
static void scribble_window(uint64_t base)
{
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned off = 0; off < 0x200; off += 4) {
            switch (scribble_rand() % 4) {
            case 0: *(volatile uint8_t *)(base + off + (scribble_rand() & 3)) = (uint8_t)scribble_rand(); break;
            case 1: *(volatile uint16_t *)(base + off + (scribble_rand() & 2)) = (uint16_t)scribble_rand(); break;
            case 2: (void)*(volatile uint32_t *)(base + off); break;
            default: wr(base, off, scribble_value(off)); break;
            }
        }
        wr(base, R_QUEUE_READY, 1);
        wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        wr(base, R_QUEUE_NOTIFY, (uint32_t)scribble_rand() % 3);
    }
}

/* kvmc.test=scribble: a hostile driver on every virtio window and the I/O
 * APIC, then 2,000 resets of each device mid-bring-up, then the ordinary
 * virtio test must still pass (tests/integration/test_virtio.c). */
void test_virtio_scribble(void)
{
    uint64_t *scratch = (uint64_t *)BENCH_SCRATCH;
    for (unsigned i = 0; i < (1u << 20) / 8; i++)
        scratch[i] = scribble_rand();
    unsigned accesses = 0;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX; i++, accesses += 4 * 128)
        scribble_window(VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_STRIDE);
    /* The I/O APIC: random selects and values (the guest runs with
     * interrupts off, so whatever it programs stays pending). */
    for (unsigned i = 0; i < 2000; i++, accesses += 2) {
        *(volatile uint32_t *)(0xfec00000ull + (scribble_rand() & 0xffc)) = (uint32_t)scribble_rand();
        *(volatile uint32_t *)0xfec00010ull = (uint32_t)scribble_rand();
    }
    unsigned resets = 0;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX; i++) {
        uint64_t base = VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_STRIDE;
        if (rd(base, R_MAGIC) != 0x74726976)
            continue;
        for (unsigned k = 0; k < 2000; k++, resets++) {
            wr(base, R_STATUS, 0);
            wr(base, R_STATUS, S_ACK | S_DRIVER);
            wr(base, R_QUEUE_SEL, k % 3);
            wr(base, R_QUEUE_READY, k & 1);
        }
    }
    puts_serial("scribble: ");
    put_dec(accesses);
    puts_serial(" accesses, ");
    put_dec(resets);
    puts_serial(" resets, still running\n");
    run_virtio_tests(false);
}

/* ------------------------------------------------------- block benchmark */

#define BENCH_DEPTH 8 /* requests in flight */
struct bench_req { uint32_t type, reserved; uint64_t sector; };
static struct bench_req bench_hdr[BENCH_DEPTH];
static volatile uint8_t bench_status[BENCH_DEPTH];

/* Offers request `slot` (descriptors 3*slot..3*slot+2) of len bytes. */
static void bench_submit(unsigned slot, uint32_t type, uint64_t sector, uint32_t len)
{
    struct vq_ring *r = blk_q.ring;
    uint16_t d = (uint16_t)(3 * slot);
    uint8_t *buf = (uint8_t *)(BENCH_SCRATCH + (uint64_t)slot * (1u << 20));
    bench_hdr[slot] = (struct bench_req){.type = type, .sector = sector};
    bench_status[slot] = 0xff;
    r->desc[d] = (struct vq_desc){(uint64_t)&bench_hdr[slot], sizeof(bench_hdr[slot]),
                                  VQ_F_NEXT, (uint16_t)(d + 1)};
    r->desc[d + 1] = (struct vq_desc){(uint64_t)buf, len,
                                      (uint16_t)(VQ_F_NEXT | (type == 0 ? VQ_F_WRITE : 0)),
                                      (uint16_t)(d + 2)};
    r->desc[d + 2] = (struct vq_desc){(uint64_t)&bench_status[slot], 1, VQ_F_WRITE, 0};
    vq_offer(&blk_q, d);
}

/* A flush (header and status only), between phases, untimed. */
static bool bench_flush(void)
{
    struct vq_ring *r = blk_q.ring;
    bench_hdr[0] = (struct bench_req){.type = 4 /* FLUSH */};
    bench_status[0] = 0xff;
    r->desc[0] = (struct vq_desc){(uint64_t)&bench_hdr[0], sizeof(bench_hdr[0]), VQ_F_NEXT, 1};
    r->desc[1] = (struct vq_desc){(uint64_t)&bench_status[0], 1, VQ_F_WRITE, 0};
    vq_offer(&blk_q, 0);
    uint32_t id, used;
    bool ok = vq_take(&blk_q, &id, &used, 60) && id == 0 && bench_status[0] == 0;
    puts_serial(ok ? "blkbench: flush ok\n" : "blkbench: flush FAILED\n");
    return ok;
}

/* Runs `count` requests of `len` bytes, BENCH_DEPTH at a time; sequential
 * from sector 0 or pseudo-random (4 KiB aligned) within `sectors`. Prints
 * "blkbench: NAME start" and "blkbench: NAME done BYTES TSC" lines, which
 * bench/run.py times. */
static bool bench_phase(const char *name, uint32_t type, uint32_t len, unsigned count,
                        uint64_t sectors, bool random)
{
    puts_serial("blkbench: ");
    puts_serial(name);
    puts_serial(" start\n");
    uint64_t t0 = rdtsc_now(), next = 0, seed = 0x9e3779b97f4a7c15ull;
    unsigned issued = 0, done = 0, span = len / 512;
    for (; issued < count && issued < BENCH_DEPTH; issued++, next += span)
        bench_submit(issued, type, next % sectors, len);
    while (done < count) {
        uint32_t id, used;
        if (!vq_take(&blk_q, &id, &used, 10) || id % 3 || id / 3 >= BENCH_DEPTH ||
            bench_status[id / 3] != 0) {
            puts_serial("blkbench: FAILED\n");
            return false;
        }
        done++;
        if (issued < count) {
            uint64_t sector = next % (sectors - span + 1);
            if (random) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                sector = ((seed >> 20) % (sectors / 8)) * 8;
            }
            bench_submit(id / 3, type, sector, len);
            issued++;
            next += span;
        }
    }
    puts_serial("blkbench: ");
    puts_serial(name);
    puts_serial(" done ");
    put_dec((uint64_t)count * len);
    puts_serial(" ");
    put_dec(rdtsc_now() - t0);
    puts_serial("\n");
    return true;
}

/* kvmc.test=notifybench, kvmc.notifybench=N: N one-byte virtio-rng
 * requests one after another, each a notify the device must see and a used
 * entry the guest then polls for: the round trip of a notification through
 * the transport (prints "notifybench: rng done N TSC"). */
void bench_virtio_notify(const char *cmdline)
{
    char arg[16] = "10000";
    cmdline_get(cmdline, "kvmc.notifybench=", arg, sizeof(arg));
    unsigned n = 0;
    for (const char *c = arg; *c >= '0' && *c <= '9'; c++)
        n = n * 10 + (unsigned)(*c - '0');
    uint64_t base = virtio_find(4);
    if (!base || !virtio_setup(base, 0, &rng_q, &rings[1], 1)) {
        puts_serial("notifybench: setup FAILED\n");
        return;
    }
    static uint8_t byte;
    rng_q.ring->desc[0] = (struct vq_desc){(uint64_t)&byte, 1, VQ_F_WRITE, 0};
    puts_serial("notifybench: rng start\n");
    uint64_t t0 = rdtsc_now();
    for (unsigned i = 0; i < n; i++) {
        uint32_t id, len;
        vq_offer(&rng_q, 0);
        if (!vq_take(&rng_q, &id, &len, 5) || len != 1) {
            puts_serial("notifybench: FAILED\n");
            return;
        }
    }
    uint64_t t = rdtsc_now() - t0;
    puts_serial("notifybench: rng done ");
    put_dec(n);
    puts_serial(" ");
    put_dec(t);
    puts_serial("\nnotifybench: ok\n");
}

void bench_virtio_blk(const char *cmdline)
{
    /* kvmc.blkbench=MIB: how much to read and write sequentially. */
    char arg[16] = "64";
    cmdline_get(cmdline, "kvmc.blkbench=", arg, sizeof(arg));
    uint64_t mib = 0;
    for (const char *c = arg; *c >= '0' && *c <= '9'; c++)
        mib = mib * 10 + (uint64_t)(*c - '0');
    /* FLUSH negotiated, as Linux does: both VMMs then cache writes in the
     * host's page cache (without it, a device must write through). */
    uint64_t base = virtio_find(2);
    if (!base || !virtio_setup(base, 1u << 9 /* VIRTIO_BLK_F_FLUSH */, &blk_q, &rings[0], 1)) {
        puts_serial("blkbench: setup FAILED\n");
        return;
    }
    uint64_t sectors = virtio_config32(base, 0) | ((uint64_t)virtio_config32(base, 4) << 32);
    if (!mib || mib * 2048 > sectors) {
        puts_serial("blkbench: disk smaller than kvmc.blkbench FAILED\n");
        return;
    }
    const uint32_t big = 128 << 10;
    unsigned seq = (unsigned)(mib * 1024 * 1024 / big);
    /* Touch the request buffers first, as a guest's page cache would be:
     * otherwise the first phase that writes into them (seqread) pays the
     * host's first-touch faults, huge-page allocation and compaction. */
    for (uint64_t off = 0; off < (uint64_t)BENCH_DEPTH << 20; off += 4096)
        *(volatile uint8_t *)(BENCH_SCRATCH + off) = 0;
    /* The flush settles the written data, so that the reads that follow
     * do not race the host's writeback. */
    bool ok = bench_phase("seqwrite", 1, big, seq, mib * 2048, false) && bench_flush() &&
              bench_phase("seqread", 0, big, seq, mib * 2048, false) &&
              bench_phase("randread", 0, 4096, (unsigned)(mib * 128), mib * 2048, true);
    puts_serial(ok ? "blkbench: ok\n" : "blkbench: FAILED\n");
}
