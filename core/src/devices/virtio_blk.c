/* virtio-blk on a raw image file: read, write, flush (fdatasync), get-ID,
 * discard (punch hole) and write-zeroes. A host I/O error is reported to the
 * guest as VIRTIO_BLK_S_IOERR and the VMM keeps running.
 *
 * Requests are asynchronous: the VM's I/O thread pops them into one of
 * BLK_SLOTS request slots and hands them to the VM's worker pool, which
 * runs up to BLK_WORKERS of them at once and completes them in any order.
 * So a slow disk stalls no vCPU, no other device, and no other request
 * behind it. When every slot is busy the I/O thread stops popping (the
 * requests wait in the guest's ring) until a worker frees one and wakes it
 * through an eventfd. Before the device is attached to an I/O thread (unit
 * tests) requests run inline.
 *
 * Fast path: a read or write first tries preadv2/pwritev2 with RWF_NOWAIT on
 * the I/O thread. The kernel then either completes it from the page cache
 * without blocking, or says EAGAIN and the request goes to a worker. Handing
 * every request to a worker cost two thread wake-ups each; on these hosts
 * that nearly halved 4 KiB random-read throughput from the page cache. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../config.h"
#include "../error.h"
#include "../snapshot/format.h"
#include "../virtio/chain.h"
#include "../iothread.h"
#include "../virtio/virtio.h"
#include "virtio_blk.h"

#define SECTOR_SIZE 512ull
#define BLK_MAX_DISCARD_SEGS 16
#define BLK_MAX_DISCARD_SECTORS (1u << 22)
#define BLK_MAX_REQUEST (1ull << 30) /* bytes in one read or write */
#define BLK_WORKERS 4 /* requests executing at once */
#define BLK_SLOTS 16  /* requests popped from the ring and not yet completed */

/* One request from pop to completion; owned by a worker while it runs. */
struct blk_request {
    struct iopool_job job; /* first: the pool hands this back */
    struct virtio_dev *dev;
    unsigned qi;
    uint8_t *status;       /* where the status goes; NULL: nowhere to put it */
    struct virtio_ticket ticket;
    struct virtq_chain chain;
};

struct virtio_blk {
    int fd;
    bool read_only;
    uint64_t sectors;
    char serial[VIRTIO_BLK_ID_BYTES];
    struct virtio_blk_config config;
    struct iopool *pool;  /* NULL until attached: requests run inline */
    int resume_fd;        /* a worker freed a slot the I/O thread waited for */
    pthread_mutex_t lock; /* guards the free slots and `starved` */
    struct blk_request *free[BLK_SLOTS];
    unsigned nfree;
    bool starved;         /* the I/O thread found no free slot */
    struct blk_request *slots; /* BLK_SLOTS of them; pages touched on use */
};

/* Moves `limit` bytes between the file at `offset` and the chain's buffers
 * of one kind (writable for reads, readable for writes), starting at the
 * cursor's position. Returns 0 or -errno; a short transfer (the image
 * shrank under us) is -EIO. */
/* With RWF_NOWAIT in flags, anything but a complete transfer is -EAGAIN:
 * the worker redoes the whole request without it. */
static ssize_t file_io(int fd, bool read, void *buf, size_t len, off_t off, int flags)
{
    struct iovec v = {.iov_base = buf, .iov_len = len};
    return read ? preadv2(fd, &v, 1, off, flags) : pwritev2(fd, &v, 1, off, flags);
}

static int transfer(struct virtio_blk *blk, struct chain_cursor start, bool writable,
                    uint64_t limit, uint64_t offset, int flags)
{
    bool nowait = flags & RWF_NOWAIT;
    const struct virtq_chain *chain = start.chain;
    uint64_t moved = 0;
    uint32_t skip = start.off;
    for (unsigned i = start.buf; i < chain->count && moved < limit; i++, skip = 0) {
        const struct virtq_buf *b = &chain->bufs[i];
        if (b->writable != writable)
            continue;
        uint64_t len = b->len - skip;
        if (len > limit - moved)
            len = limit - moved;
        for (uint64_t done = 0; done < len;) {
            ssize_t n = file_io(blk->fd, writable, b->host + skip + done, len - done,
                                (off_t)(offset + moved + done), flags);
            if (n < 0 && errno == EINTR)
                continue;
            if (nowait && (size_t)n != len - done)
                return -EAGAIN; /* short, would block, or unsupported */
            if (n <= 0)
                return n < 0 ? -errno : -EIO;
            done += (uint64_t)n;
        }
        moved += len;
    }
    return moved == limit ? 0 : -EIO;
}

