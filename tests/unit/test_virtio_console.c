/* virtio-console's snapshot state through the real transport with no VM:
 * input not yet delivered to the guest is part of the snapshot (input
 * typed after it is not), and a state claiming more input than the
 * device buffers is refused. */
#include <criterion/criterion.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <string.h>

#include "config.h"
#include "devices/virtio_console.h"
#include "iothread.h"
#include "mmio_driver.h"
#include "snapshot_fixture.h"
#include "virtio/mmio.h"
#include "virtq_fixture.h"

#define RX_DESC 0x1000ull
#define RX_AVAIL 0x2000ull
#define RX_USED 0x3000ull
#define RX_BUF 0x100000ull

static struct guest_memory gm;
static struct iothread io;
static struct virtio_mmio *m;
static void *console;

static void no_output(void *opaque, const uint8_t *data, size_t len)
{
    (void)opaque, (void)data, (void)len;
}

static void setup(void)
{
    gm_init(&gm, FQ_MEM, 0);
    const struct virtio_device_ops *ops;
    struct vconsole_config cfg = {.enabled = true, .fn = no_output};
    cr_assert_eq(virtio_console_open(&cfg, &ops, &console), KVMC_OK);
    cr_assert_eq(virtio_mmio_create_detached(&gm, ops, console, &m), KVMC_OK);
    cr_assert_eq(iothread_init(&io), KVMC_OK);
    cr_assert_eq(ops->attach(&m->dev, &io), KVMC_OK);
    const struct md_queue queues[] = {{0, RX_DESC, RX_AVAIL, RX_USED},
                                      {1, 0x4000, 0x5000, 0x6000}};
    cr_assert(md_bring_up(m, queues, 2) & VIRTIO_CONFIG_S_DRIVER_OK);
}

static void teardown(void)
{
    iothread_destroy(&io);
    virtio_mmio_destroy(m);
    gm_destroy(&gm);
}

TestSuite(vconsole, .init = setup, .fini = teardown, .timeout = 10);

static void type(const char *text)
{
    size_t n;
    cr_assert_eq(virtio_console_write(console, text, strlen(text), &n), KVMC_OK);
    cr_assert_eq(n, strlen(text));
}


Test(vconsole, input_not_delivered_yet_is_saved_and_what_came_after_is_not)
{
    type("typed before the snapshot");
    struct snapshot_writer w;
    struct snapshot_reader r;
    sf_save(m, &w, &r);
    type(", and after it");
    cr_assert_eq(virtio_mmio_restore(m, &r), KVMC_OK, "%s", kvmc_last_error());
    cr_assert(snapshot_section_done(&r));
    snapshot_writer_free(&w);

    uint16_t idx = 0, used;
    fq_desc(&gm, RX_DESC, 0, RX_BUF, 256, VRING_DESC_F_WRITE, 0);
    fq_offer_at(&gm, RX_AVAIL, &idx, 0);
    m->dev.ops->process_queue(&m->dev, 0);
    gm_read(&gm, RX_USED + 2, &used, 2);
    cr_assert_eq(used, 1, "the input never reached the guest");
    struct vring_used_elem e;
    gm_read(&gm, RX_USED + 4, &e, sizeof(e));
    char got[257] = "";
    gm_read(&gm, RX_BUF, got, e.len);
    cr_assert_str_eq(got, "typed before the snapshot");
}

Test(vconsole, more_input_than_the_device_buffers_is_refused)
{
    type("x");
    struct snapshot_writer w;
    struct snapshot_reader r;
    sf_save(m, &w, &r);
    /* The section ends with the input's length (u32) and its byte. */
    uint8_t *len = (uint8_t *)r.sec + r.sec_len - 1 - 4;
    uint32_t one;
    memcpy(&one, len, 4);
    cr_assert_eq(one, 1u);
    const uint32_t huge = 65537;
    memcpy(len, &huge, 4);
    cr_assert_eq(virtio_mmio_restore(m, &r), KVMC_EFORMAT);
    cr_assert(strstr(kvmc_last_error(), "virtio-console state"), "%s", kvmc_last_error());
    snapshot_writer_free(&w);
}
