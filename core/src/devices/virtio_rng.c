/* virtio-rng: fills the guest's buffers from getrandom(2). */
#include <linux/virtio_ids.h>
#include <sys/random.h>

#include "virtio_rng.h"

#include "../config.h"

#define RNG_MAX_BYTES_PER_REQUEST 65536 /* do not let one request hog the thread */

static void rng_process(struct virtio_dev *dev, unsigned qi)
{
    struct virtq_chain chain;
    struct virtio_ticket t;
    while (virtio_pop(dev, qi, &chain, &t)) {
        uint32_t written = 0;
        for (unsigned i = 0; i < chain.count; i++) {
            const struct virtq_buf *b = &chain.bufs[i];
            if (!b->writable || !b->len)
                continue;
            uint32_t want = b->len;
            if (want > RNG_MAX_BYTES_PER_REQUEST - written)
                want = RNG_MAX_BYTES_PER_REQUEST - written;
            ssize_t n = want ? getrandom(b->host, want, 0) : 0;
            if (n <= 0)
                break;
            written += (uint32_t)n;
            if ((uint32_t)n < b->len)
                break;
        }
        stats_add(dev->stats, STAT_RNG_BYTES, written);
        virtio_complete(dev, qi, &t, written);
    }
}

/* Nothing of its own: requests are served as they come, none held. The
 * hooks say it can be saved. */
static int rng_save(struct virtio_dev *dev, struct snapshot_writer *w)
{
    (void)dev, (void)w;
    return KVMC_OK;
}

static int rng_restore(struct virtio_dev *dev, struct snapshot_reader *r)
{
    (void)dev, (void)r;
    return KVMC_OK;
}

static const struct virtio_device_ops rng_ops = {
    .name = "virtio-rng",
    .device_id = VIRTIO_ID_RNG,
    .num_queues = 1,
    .queue_max = VIRTQ_MAX_SIZE,
    .process_queue = rng_process,
    .save = rng_save,
    .restore = rng_restore,
};

static unsigned rng_count(const kvmc_config *cfg) { return cfg->rng ? 1 : 0; }

static int rng_open(const kvmc_config *cfg, unsigned i, const struct virtio_device_ops **ops,
                    void **impl)
{
    (void)cfg, (void)i;
    *ops = &rng_ops;
    *impl = NULL;
    return KVMC_OK;
}

const struct virtio_device_type virtio_rng_device = {
    .name = "virtio-rng", .count = rng_count, .open = rng_open};