/* Writes zeroes over [off, off+len) without changing the file's size: for
 * file systems without FALLOC_FL_ZERO_RANGE (tmpfs, for one). */
static int write_zeroes(int fd, off_t off, off_t len)
{
    static const uint8_t zeros[4096];
    for (off_t at = 0; at < len;) {
        size_t n = len - at < (off_t)sizeof(zeros) ? (size_t)(len - at) : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, off + at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        at += w;
    }
    return 0;
}

/* DISCARD and WRITE_ZEROES: exactly the sectors asked for, never past the
 * image's end, and never a change of its size (KEEP_SIZE, and the fallback
 * writes only the range). */
static uint8_t discard_or_zero(struct virtio_blk *blk, struct chain_cursor *cur, bool zero)
{
    struct virtio_blk_discard_write_zeroes seg;
    unsigned segs = 0;
    while (chain_read(cur, &seg, sizeof(seg)) == sizeof(seg)) {
        if (++segs > BLK_MAX_DISCARD_SEGS || seg.num_sectors > BLK_MAX_DISCARD_SECTORS ||
            seg.sector > blk->sectors || seg.num_sectors > blk->sectors - seg.sector)
            return VIRTIO_BLK_S_IOERR;
        off_t off = (off_t)(seg.sector * SECTOR_SIZE), len = (off_t)(seg.num_sectors * SECTOR_SIZE);
        if (!len)
            continue;
        int mode = (zero ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE) | FALLOC_FL_KEEP_SIZE;
        if (fallocate(blk->fd, mode, off, len) == 0)
            continue;
        bool unsupported = errno == EOPNOTSUPP || errno == ENOSYS;
        if (!zero && unsupported)
            continue; /* discard is a hint */
        if (zero && unsupported && write_zeroes(blk->fd, off, len) == 0)
            continue;
        return VIRTIO_BLK_S_IOERR;
    }
    return segs ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
}

/* Returned by execute() with RWF_NOWAIT when the request needs a worker. */
#define BLK_WOULD_BLOCK 0xff

/* Executes one request; returns its status and sets *data_in to the bytes
 * written into the guest's data buffers. With RWF_NOWAIT in flags, only
 * reads and writes the page cache can serve at once are executed; anything
 * else returns BLK_WOULD_BLOCK with nothing done that matters (a partial
 * read or write is redone in full).
 *
 * writethrough: the driver did not negotiate VIRTIO_BLK_F_FLUSH, so it may
 * take a completed write as durable (virtio 1.x, 5.2.5.1; Linux does): such
 * writes use RWF_DSYNC, and written zeroes are synced. */
static uint8_t execute(struct virtio_blk *blk, const struct virtq_chain *chain,
                       uint64_t data_capacity, uint32_t *data_in, int flags, bool writethrough,
                       struct vm_stats *stats)
{
    struct chain_cursor cur = {.chain = chain};
    struct virtio_blk_outhdr hdr;
    *data_in = 0;
    if (chain_read(&cur, &hdr, sizeof(hdr)) != sizeof(hdr))
        return VIRTIO_BLK_S_IOERR;
    uint64_t data_out = chain->readable - sizeof(hdr);
    bool data_request = hdr.type == VIRTIO_BLK_T_IN || hdr.type == VIRTIO_BLK_T_OUT;
    if ((flags & RWF_NOWAIT) && (!data_request || (writethrough && hdr.type == VIRTIO_BLK_T_OUT)))
        return BLK_WOULD_BLOCK; /* flush, synced writes and the rest block: a worker runs them */
    switch (hdr.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        bool in = hdr.type == VIRTIO_BLK_T_IN;
        uint64_t len = in ? data_capacity : data_out;
        if (len % SECTOR_SIZE || len > BLK_MAX_REQUEST || hdr.sector > blk->sectors ||
            len / SECTOR_SIZE > blk->sectors - hdr.sector)
            return VIRTIO_BLK_S_IOERR;
        if (!in && blk->read_only)
            return VIRTIO_BLK_S_IOERR;
        uint64_t offset = hdr.sector * SECTOR_SIZE;
        struct chain_cursor data = in ? (struct chain_cursor){.chain = chain} : cur;
        int err = transfer(blk, data, in, len, offset,
                           flags | (!in && writethrough ? RWF_DSYNC : 0));
        if (err == -EAGAIN && (flags & RWF_NOWAIT))
            return BLK_WOULD_BLOCK;
        if (err)
            return VIRTIO_BLK_S_IOERR;
        if (in)
            *data_in = (uint32_t)len;
        stats_add(stats, in ? STAT_BLOCK_READ_COUNT : STAT_BLOCK_WRITE_COUNT, 1);
        stats_add(stats, in ? STAT_BLOCK_READ_BYTES : STAT_BLOCK_WRITE_BYTES, len);
        return VIRTIO_BLK_S_OK;
    }
    case VIRTIO_BLK_T_FLUSH:
        stats_add(stats, STAT_BLOCK_FLUSH_COUNT, 1);
        return fdatasync(blk->fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    case VIRTIO_BLK_T_GET_ID: {
        uint64_t len = data_capacity < VIRTIO_BLK_ID_BYTES ? data_capacity : VIRTIO_BLK_ID_BYTES;
        struct chain_cursor out = {.chain = chain};
        *data_in = (uint32_t)chain_write(&out, blk->serial, len);
        return VIRTIO_BLK_S_OK;
    }
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        if (blk->read_only)
            return VIRTIO_BLK_S_IOERR;
    {
        bool zero = hdr.type == VIRTIO_BLK_T_WRITE_ZEROES;
        uint8_t status = discard_or_zero(blk, &cur, zero);
        if (status == VIRTIO_BLK_S_OK && zero && writethrough && fdatasync(blk->fd) < 0)
            return VIRTIO_BLK_S_IOERR;
        return status;
    }
    default:
        return VIRTIO_BLK_S_UNSUPP;
    }
}

