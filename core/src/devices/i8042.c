/* The i8042 keyboard controller (ports 0x60 and 0x64) with an AT keyboard
 * behind it, as far as a guest needs one on a VM without a keyboard:
 *  - 0xfe (pulse reset line) on the command port ends the VM with
 *    KVMC_EXIT_RESET;
 *  - the host can press Ctrl-Alt-Del (i8042_ctrl_alt_del: Firecracker's
 *    SendCtrlAltDel), which Linux's atkbd turns into a reboot;
 *  - the controller and keyboard commands Linux's i8042 and atkbd drivers
 *    probe with are answered at once, so a probe costs no timeouts. There
 *    is no auxiliary (mouse) port: its tests fail and Linux gives it up.
 * The keyboard sends scan code set 2, untranslated (the command byte's
 * translate bit stays clear), which is what atkbd expects then.
 *
 * Threads: vCPUs (port I/O) and the host (i8042_ctrl_alt_del) share the
 * state under one lock. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "i8042.h"

#include "../bus.h"
#include "../error.h"
#include "../services.h"
#include "../snapshot/format.h"
#include "../x86/layout.h"

#define I8042_DATA_PORT 0x60
#define I8042_IRQ 1
#define OUT_CAPACITY 16 /* bytes waiting for the guest: a power of two */

/* Status register (read from 0x64). */
#define STS_OBF 0x01     /* a byte waits at 0x60 */
#define STS_SYS 0x04     /* self-test passed */
#define STS_CMD 0x08     /* the last write was to the command port */
#define STS_UNLOCKED 0x10 /* keyboard not inhibited */

/* Command byte ("CTR"). */
#define CTR_KBD_INT 0x01
#define CTR_SYS 0x04
#define CTR_KBD_DISABLE 0x10
#define CTR_DEFAULT (CTR_KBD_INT | CTR_SYS)

/* Controller commands (written to 0x64). */
enum {
    CMD_READ_CTR = 0x20,
    CMD_WRITE_CTR = 0x60,
    CMD_AUX_DISABLE = 0xa7,
    CMD_AUX_ENABLE = 0xa8,
    CMD_AUX_TEST = 0xa9,
    CMD_SELF_TEST = 0xaa,
    CMD_KBD_TEST = 0xab,
    CMD_KBD_DISABLE = 0xad,
    CMD_KBD_ENABLE = 0xae,
    CMD_READ_OUTPUT = 0xd0,
    CMD_WRITE_OUTPUT = 0xd1,
    CMD_WRITE_KBD_OUT = 0xd2, /* the next data byte comes back as if typed */
    CMD_WRITE_AUX_OUT = 0xd3,
    CMD_WRITE_AUX = 0xd4,
};

/* Keyboard commands (written to 0x60) and its answers. */
enum {
    KBD_SET_LEDS = 0xed,
    KBD_ECHO = 0xee,
    KBD_SCANCODE_SET = 0xf0,
    KBD_GET_ID = 0xf2,
    KBD_TYPEMATIC = 0xf3,
    KBD_RESET = 0xff,
    KBD_ACK = 0xfa,
    KBD_RESEND = 0xfe,
    KBD_SELF_TEST_OK = 0xaa,
};

/* Scan code set 2 make codes. */
static const uint8_t ctrl_alt_del[] = {0x14, 0x11, 0xe0, 0x71};

struct i8042 {
    const struct vm_services *svc;
    pthread_mutex_t lock;
    uint8_t out[OUT_CAPACITY];
    unsigned out_head, out_count;
    uint8_t ctr;
    uint8_t status_cmd;  /* STS_CMD or 0 */
    uint8_t pending;     /* a controller command waiting for its data byte, or 0 */
    uint8_t kbd_pending; /* a keyboard command waiting for its argument, or 0 */
    uint8_t scancode_set;
};

/* Called with the lock held. Returns whether the byte fitted. */
static bool push(struct i8042 *k, uint8_t byte)
{
    if (k->out_count == OUT_CAPACITY)
        return false;
    k->out[(k->out_head + k->out_count++) % OUT_CAPACITY] = byte;
    return true;
}

/* An edge on IRQ 1 when a byte waits and the guest wants interrupts.
 * Called after the lock is released with what was decided under it. */
static void interrupt_if(struct i8042 *k, bool raise)
{
    if (raise)
        k->svc->pulse_irq(k->svc->ctx, I8042_IRQ);
}

static bool wants_irq(const struct i8042 *k)
{
    return k->out_count && (k->ctr & CTR_KBD_INT);
}

static void power_on_state(struct i8042 *k)
{
    k->out_head = k->out_count = 0;
    k->ctr = CTR_DEFAULT;
    k->status_cmd = 0;
    k->pending = k->kbd_pending = 0;
    k->scancode_set = 2;
}

