/* libFuzzer: the input is what a hostile driver controls. It becomes the
 * descriptor table, avail ring and indirect tables in guest memory, plus
 * the queue size and starting indices; then chains are popped and pushed
 * until the queue is empty or broken. Nothing may touch memory outside the
 * guest, loop forever, or crash. */
#include <stdint.h>
#include <string.h>

#include "virtio/virtqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM (4ull << 20) /* the smallest guest kvmc allows */
#define RING_AREA 0x1000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct guest_memory gm;
    static struct virtq_chain chain;
    static int ready;
    if (!ready) {
        if (gm_init(&gm, MEM, 0))
            return 0;
        ready = 1;
    }
    if (size < 8)
        return 0;
    /* Header: queue size exponent, start index, ring placement. */
    struct virtq q;
    memset(&q, 0, sizeof(q));
    q.size = (uint16_t)(1u << (data[0] % 10)); /* 1..512: too big gets rejected */
    q.last_avail = q.used_idx = (uint16_t)(data[1] | data[2] << 8);
    uint64_t where = RING_AREA + ((uint64_t)data[3] << 12);
    q.desc_gpa = where;
    q.avail_gpa = where + 16ull * 512 + (data[4] & 1); /* sometimes misaligned */
    q.used_gpa = where + 16ull * 512 + 2048;
    if (data[5] == 0xff)
        q.used_gpa = MEM - 4; /* straddles the end of RAM */
    data += 8;
    size -= 8;
    /* The rest is guest memory from the descriptor table on. */
    memset(gm_ptr(&gm, 0, MEM), 0, MEM);
    uint64_t room = MEM - where;
    memcpy(gm_ptr(&gm, where, 1), data, size < room ? size : room);

    q.ready = virtq_validate(&q, &gm);
    for (int i = 0; i < 1024; i++) {
        int r = virtq_pop(&q, &gm, &chain);
        if (r <= 0)
            break;
        /* Touch every buffer the queue handed out: ASan checks the bounds. */
        uint64_t sum = 0;
        for (unsigned b = 0; b < chain.count; b++) {
            if (chain.bufs[b].len) {
                sum += chain.bufs[b].host[0] + chain.bufs[b].host[chain.bufs[b].len - 1];
                if (chain.bufs[b].writable)
                    chain.bufs[b].host[0] = (uint8_t)sum;
            }
        }
        virtq_push(&q, &gm, chain.head, (uint32_t)sum);
    }
    virtq_interrupt_suppressed(&q, &gm);
    return 0;
}