/* The status byte is the last byte of the last writable buffer. */
static uint8_t *status_byte(const struct virtq_chain *chain)
{
    if (!chain->count)
        return NULL;
    const struct virtq_buf *last = &chain->bufs[chain->count - 1];
    return last->writable && last->len ? last->host + last->len - 1 : NULL;
}

/* A free slot, or NULL after noting that the I/O thread waits for one. */
static struct blk_request *take_slot(struct virtio_blk *blk)
{
    pthread_mutex_lock(&blk->lock);
    struct blk_request *r = blk->nfree ? blk->free[--blk->nfree] : NULL;
    blk->starved = !r;
    pthread_mutex_unlock(&blk->lock);
    return r;
}

/* Returns a slot; wakes the I/O thread if it stopped for want of one. */
static void put_slot(struct virtio_blk *blk, struct blk_request *r)
{
    pthread_mutex_lock(&blk->lock);
    blk->free[blk->nfree++] = r;
    bool wake = blk->starved;
    blk->starved = false;
    pthread_mutex_unlock(&blk->lock);
    uint64_t one = 1;
    if (wake && write(blk->resume_fd, &one, sizeof(one)) != sizeof(one)) {
        /* an eventfd write only fails on overflow: a wake-up is pending */
    }
}

/* Finds the status byte and hides it from the data buffers (the last
 * writable buffer's view shrinks by one). */
static void prepare_request(struct blk_request *r)
{
    r->status = status_byte(&r->chain);
    if (r->status)
        r->chain.bufs[r->chain.count - 1].len--;
}

/* Executes r with flags; false if it would block (RWF_NOWAIT), else
 * completes it and frees its slot. */
static bool finish_request(struct blk_request *r, int flags)
{
    struct virtio_blk *blk = r->dev->impl;
    uint32_t data_in = 0;
    if (r->status) {
        bool writethrough = !(r->dev->driver_features & (1ull << VIRTIO_BLK_F_FLUSH));
        uint8_t status = execute(blk, &r->chain, r->chain.writable - 1, &data_in, flags,
                                 writethrough, r->dev->stats);
        if (status == BLK_WOULD_BLOCK)
            return false;
        if (status == VIRTIO_BLK_S_IOERR)
            stats_add(r->dev->stats, STAT_BLOCK_ERRORS, 1);
        *r->status = status;
    }
    virtio_complete(r->dev, r->qi, &r->ticket, r->status ? data_in + 1 : 0);
    put_slot(blk, r);
    return true;
}

/* A worker's job: the request, blocking as long as the disk takes. */
static void run_request(struct iopool_job *job)
{
    finish_request((struct blk_request *)job, 0);
}

/* I/O thread: pops requests while slots are free and hands them out. */
static void blk_process(struct virtio_dev *dev, unsigned qi)
{
    struct virtio_blk *blk = dev->impl;
    struct blk_request *r;
    while ((r = take_slot(blk))) {
        if (!virtio_pop(dev, qi, &r->chain, &r->ticket)) {
            put_slot(blk, r);
            return;
        }
        r->job.fn = run_request;
        r->dev = dev;
        r->qi = qi;
        prepare_request(r);
        if (!blk->pool)
            finish_request(r, 0);
        else if (!finish_request(r, RWF_NOWAIT))
            iopool_submit(blk->pool, &r->job);
    }
}