static uint8_t status(const struct i8042 *k)
{
    return (uint8_t)((k->out_count ? STS_OBF : 0) | STS_SYS | STS_UNLOCKED | k->status_cmd);
}

static uint64_t i8042_read(void *opaque, uint64_t offset, unsigned size)
{
    struct i8042 *k = opaque;
    (void)size;
    pthread_mutex_lock(&k->lock);
    uint8_t v;
    bool raise = false;
    if (offset == PORT_I8042_COMMAND - I8042_DATA_PORT) {
        v = status(k);
    } else if (offset == 0 && k->out_count) {
        v = k->out[k->out_head];
        k->out_head = (k->out_head + 1) % OUT_CAPACITY;
        k->out_count--;
        raise = wants_irq(k); /* the next byte gets an edge of its own */
    } else {
        v = 0; /* 0x60 with nothing waiting, 0x62, 0x63 */
    }
    pthread_mutex_unlock(&k->lock);
    interrupt_if(k, raise);
    return v;
}

/* A byte for the keyboard itself. Called with the lock held. */
static void keyboard_write(struct i8042 *k, uint8_t v)
{
    if (k->kbd_pending) {
        if (k->kbd_pending == KBD_SCANCODE_SET && v == 0) {
            push(k, KBD_ACK);
            push(k, k->scancode_set);
        } else {
            if (k->kbd_pending == KBD_SCANCODE_SET && v >= 1 && v <= 3)
                k->scancode_set = v;
            push(k, KBD_ACK);
        }
        k->kbd_pending = 0;
        return;
    }
    switch (v) {
    case KBD_ECHO:
        push(k, KBD_ECHO);
        break;
    case KBD_GET_ID: /* an MF2 keyboard */
        push(k, KBD_ACK);
        push(k, 0xab);
        push(k, 0x83);
        break;
    case KBD_RESET:
        k->scancode_set = 2;
        push(k, KBD_ACK);
        push(k, KBD_SELF_TEST_OK);
        break;
    case KBD_SET_LEDS:
    case KBD_SCANCODE_SET:
    case KBD_TYPEMATIC:
        k->kbd_pending = v;
        push(k, KBD_ACK);
        break;
    default:
        /* 0xf4 enable, 0xf5 disable, 0xf6 defaults and the rest: acknowledged.
         * Anything below 0xed is not a command at all. */
        push(k, v >= KBD_SET_LEDS ? KBD_ACK : KBD_RESEND);
        break;
    }
}

/* A byte on the data port: the argument of a pending controller command,
 * or a byte for the keyboard. Called with the lock held. */
static void data_write(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->pending;
    k->pending = 0;
    switch (cmd) {
    case CMD_WRITE_CTR:
        k->ctr = v;
        break;
    case CMD_WRITE_OUTPUT:
        break; /* A20 and the reset line: bit 0 clear would reset, nobody does */
    case CMD_WRITE_KBD_OUT:
        push(k, v);
        break;
    case CMD_WRITE_AUX_OUT:
    case CMD_WRITE_AUX:
        break; /* no auxiliary device: nothing answers */
    default:
        keyboard_write(k, v);
        break;
    }
}

static void command_write(struct i8042 *k, uint8_t v)
{
    k->pending = 0;
    switch (v) {
    case CMD_READ_CTR:
        push(k, k->ctr);
        break;
    case CMD_WRITE_CTR:
    case CMD_WRITE_OUTPUT:
    case CMD_WRITE_KBD_OUT:
    case CMD_WRITE_AUX_OUT:
    case CMD_WRITE_AUX:
        k->pending = v;
        break;
    case CMD_READ_OUTPUT: /* A20 on, not in reset, output buffer state */
        push(k, (uint8_t)(0x03 | (k->out_count ? 0x10 : 0)));
        break;
    case CMD_SELF_TEST:
        push(k, 0x55);
        break;
    case CMD_KBD_TEST:
        push(k, 0x00);
        break;
    case CMD_AUX_TEST:
        push(k, 0x01); /* "clock line stuck low": there is no mouse */
        break;
    case CMD_KBD_DISABLE:
        k->ctr |= CTR_KBD_DISABLE;
        break;
    case CMD_KBD_ENABLE:
        k->ctr &= (uint8_t)~CTR_KBD_DISABLE;
        break;
    default: /* 0xa7/0xa8 and the rest: nothing to do */
        break;
    }
}

