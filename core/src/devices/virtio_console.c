/* virtio-console: a second console (hvc0 in Linux), one port, no multiport.
 * Its host side is either a callback (output) plus kvmc_vm_virtio_console_write
 * (input), or a listening Unix socket that one client at a time owns.
 *
 * Nothing is lost: while no client is connected, guest output waits in the
 * transmit queue (the guest sees a slow device), and input is read from the
 * client only while the input buffer has room. Everything runs on the VM's
 * I/O thread except kvmc_vm_virtio_console_write, which takes `lock`.
 *
 * Snapshots: the input not yet delivered is saved, and how much of a
 * transmit chain already went out (the chain itself is taken again after a
 * restore: see virtio_dev_save), so nothing is sent twice or lost. The
 * client connection is the host's, not the guest's: a reset keeps it, and
 * a restored VM waits for a new one on its own socket. */
#include <errno.h>
#include <linux/virtio_ids.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../bytering.h"
#include "../config.h"
#include "../error.h"
#include "../seccomp.h"
#include "../snapshot/format.h"
#include "../unix_socket.h"
#include "../iothread.h"
#include "../virtio/virtio.h"
#include "virtio_console.h"

#define CONSOLE_RX_QUEUE 0 /* host to guest */
#define CONSOLE_TX_QUEUE 1 /* guest to host */
#define CONSOLE_INPUT_BUFFER 65536

struct vconsole {
    struct virtio_dev *dev;
    kvmc_console_fn out_fn; /* callback mode */
    void *out_opaque;
    struct unix_listener listener; /* socket mode (fd -1 otherwise) */
    int client_fd;
    int wake_fd;            /* input arrived through the API */
    pthread_mutex_t lock;   /* guards `input` */
    struct bytering input;
    /* A transmit chain, possibly only partly written to a slow client. */
    struct virtio_held tx;
    unsigned tx_buf;        /* next buffer of tx.chain to send */
    uint32_t tx_off;        /* bytes of that buffer already sent */
    bool tx_resume;         /* restored: the next chain taken is the held one */
    unsigned resume_buf;
    uint32_t resume_off;
    struct virtq_chain rx_chain; /* scratch for deliver_input */
};

/* Moves buffered input into the guest's receive buffers. */
static void deliver_input(struct vconsole *c)
{
    struct virtq_chain *rx = &c->rx_chain;
    struct virtio_ticket t;
    pthread_mutex_lock(&c->lock);
    while (c->input.len && virtio_pop(c->dev, CONSOLE_RX_QUEUE, rx, &t)) {
        uint32_t written = 0;
        for (unsigned i = 0; i < rx->count && c->input.len; i++)
            if (rx->bufs[i].writable)
                written += (uint32_t)bytering_pop(&c->input, rx->bufs[i].host, rx->bufs[i].len);
        virtio_complete(c->dev, CONSOLE_RX_QUEUE, &t, written);
    }
    pthread_mutex_unlock(&c->lock);
}