static void blk_resume(void *opaque)
{
    struct virtio_dev *dev = opaque;
    blk_process(dev, 0);
}

static int blk_attach(struct virtio_dev *dev, struct iothread *io)
{
    struct virtio_blk *blk = dev->impl;
    blk->resume_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (blk->resume_fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "virtio-blk: eventfd");
    int err = iothread_watch(io, blk->resume_fd, blk_resume, dev);
    if (err)
        return err;
    iopool_want(&io->pool, BLK_WORKERS);
    blk->pool = &io->pool;
    return KVMC_OK;
}

static void blk_read_config(struct virtio_dev *dev, uint32_t offset, void *data, unsigned len)
{
    struct virtio_blk *blk = dev->impl;
    memcpy(data, (const uint8_t *)&blk->config + offset, len);
}

static void blk_destroy(struct virtio_dev *dev)
{
    struct virtio_blk *blk = dev->impl;
    if (!blk)
        return;
    if (blk->fd >= 0)
        close(blk->fd);
    if (blk->resume_fd >= 0)
        close(blk->resume_fd);
    free(blk->slots);
    pthread_mutex_destroy(&blk->lock);
    free(blk);
}

static const uint64_t BLK_FEATURES =
    (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
    (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_DISCARD) |
    (1ull << VIRTIO_BLK_F_WRITE_ZEROES);

/* Saved: the disk's size and mode, to refuse a restore onto another disk.
 * Quiesce: requests in flight finish first (their completions are guest
 * state); a disk that does not answer in 10 s fails the snapshot. */
#define BLK_STATE_VERSION 1u
#define BLK_DRAIN_MS 10000

static int blk_quiesce(struct virtio_dev *dev)
{
    struct virtio_blk *blk = dev->impl;
    unsigned waited = 0;
    for (;;) {
        pthread_mutex_lock(&blk->lock);
        bool idle = blk->nfree == BLK_SLOTS;
        pthread_mutex_unlock(&blk->lock);
        if (idle)
            break;
        if (waited++ == BLK_DRAIN_MS)
            return kvmc_fail(KVMC_ETIMEDOUT, "virtio-blk: requests still in flight after "
                             "%u s: the disk does not answer", BLK_DRAIN_MS / 1000);
        nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
    }
    return KVMC_OK;
}

static int blk_save(struct virtio_dev *dev, struct snapshot_writer *w)
{
    struct virtio_blk *blk = dev->impl;
    snapshot_put_u32(w, BLK_STATE_VERSION);
    snapshot_put_u64(w, blk->sectors);
    snapshot_put_u32(w, blk->read_only);
    return w->err;
}

static int blk_restore(struct virtio_dev *dev, struct snapshot_reader *r)
{
    struct virtio_blk *blk = dev->impl;
    uint32_t version, read_only;
    uint64_t sectors;
    if (snapshot_get_u32(r, &version) || snapshot_get_u64(r, &sectors) ||
        snapshot_get_u32(r, &read_only))
        return KVMC_EFORMAT;
    if (version != BLK_STATE_VERSION)
        return kvmc_fail(KVMC_EFORMAT, "virtio-blk state version %u", version);
    if (sectors != blk->sectors || read_only != blk->read_only)
        return kvmc_fail(KVMC_EINVAL, "restore: the snapshot's disk had %llu sectors%s; this "
                         "one has %llu%s", (unsigned long long)sectors,
                         read_only ? " (read-only)" : "", (unsigned long long)blk->sectors,
                         blk->read_only ? " (read-only)" : "");
    return KVMC_OK;
}

static const struct virtio_device_ops blk_ops_rw = {
    .name = "virtio-blk", .device_id = VIRTIO_ID_BLOCK, .features = BLK_FEATURES,
    .num_queues = 1, .queue_max = VIRTQ_MAX_SIZE,
    .config_size = sizeof(struct virtio_blk_config),
    .read_config = blk_read_config, .process_queue = blk_process, .attach = blk_attach,
    .save = blk_save, .restore = blk_restore, .quiesce = blk_quiesce,
    .destroy = blk_destroy,
};
static const struct virtio_device_ops blk_ops_ro = {
    .name = "virtio-blk", .device_id = VIRTIO_ID_BLOCK,
    .features = (BLK_FEATURES & ~((1ull << VIRTIO_BLK_F_DISCARD) |
                                  (1ull << VIRTIO_BLK_F_WRITE_ZEROES))) |
                (1ull << VIRTIO_BLK_F_RO),
    .num_queues = 1, .queue_max = VIRTQ_MAX_SIZE,
    .config_size = sizeof(struct virtio_blk_config),
    .read_config = blk_read_config, .process_queue = blk_process, .attach = blk_attach,
    .save = blk_save, .restore = blk_restore, .quiesce = blk_quiesce,
    .destroy = blk_destroy,
};

/* An OFD lock on the whole image: shared for read-only, exclusive for
 * read-write. It goes with the open file description, so it lasts as long
 * as the device's fd and no fork or exec inherits it. */
static int lock_image(int fd, bool read_only, const char *path)
{
    struct flock fl = {.l_type = read_only ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return KVMC_OK;
    if (errno != EAGAIN && errno != EACCES)
        return kvmc_fail_errno(KVMC_EIO, errno, "disk %s: locking the image", path);
    fl.l_type = F_WRLCK;
    bool writer = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_WRLCK;
    return kvmc_fail(KVMC_EBUSY, "disk %s is in use: another VM or program has it open %s "
                     "(kvmc locks an image %s; the nolock disk option skips that)", path,
                     writer ? "for writing" : "read-only",
                     read_only ? "shared when read-only" : "exclusively when writable");
}

int virtio_blk_open(const char *path, unsigned flags, const char *serial,
                    const struct virtio_device_ops **ops, void **impl)
{
    bool read_only = flags & KVMC_DISK_READ_ONLY;
    struct virtio_blk *blk = calloc(1, sizeof(*blk));
    if (!blk)
        return kvmc_fail(KVMC_ENOMEM, "allocating virtio-blk");
    pthread_mutex_init(&blk->lock, NULL);
    blk->resume_fd = -1;
    blk->slots = calloc(BLK_SLOTS, sizeof(*blk->slots));
    if (!blk->slots) {
        blk_destroy(&(struct virtio_dev){.impl = blk});
        return kvmc_fail(KVMC_ENOMEM, "allocating virtio-blk requests");
    }
    for (unsigned i = 0; i < BLK_SLOTS; i++) /* touching no slot yet */
        blk->free[blk->nfree++] = &blk->slots[BLK_SLOTS - 1 - i];
    blk->read_only = read_only;
    blk->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    struct stat st;
    if (blk->fd < 0 || fstat(blk->fd, &st) < 0) {
        int e = errno;
        blk_destroy(&(struct virtio_dev){.impl = blk});
        return kvmc_fail_errno(KVMC_EIO, e, "disk %s", path);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        blk_destroy(&(struct virtio_dev){.impl = blk});
        return kvmc_fail(KVMC_EIO, "disk %s: not a regular file or block device", path);
    }
    if (!(flags & KVMC_DISK_NO_LOCK)) {
        int err = lock_image(blk->fd, read_only, path);
        if (err) {
            blk_destroy(&(struct virtio_dev){.impl = blk});
            return err;
        }
    }
    uint64_t bytes = (uint64_t)st.st_size;
    if (S_ISBLK(st.st_mode) && ioctl(blk->fd, BLKGETSIZE64, &bytes) < 0) {
        int e = errno;
        blk_destroy(&(struct virtio_dev){.impl = blk});
        return kvmc_fail_errno(KVMC_EIO, e, "disk %s: reading the device size", path);
    }
    blk->sectors = bytes / SECTOR_SIZE;
    strncpy(blk->serial, serial ? serial : "kvmc", sizeof(blk->serial));
    blk->config.capacity = blk->sectors;
    blk->config.seg_max = VIRTQ_MAX_SIZE - 2;
    blk->config.blk_size = SECTOR_SIZE;
    blk->config.max_discard_sectors = BLK_MAX_DISCARD_SECTORS;
    blk->config.max_discard_seg = BLK_MAX_DISCARD_SEGS;
    blk->config.discard_sector_alignment = 8;
    blk->config.max_write_zeroes_sectors = BLK_MAX_DISCARD_SECTORS;
    blk->config.max_write_zeroes_seg = BLK_MAX_DISCARD_SEGS;
    blk->config.write_zeroes_may_unmap = 1;
    *ops = read_only ? &blk_ops_ro : &blk_ops_rw;
    *impl = blk;
    return KVMC_OK;
}

static unsigned blk_count(const kvmc_config *cfg) { return cfg->ndisks; }

static int blk_open_nth(const kvmc_config *cfg, unsigned i, const struct virtio_device_ops **ops,
                        void **impl)
{
    const struct disk_config *d = &cfg->disks[i];
    return virtio_blk_open(d->path, d->flags, d->serial, ops, impl);
}

const struct virtio_device_type virtio_blk_device = {
    .name = "virtio-blk", .count = blk_count, .open = blk_open_nth};
