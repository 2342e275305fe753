/* A minimal virtio-mmio driver at CPL3, polling (the I/O APIC pins stay
 * masked): enough to read and write sectors of a virtio-blk disk and pull
 * bytes from virtio-rng, so the integration tests drive kvmc's devices from a
 * real guest on the host's /dev/kvm. Output lines are a contract with
 * tests/integration/test_virtio.c. */
#include <stdbool.h>
#include <stdint.h>

#include "guest.h"

#define VIRTIO_MMIO_BASE 0xc0000000ull
#define VIRTIO_MMIO_STRIDE 0x1000
#define VIRTIO_MMIO_MAX 8
#define QSIZE 8

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
#define F_NEXT 1
#define F_WRITE 2

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct ring {
    struct desc desc[QSIZE] __attribute__((aligned(16)));
    struct { uint16_t flags, idx, ring[QSIZE], event; } avail __attribute__((aligned(2)));
    struct { uint16_t flags, idx; struct { uint32_t id, len; } ring[QSIZE]; uint16_t event; }
        used __attribute__((aligned(4)));
};

static struct ring rings[2] __attribute__((aligned(4096)));
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
        setup_queue(base, qi, &rings[qi]);
        qs[qi] = (struct vq){.base = base, .index = qi, .ring = &rings[qi]};
    }
    wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    return true;
}

uint64_t virtio_find(uint32_t device_id)
{
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX; i++) {
        uint64_t base = VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_STRIDE;
        if (rd(base, R_MAGIC) == 0x74726976 && rd(base, R_VERSION) == 2 &&
            rd(base, R_DEVICE_ID) == device_id)
            return base;
    }
    return 0;
}

uint8_t virtio_config8(uint64_t base, unsigned offset)
{
    return *(volatile uint8_t *)(base + R_CONFIG + offset);
}

void vq_offer(struct vq *q, uint16_t head)
{
    struct vq_ring *r = q->ring;
    r->avail.ring[r->avail.idx % VQ_SIZE] = head;
    __atomic_store_n(&r->avail.idx, (uint16_t)(r->avail.idx + 1), __ATOMIC_RELEASE);
    wr(q->base, R_QUEUE_NOTIFY, q->index);
}

/* Brings a device up with only VIRTIO_F_VERSION_1 and queue 0 on ring r. */
static bool setup_device(uint64_t base, struct ring *r)
{
    wr(base, R_STATUS, 0);
    wr(base, R_STATUS, S_ACK | S_DRIVER);
    wr(base, R_DEVICE_FEATURES_SEL, 1);
    if (!(rd(base, R_DEVICE_FEATURES) & 1)) /* VERSION_1 is bit 32 */
        return false;
    wr(base, R_DRIVER_FEATURES_SEL, 0);
    wr(base, R_DRIVER_FEATURES, 0);
    wr(base, R_DRIVER_FEATURES_SEL, 1);
    wr(base, R_DRIVER_FEATURES, 1);
    wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(rd(base, R_STATUS) & S_FEATURES_OK))
        return false;
    wr(base, R_QUEUE_SEL, 0);
    if (rd(base, R_QUEUE_NUM_MAX) < QSIZE)
        return false;
    wr(base, R_QUEUE_NUM, QSIZE);
    uint64_t d = (uint64_t)&r->desc, a = (uint64_t)&r->avail, u = (uint64_t)&r->used;
    wr(base, R_DESC_LO, (uint32_t)d);
    wr(base, R_DESC_HI, (uint32_t)(d >> 32));
    wr(base, R_AVAIL_LO, (uint32_t)a);
    wr(base, R_AVAIL_HI, (uint32_t)(a >> 32));
    wr(base, R_USED_LO, (uint32_t)u);
    wr(base, R_USED_HI, (uint32_t)(u >> 32));
    wr(base, R_QUEUE_READY, 1);
    wr(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    return true;
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
    wr(q->base, R_INTERRUPT_ACK, rd(q->base, R_INTERRUPT_STATUS));
    return true;
}

/* Offers the chain starting at descriptor 0 and waits for it (bounded). */
static bool submit_and_wait(uint64_t base, struct ring *r, uint32_t *used_len)
{
    uint16_t want = (uint16_t)(r->used.idx + 1);
    r->avail.ring[r->avail.idx % QSIZE] = 0;
    __atomic_store_n(&r->avail.idx, (uint16_t)(r->avail.idx + 1), __ATOMIC_RELEASE);
    wr(base, R_QUEUE_NOTIFY, 0);
    uint64_t start = rdtsc_now();
    while (__atomic_load_n(&r->used.idx, __ATOMIC_ACQUIRE) != want) {
        if (rdtsc_now() - start > 20000000000ull)
            return false;
        __asm__ volatile("pause");
    }
    *used_len = r->used.ring[(uint16_t)(want - 1) % QSIZE].len;
    wr(base, R_INTERRUPT_ACK, rd(base, R_INTERRUPT_STATUS));
    return true;
}