/* Sends what is left of the pending chain; true once it is all gone. */
static bool flush_tx_chain(struct vconsole *c)
{
    struct virtq_chain *ch = &c->tx.chain;
    for (; c->tx_buf < ch->count; c->tx_buf++, c->tx_off = 0) {
        const struct virtq_buf *b = &ch->bufs[c->tx_buf];
        if (b->writable)
            continue;
        while (c->tx_off < b->len) {
            if (c->out_fn) {
                c->out_fn(c->out_opaque, b->host + c->tx_off, b->len - c->tx_off);
                c->tx_off = b->len;
                break;
            }
            if (c->client_fd < 0)
                return false;
            ssize_t n = send(c->client_fd, b->host + c->tx_off, b->len - c->tx_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return false;
            if (n <= 0) { /* the client went away; keep the data for the next */
                close(c->client_fd);
                c->client_fd = -1;
                return false;
            }
            c->tx_off += (uint32_t)n;
        }
    }
    return true;
}

static void process_output(struct vconsole *c)
{
    while (virtio_hold(c->dev, CONSOLE_TX_QUEUE, &c->tx)) {
        if (c->tx.fresh) {
            c->tx.fresh = false;
            c->tx_buf = c->tx_resume ? c->resume_buf : 0;
            c->tx_off = c->tx_resume ? c->resume_off : 0;
            c->tx_resume = false;
        }
        if (!flush_tx_chain(c))
            return;
        virtio_release(c->dev, CONSOLE_TX_QUEUE, &c->tx, 0);
    }
}

static void console_process(struct virtio_dev *dev, unsigned qi)
{
    struct vconsole *c = dev->impl;
    if (qi == CONSOLE_RX_QUEUE)
        deliver_input(c);
    else
        process_output(c);
}

/* Reads from the client while the input buffer has room. */
static void read_client(struct vconsole *c)
{
    pthread_mutex_lock(&c->lock);
    uint8_t *p;
    size_t room = bytering_free_run(&c->input, &p);
    ssize_t n = room ? recv(c->client_fd, p, room, MSG_DONTWAIT) : -1;
    if (n > 0)
        bytering_commit(&c->input, (size_t)n);
    pthread_mutex_unlock(&c->lock);
    if (n == 0 || (n < 0 && room && errno != EAGAIN && errno != EINTR)) {
        close(c->client_fd);
        c->client_fd = -1;
    }
}

static unsigned console_prepare(void *opaque, struct pollfd *fds, unsigned max, int *timeout)
{
    struct vconsole *c = opaque;
    unsigned n = 0;
    if (max < 2)
        return 0;
    fds[n++] = (struct pollfd){.fd = c->wake_fd, .events = POLLIN};
    if (c->client_fd >= 0) {
        short ev = c->tx.held ? POLLOUT : 0;
        if (bytering_space(&c->input))
            ev |= POLLIN;
        /* Not polled at all while it could do nothing: a hang-up would
         * otherwise wake the thread in a loop until the guest reads. */
        if (ev)
            fds[n++] = (struct pollfd){.fd = c->client_fd, .events = ev};
    } else if (unix_listener_pollable(&c->listener, timeout)) {
        fds[n++] = (struct pollfd){.fd = c->listener.fd, .events = POLLIN};
    }
    return n;
}

static void console_dispatch(void *opaque, struct pollfd *fds, unsigned n)
{
    struct vconsole *c = opaque;
    if (n < 1)
        return;
    uint64_t count;
    if ((fds[0].revents & POLLIN) && read(c->wake_fd, &count, sizeof(count)) < 0)
        count = 0;
    if (n > 1 && fds[1].revents) {
        if (fds[1].fd == c->listener.fd) {
            c->client_fd = unix_listener_accept(&c->listener);
        } else if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            read_client(c);
        }
    }
    deliver_input(c);
    process_output(c);
}

static int console_attach(struct virtio_dev *dev, struct iothread *io)
{
    struct vconsole *c = dev->impl;
    c->dev = dev;
    struct iothread_source src = {console_prepare, console_dispatch, c};
    if (c->listener.fd >= 0)
        io->seccomp_extras |= SECCOMP_IO_UNIX;
    return iothread_add_source(io, &src);
}

static void console_destroy(struct virtio_dev *dev)
{
    struct vconsole *c = dev->impl;
    if (!c)
        return;
    if (c->client_fd >= 0)
        close(c->client_fd);
    unix_listener_close(&c->listener);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    pthread_mutex_destroy(&c->lock);
    bytering_free(&c->input);
    free(c);
}

#define CONSOLE_STATE_VERSION 1u

static int console_save(struct virtio_dev *dev, struct snapshot_writer *w)
{
    struct vconsole *c = dev->impl;
    bool held = c->tx.held && c->tx.ticket.generation == dev->generation;
    snapshot_put_u32(w, CONSOLE_STATE_VERSION);
    snapshot_put_u32(w, held ? c->tx_buf : 0);
    snapshot_put_u32(w, held ? c->tx_off : 0);
    pthread_mutex_lock(&c->lock);
    const uint8_t *p[2];
    size_t n[2];
    bytering_runs(&c->input, p, n);
    snapshot_put_u32(w, (uint32_t)(n[0] + n[1]));
    snapshot_put(w, p[0], n[0]);
    snapshot_put(w, p[1], n[1]);
    pthread_mutex_unlock(&c->lock);
    return w->err;
}

