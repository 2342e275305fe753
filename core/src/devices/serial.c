/* 16550A UART: the guest console on COM1. Output goes to the VM's console
 * sink as each byte is written; input comes from an fd read by a thread of
 * its own into a receive buffer, with back-pressure so nothing is lost. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../kick.h"
#include "serial.h"

#include "../bus.h"
#include "../config.h"
#include "../console.h"
#include "../error.h"
#include "../seccomp.h"
#include "../services.h"
#include "../snapshot/format.h"

#define COM1_PORT 0x3f8
#define COM1_IRQ 4

enum {
    REG_DATA = 0, /* RBR / THR, or DLL with DLAB */
    REG_IER = 1,  /* or DLM with DLAB */
    REG_IIR = 2,  /* FCR on write */
    REG_LCR = 3,
    REG_MCR = 4,
    REG_LSR = 5,
    REG_MSR = 6,
    REG_SCR = 7,
    SERIAL_NREGS = 8,
};

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_MASK 0x0f
#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ENABLED 0xc0
#define FCR_FIFO_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_DEFAULT 0xb0 /* DCD | DSR | CTS: a cable is attached */
#define RX_CAPACITY 1024

struct serial {
    const struct vm_services *svc;
    unsigned irq;
    pthread_mutex_t lock;
    pthread_cond_t rx_space;
    uint8_t ier, lcr, mcr, scr, fcr, dll, dlm;
    bool thre_pending; /* THR-empty interrupt waiting to be seen in IIR */
    int irq_level;
    uint8_t rx[RX_CAPACITY];
    unsigned rx_head, rx_count;

    int in_fd;
    int stop_fd;
    bool stopping;
    pthread_t input_thread;
    bool input_started;
    bool seccomp;
};

static uint8_t compute_iir(const struct serial *s)
{
    uint8_t fifo = (s->fcr & FCR_FIFO_ENABLE) ? IIR_FIFO_ENABLED : 0;
    if ((s->ier & IER_RDI) && s->rx_count)
        return fifo | IIR_RDI;
    if ((s->ier & IER_THRI) && s->thre_pending)
        return fifo | IIR_THRI;
    return fifo | IIR_NO_INT;
}

/* Called with the lock held after any state change: the line follows IIR. */
static void update_irq(struct serial *s)
{
    int level = !(compute_iir(s) & IIR_NO_INT);
    if (level != s->irq_level) {
        s->irq_level = level;
        s->svc->set_irq(s->svc->ctx, s->irq, level);
    }
}

static void rx_push(struct serial *s, uint8_t byte)
{
    if (s->rx_count == RX_CAPACITY)
        return; /* only loopback can get here; real input waits for room */
    s->rx[(s->rx_head + s->rx_count) % RX_CAPACITY] = byte;
    s->rx_count++;
}

static uint8_t rx_pop(struct serial *s)
{
    if (!s->rx_count)
        return 0;
    uint8_t b = s->rx[s->rx_head];
    s->rx_head = (s->rx_head + 1) % RX_CAPACITY;
    s->rx_count--;
    pthread_cond_signal(&s->rx_space);
    return b;
}

static uint8_t loopback_msr(uint8_t mcr)
{
    /* In loopback, RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
    return (uint8_t)(((mcr & 0x02) << 3) | ((mcr & 0x01) << 5) |
                     ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4));
}

static uint64_t serial_read(void *opaque, uint64_t offset, unsigned size)
{
    struct serial *s = opaque;
    uint8_t v = 0xff;
    (void)size;
    pthread_mutex_lock(&s->lock);
    switch (offset) {
    case REG_DATA:
        v = (s->lcr & LCR_DLAB) ? s->dll : rx_pop(s);
        break;
    case REG_IER:
        v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
        break;
    case REG_IIR:
        v = compute_iir(s);
        if ((v & 0x0f) == IIR_THRI)
            s->thre_pending = false; /* reading IIR acknowledges THRE */
        break;
    case REG_LCR: v = s->lcr; break;
    case REG_MCR: v = s->mcr; break;
    case REG_LSR:
        v = LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
        break;
    case REG_MSR:
        v = (s->mcr & MCR_LOOP) ? loopback_msr(s->mcr) : MSR_DEFAULT;
        break;
    case REG_SCR: v = s->scr; break;
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return v;
}