static void i8042_write(void *opaque, uint64_t offset, unsigned size, uint64_t value)
{
    struct i8042 *k = opaque;
    (void)size;
    uint8_t v = (uint8_t)value;
    if (offset == PORT_I8042_COMMAND - I8042_DATA_PORT && v == I8042_CMD_RESET) {
        services_exit(k->svc, KVMC_EXIT_RESET, 0,
                      "guest reset the machine through the i8042 controller");
        return;
    }
    pthread_mutex_lock(&k->lock);
    bool had = k->out_count != 0;
    if (offset == PORT_I8042_COMMAND - I8042_DATA_PORT) {
        k->status_cmd = STS_CMD;
        command_write(k, v);
    } else if (offset == 0) {
        k->status_cmd = 0;
        data_write(k, v);
    }
    bool raise = !had && wants_irq(k);
    pthread_mutex_unlock(&k->lock);
    interrupt_if(k, raise);
}

int i8042_ctrl_alt_del(void *state)
{
    struct i8042 *k = state;
    pthread_mutex_lock(&k->lock);
    bool had = k->out_count != 0, fits = OUT_CAPACITY - k->out_count >= sizeof(ctrl_alt_del);
    if (fits)
        for (unsigned i = 0; i < sizeof(ctrl_alt_del); i++)
            push(k, ctrl_alt_del[i]);
    bool raise = fits && !had && wants_irq(k);
    pthread_mutex_unlock(&k->lock);
    interrupt_if(k, raise);
    if (!fits)
        return kvmc_fail(KVMC_EBUSY, "the i8042's buffer is full: the guest has not read "
                                     "the keys pressed before");
    return KVMC_OK;
}

static void i8042_reset(void *state)
{
    struct i8042 *k = state;
    pthread_mutex_lock(&k->lock);
    power_on_state(k);
    pthread_mutex_unlock(&k->lock);
}

/* Saved: the registers, then the bytes waiting, oldest first. */
#define I8042_STATE_VERSION 1u

static int i8042_save(void *state, struct snapshot_writer *w)
{
    struct i8042 *k = state;
    pthread_mutex_lock(&k->lock);
    const uint8_t regs[] = {k->ctr, k->status_cmd, k->pending, k->kbd_pending,
                            k->scancode_set};
    snapshot_put_u32(w, I8042_STATE_VERSION);
    snapshot_put(w, regs, sizeof(regs));
    snapshot_put_u32(w, k->out_count);
    for (unsigned i = 0; i < k->out_count; i++)
        snapshot_put(w, &k->out[(k->out_head + i) % OUT_CAPACITY], 1);
    pthread_mutex_unlock(&k->lock);
    return w->err;
}

static int i8042_restore(void *state, struct snapshot_reader *r)
{
    struct i8042 *k = state;
    uint32_t version, count;
    uint8_t regs[5], out[OUT_CAPACITY];
    if (snapshot_get_u32(r, &version) || snapshot_get(r, regs, sizeof(regs)) ||
        snapshot_get_u32(r, &count))
        return KVMC_EFORMAT;
    if (version != I8042_STATE_VERSION || count > OUT_CAPACITY ||
        (regs[1] != 0 && regs[1] != STS_CMD) || regs[4] < 1 || regs[4] > 3)
        return kvmc_fail(KVMC_EFORMAT, "i8042 state: version %u, %u bytes waiting: not a "
                         "state this kvmc writes", version, count);
    if (snapshot_get(r, out, count))
        return KVMC_EFORMAT;
    pthread_mutex_lock(&k->lock);
    k->ctr = regs[0], k->status_cmd = regs[1], k->pending = regs[2];
    k->kbd_pending = regs[3], k->scancode_set = regs[4];
    memcpy(k->out, out, count);
    k->out_head = 0;
    k->out_count = count;
    pthread_mutex_unlock(&k->lock);
    return KVMC_OK;
}

static void i8042_destroy(void *state)
{
    struct i8042 *k = state;
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static int i8042_create(const struct vm_services *svc, const kvmc_config *cfg, void **state)
{
    static const struct bus_ops ops = {.read = i8042_read, .write = i8042_write};
    (void)cfg;
    struct i8042 *k = calloc(1, sizeof(*k));
    if (!k)
        return kvmc_fail(KVMC_ENOMEM, "allocating the i8042");
    k->svc = svc;
    pthread_mutex_init(&k->lock, NULL);
    power_on_state(k);
    *state = k;
    /* 0x60..0x64; 0x61 belongs to the in-kernel PIT (speaker port), and KVM
     * handles it before it ever reaches user space. */
    return bus_add(svc->pio, I8042_DATA_PORT, 5, &ops, k, "i8042");
}

const struct platform_device_type i8042_device = {
    .name = "i8042", .create = i8042_create, .reset = i8042_reset, .save = i8042_save,
    .restore = i8042_restore, .destroy = i8042_destroy};