/* With the I/O thread held. A hostile progress mark only skips bytes: the
 * chain's own bounds still hold (flush_tx_chain). */
static int console_restore(struct virtio_dev *dev, struct snapshot_reader *r)
{
    struct vconsole *c = dev->impl;
    uint32_t version, buf, off, n;
    if (snapshot_get_u32(r, &version) || snapshot_get_u32(r, &buf) ||
        snapshot_get_u32(r, &off) || snapshot_get_u32(r, &n))
        return KVMC_EFORMAT;
    if (version != CONSOLE_STATE_VERSION || n > CONSOLE_INPUT_BUFFER)
        return kvmc_fail(KVMC_EFORMAT, "virtio-console state: version %u, %u bytes of input "
                         "(at most %u)", version, n, CONSOLE_INPUT_BUFFER);
    pthread_mutex_lock(&c->lock);
    bytering_clear(&c->input);
    uint8_t *p;
    size_t run = bytering_free_run(&c->input, &p); /* all of it, once cleared */
    int err = snapshot_get(r, p, n <= run ? n : run);
    bytering_commit(&c->input, err ? 0 : n);
    pthread_mutex_unlock(&c->lock);
    if (err)
        return KVMC_EFORMAT;
    c->tx.held = false;
    c->tx_resume = true;
    c->resume_buf = buf;
    c->resume_off = off;
    return KVMC_OK;
}

static const struct virtio_device_ops console_ops = {
    .name = "virtio-console",
    .device_id = VIRTIO_ID_CONSOLE,
    .num_queues = 2,
    .queue_max = VIRTQ_MAX_SIZE,
    .process_queue = console_process,
    .attach = console_attach,
    .save = console_save,
    .restore = console_restore,
    .destroy = console_destroy,
};

int virtio_console_open(const struct vconsole_config *cfg,
                        const struct virtio_device_ops **ops, void **impl)
{
    struct vconsole *c = calloc(1, sizeof(*c));
    if (!c)
        return kvmc_fail(KVMC_ENOMEM, "allocating virtio-console");
    c->listener.fd = c->client_fd = -1;
    pthread_mutex_init(&c->lock, NULL);
    c->out_fn = cfg->fn;
    c->out_opaque = cfg->opaque;
    int err = bytering_init(&c->input, CONSOLE_INPUT_BUFFER);
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!err && c->wake_fd < 0)
        err = kvmc_fail_errno(KVMC_EIO, errno, "eventfd for virtio-console");
    if (!err && cfg->path)
        err = unix_listener_open(&c->listener, cfg->path, "virtio-console");
    if (err) {
        struct virtio_dev tmp = {.impl = c};
        console_destroy(&tmp);
        return err;
    }
    *ops = &console_ops;
    *impl = c;
    return KVMC_OK;
}

int virtio_console_write(void *impl, const void *data, size_t len, size_t *written)
{
    struct vconsole *c = impl;
    pthread_mutex_lock(&c->lock);
    size_t n = bytering_push(&c->input, data, len);
    pthread_mutex_unlock(&c->lock);
    uint64_t one = 1;
    if (n && write(c->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter cannot overflow at one per call */
    }
    if (written)
        *written = n;
    return KVMC_OK;
}

static unsigned console_count(const kvmc_config *cfg) { return cfg->vconsole.enabled ? 1 : 0; }

static int console_open_nth(const kvmc_config *cfg, unsigned i,
                            const struct virtio_device_ops **ops, void **impl)
{
    (void)i;
    return virtio_console_open(&cfg->vconsole, ops, impl);
}

const struct virtio_device_type virtio_console_device = {
    .name = "virtio-console", .count = console_count, .open = console_open_nth};
