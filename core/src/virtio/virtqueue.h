/* Split virtqueues (virtio 1.x, 2.7). Everything in the rings comes from the
 * guest: every address, length, index and flag is checked, chains are bounded
 * by the queue size, and a queue that breaks a rule is marked broken and never
 * touched again until the driver resets the device. */
#ifndef KVMC_VIRTQUEUE_H
#define KVMC_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "../guest_memory.h"

#define VIRTQ_MAX_SIZE 256         /* largest queue we offer */
#define VIRTQ_MAX_INDIRECT 256     /* entries of one indirect table */
#define VIRTQ_MAX_CHAIN (VIRTQ_MAX_SIZE + VIRTQ_MAX_INDIRECT)

struct virtq {
    uint16_t size;       /* QueueNum chosen by the driver */
    bool ready;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    uint16_t last_avail; /* next avail ring slot to take */
    uint16_t used_idx;   /* our copy of used->idx */
    bool broken;
    bool notify_off;     /* we set VRING_USED_F_NO_NOTIFY in the used ring */
    char broken_reason[96];
};

struct virtq_buf {
    uint8_t *host;   /* host view of [gpa, gpa+len), checked against guest RAM */
    uint32_t len;
    bool writable;   /* device writes it */
};

struct virtq_chain {
    uint16_t head;
    unsigned count;
    uint64_t readable, writable; /* total bytes of each kind */
    struct virtq_buf bufs[VIRTQ_MAX_CHAIN];
};

/* Checks the ring addresses and size once the driver marks the queue ready,
 * and clears the used ring's flags (ours to write). Returns false (and
 * marks it broken) if they do not fit guest RAM. */
bool virtq_validate(struct virtq *q, const struct guest_memory *gm);

/* Takes the next available chain. Returns 1 with *chain filled, 0 if none is
 * available, -1 if the queue is (now) broken.
 *
 * Notification suppression: while pops find chains, the driver is told not
 * to notify (VRING_USED_F_NO_NOTIFY), since the device is consuming anyway;
 * the first pop that finds the ring empty turns notifications back on and
 * looks once more, so a chain added in between is never missed. A device
 * that stops popping with chains left must come back on its own (a freed
 * request slot, a host socket turning writable), not wait for a notify. */
int virtq_pop(struct virtq *q, const struct guest_memory *gm, struct virtq_chain *chain);

/* Returns a chain to the driver with `written` bytes written into it. */
void virtq_push(struct virtq *q, const struct guest_memory *gm, uint16_t head,
                uint32_t written);

/* Whether the driver asked not to be interrupted (VRING_AVAIL_F_NO_INTERRUPT). */
bool virtq_interrupt_suppressed(const struct virtq *q, const struct guest_memory *gm);

void virtq_reset(struct virtq *q);

#endif