static void serial_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct serial *s = opaque;
    uint8_t v = (uint8_t)value, out = 0;
    bool transmit = false;
    (void)size;
    pthread_mutex_lock(&s->lock);
    switch (offset) {
    case REG_DATA:
        if (s->lcr & LCR_DLAB) {
            s->dll = v;
        } else if (s->mcr & MCR_LOOP) {
            rx_push(s, v);
            s->thre_pending = true;
        } else {
            out = v;
            transmit = true;
            s->thre_pending = true; /* sent at once: THR is empty again */
        }
        break;
    case REG_IER:
        if (s->lcr & LCR_DLAB) {
            s->dlm = v;
        } else {
            /* Enabling THRI with THR empty raises it (16550 behaviour). */
            if ((v & IER_THRI) && !(s->ier & IER_THRI))
                s->thre_pending = true;
            s->ier = v & IER_MASK;
        }
        break;
    case REG_IIR:
        s->fcr = v;
        if (v & FCR_CLEAR_RX) {
            s->rx_count = 0;
            pthread_cond_signal(&s->rx_space);
        }
        break;
    case REG_LCR: s->lcr = v; break;
    case REG_MCR: s->mcr = v & 0x1f; break;
    case REG_SCR: s->scr = v; break;
    default: break; /* LSR and MSR are read-only */
    }
    update_irq(s); /* every write re-evaluates: no lost interrupts */
    pthread_mutex_unlock(&s->lock);
    if (transmit)
        console_out_write(s->svc->console, &out, 1);
}