static uint8_t blk_request(uint64_t base, uint32_t type, uint64_t sector, uint32_t len,
                           bool data_in)
{
    struct ring *r = &rings[0];
    blk_hdr.type = type;
    blk_hdr.sector = sector;
    blk_status = 0xff;
    r->desc[0] = (struct desc){(uint64_t)&blk_hdr, sizeof(blk_hdr), F_NEXT, 1};
    r->desc[1] = (struct desc){(uint64_t)blk_buf, len, (uint16_t)(F_NEXT | (data_in ? F_WRITE : 0)), 2};
    r->desc[2] = (struct desc){(uint64_t)&blk_status, 1, F_WRITE, 0};
    uint32_t used_len;
    if (!submit_and_wait(base, r, &used_len))
        return 0xfe;
    return blk_status;
}

/* Hashes sectors 0-3, writes a pattern to sector 5 and reads it back. */
static void test_blk(uint64_t base, void (*print)(const char *), void (*hex)(uint64_t, int),
                     void (*dec)(uint64_t))
{
    uint64_t capacity = rd(base, R_CONFIG) | ((uint64_t)rd(base, R_CONFIG + 4) << 32);
    print("virtio-blk: ");
    dec(capacity);
    print(" sectors");
    if (!setup_device(base, &rings[0])) {
        print(", setup FAILED\n");
        return;
    }
    uint8_t st = blk_request(base, 0 /* IN */, 0, 2048, true);
    print(", read status ");
    dec(st);
    print(", sectors 0-3 fnv1a 0x");
    hex(fnv1a(blk_buf, 2048), 16);
    for (unsigned i = 0; i < 512; i++)
        blk_buf[i] = (uint8_t)(0xa5 ^ i);
    uint8_t wst = blk_request(base, 1 /* OUT */, 5, 512, false);
    for (unsigned i = 0; i < 512; i++)
        blk_buf[i] = 0;
    uint8_t rst = blk_request(base, 0, 5, 512, true);
    bool same = wst == 0 && rst == 0;
    for (unsigned i = 0; i < 512; i++)
        same &= blk_buf[i] == (uint8_t)(0xa5 ^ i);
    print(same ? ", sector 5 write+read ok" : ", sector 5 write+read FAILED");
    uint8_t ist = blk_request(base, 8 /* GET_ID */, 0, 20, true);
    blk_buf[20] = 0;
    print(", serial ");
    print(ist == 0 ? (const char *)blk_buf : "?");
    uint8_t bad = blk_request(base, 0, capacity, 512, true);
    print(", past-end read status ");
    dec(bad);
    print("\n");
}

static void test_rng(uint64_t base, void (*print)(const char *), void (*dec)(uint64_t))
{
    if (!setup_device(base, &rings[1])) {
        print("virtio-rng: setup FAILED\n");
        return;
    }
    struct ring *r = &rings[1];
    static uint8_t buf[64];
    r->desc[0] = (struct desc){(uint64_t)buf, sizeof(buf), F_WRITE, 0};
    uint32_t got = 0;
    submit_and_wait(base, r, &got);
    uint8_t seen[256] = {0};
    unsigned distinct = 0;
    for (unsigned i = 0; i < got && i < sizeof(buf); i++)
        if (!seen[buf[i]]++)
            distinct++;
    print("virtio-rng: ");
    dec(got);
    print(" bytes, ");
    dec(distinct);
    print(" distinct\n");
}

/* Sends a descriptor chain that loops on itself: the device must flag
 * NEEDS_RESET (0x40) and keep the VMM alive; after a reset it works again. */
static void test_hostile(uint64_t base, void (*print)(const char *), void (*hex)(uint64_t, int))
{
    struct ring *r = &rings[0];
    if (!setup_device(base, r))
        return;
    r->desc[0] = (struct desc){(uint64_t)&blk_hdr, sizeof(blk_hdr), F_NEXT, 0};
    r->avail.ring[r->avail.idx % QSIZE] = 0;
    __atomic_store_n(&r->avail.idx, (uint16_t)(r->avail.idx + 1), __ATOMIC_RELEASE);
    wr(base, R_QUEUE_NOTIFY, 0);
    uint64_t start = rdtsc_now();
    while (!(rd(base, R_STATUS) & 0x40) && rdtsc_now() - start < 20000000000ull)
        __asm__ volatile("pause");
    print("virtio-hostile: status 0x");
    hex(rd(base, R_STATUS), 2);
    print(", interrupt status 0x");
    hex(rd(base, R_INTERRUPT_STATUS), 1);
    /* Reset and bring it up again from scratch. */
    for (unsigned i = 0; i < sizeof(*r); i++)
        ((volatile uint8_t *)r)[i] = 0;
    setup_device(base, r);
    print(blk_request(base, 0, 0, 512, true) == 0 ? ", after reset read ok\n"
                                                   : ", after reset read FAILED\n");
}

void run_virtio_tests(void (*print)(const char *), void (*hex)(uint64_t, int),
                      void (*dec)(uint64_t), bool hostile)
{
    unsigned found = 0;
    for (unsigned i = 0; i < VIRTIO_MMIO_MAX; i++) {
        uint64_t base = VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_STRIDE;
        if (rd(base, R_MAGIC) != 0x74726976 || rd(base, R_VERSION) != 2)
            continue;
        found++;
        uint32_t id = rd(base, R_DEVICE_ID);
        if (id == 2 && hostile)
            test_hostile(base, print, hex);
        else if (id == 2)
            test_blk(base, print, hex, dec);
        else if (id == 4)
            test_rng(base, print, dec);
    }
    print("virtio: ");
    dec(found);
    print(" devices\n");
}