static void *input_main(void *arg)
{
    struct serial *s = arg;
    if (s->seccomp && seccomp_confine(SECCOMP_ROLE_CONSOLE) != KVMC_OK) {
        fprintf(stderr, "kvmc: console input thread: %s; no console input\n",
                kvmc_last_error());
        return NULL; /* output is unaffected */
    }
    for (;;) {
        pthread_mutex_lock(&s->lock);
        while (!s->stopping && s->rx_count == RX_CAPACITY)
            pthread_cond_wait(&s->rx_space, &s->lock);
        bool stop = s->stopping;
        unsigned room = RX_CAPACITY - s->rx_count;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;

        struct pollfd fds[2] = {{.fd = s->in_fd, .events = POLLIN},
                                {.fd = s->stop_fd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            break;
        uint8_t buf[RX_CAPACITY];
        ssize_t n = read(s->in_fd, buf, room);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break; /* EOF or error: no more input, the guest keeps running */
        pthread_mutex_lock(&s->lock);
        for (ssize_t i = 0; i < n; i++)
            rx_push(s, buf[i]);
        update_irq(s);
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

int serial_create(const struct vm_services *svc, uint16_t base, unsigned irq, int in_fd,
                  struct serial **out)
{
    struct serial *s = calloc(1, sizeof(*s));
    if (!s)
        return kvmc_fail(KVMC_ENOMEM, "allocating the serial port");
    s->svc = svc;
    s->irq = irq;
    s->in_fd = in_fd;
    s->stop_fd = -1;
    s->thre_pending = false;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->rx_space, NULL);
    static const struct bus_ops ops = {.read = serial_read, .write = serial_write};
    int err = bus_add(svc->pio, base, SERIAL_NREGS, &ops, s, "serial");
    if (err) {
        serial_destroy(s);
        return err;
    }
    *out = s;
    return KVMC_OK;
}

int serial_start_input(struct serial *s, bool seccomp)
{
    s->seccomp = seccomp;
    if (s->in_fd < 0)
        return KVMC_OK;
    s->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (s->stop_fd < 0)
        return kvmc_fail_errno(KVMC_EIO, errno, "eventfd for serial input");
    int err = kick_thread_create(&s->input_thread, NULL, input_main, s);
    if (err)
        return kvmc_fail_errno(KVMC_EIO, err, "starting the serial input thread");
    s->input_started = true;
    return KVMC_OK;
}

void serial_destroy(struct serial *s)
{
    if (!s)
        return;
    if (s->input_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->rx_space);
        pthread_mutex_unlock(&s->lock);
        uint64_t one = 1;
        if (write(s->stop_fd, &one, sizeof(one)) < 0) {
            /* cannot fail for an eventfd below its maximum */
        }
        pthread_join(s->input_thread, NULL);
    }
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    pthread_cond_destroy(&s->rx_space);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* COM1, its input from the configured fd. */
static int com1_create(const struct vm_services *svc, const kvmc_config *cfg, void **state)
{
    return serial_create(svc, COM1_PORT, COM1_IRQ, cfg->console_in_fd,
                         (struct serial **)state);
}

static int com1_start(void *state, bool seccomp) { return serial_start_input(state, seccomp); }
static void com1_destroy(void *state) { serial_destroy(state); }

/* Saved: the registers, the pending THR-empty interrupt, the line's level,
 * and the bytes received but not read yet, oldest first. */
#define SERIAL_STATE_VERSION 1u

static int com1_save(void *state, struct snapshot_writer *w)
{
    struct serial *s = state;
    pthread_mutex_lock(&s->lock);
    const uint8_t regs[] = {s->ier, s->lcr, s->mcr, s->scr, s->fcr, s->dll, s->dlm,
                            s->thre_pending, (uint8_t)s->irq_level};
    snapshot_put_u32(w, SERIAL_STATE_VERSION);
    snapshot_put(w, regs, sizeof(regs));
    snapshot_put_u32(w, s->rx_count);
    for (unsigned i = 0; i < s->rx_count; i++)
        snapshot_put(w, &s->rx[(s->rx_head + i) % RX_CAPACITY], 1);
    pthread_mutex_unlock(&s->lock);
    return w->err;
}

static int com1_restore(void *state, struct snapshot_reader *r)
{
    struct serial *s = state;
    uint32_t version, count;
    uint8_t regs[9], rx[RX_CAPACITY];
    if (snapshot_get_u32(r, &version) || snapshot_get(r, regs, sizeof(regs)) ||
        snapshot_get_u32(r, &count))
        return KVMC_EFORMAT;
    if (version != SERIAL_STATE_VERSION || count > RX_CAPACITY || (regs[0] & ~IER_MASK) ||
        regs[7] > 1 || regs[8] > 1)
        return kvmc_fail(KVMC_EFORMAT, "serial port state: version %u, %u bytes received, "
                         "IER 0x%x: not a state this kvmc writes", version, count, regs[0]);
    if (snapshot_get(r, rx, count))
        return KVMC_EFORMAT;
    pthread_mutex_lock(&s->lock);
    s->ier = regs[0], s->lcr = regs[1], s->mcr = regs[2], s->scr = regs[3];
    s->fcr = regs[4], s->dll = regs[5], s->dlm = regs[6];
    s->thre_pending = regs[7];
    s->irq_level = regs[8]; /* the line's level is the interrupt controller's state */
    memcpy(s->rx, rx, count);
    s->rx_head = 0;
    s->rx_count = count;
    pthread_cond_broadcast(&s->rx_space);
    pthread_mutex_unlock(&s->lock);
    return KVMC_OK;
}

const struct platform_device_type serial_device = {
    .name = "serial", .create = com1_create, .start = com1_start, .save = com1_save,
    .restore = com1_restore, .destroy = com1_destroy};
