/* The state file's meaning, checked without KVM (snapshot_parse): a whole
 * image decodes; each way a hostile or broken file can be wrong in its
 * sections (order, counts, sizes, names, leftovers, unknown tags, values
 * out of range) is one KVMC_EFORMAT naming it. The I/O APIC's and the
 * serial port's own sections refuse what they could not have written. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "devices/ioapic.h"
#include "kvmc/kvmc.h"
#include "snapshot/snapshot.h"

struct shape {
    uint32_t meta_version, ncpus, irq, vcpus, nmsrs;
    uint64_t ram;
    bool no_cpuid, no_clock, twice_meta, meta_late, leftover, unknown;
    const char *device;
    uint32_t device_name_len;
    /* A diff's BASE section (when base is set). */
    const char *base;
    const struct snapshot_extent *ext;
    uint32_t next, base_version;
    uint64_t count; /* extents claimed, when not next */
    bool two_bases;
};

static struct shape good(void)
{
    return (struct shape){.meta_version = 1, .ncpus = 2, .vcpus = 2, .ram = 32u << 20,
                          .device = "serial"};
}

static void put_meta(struct snapshot_writer *w, const struct shape *s)
{
    snapshot_begin(w, SNAP_META);
    snapshot_put_u32(w, s->meta_version);
    snapshot_put_u64(w, s->ram);
    snapshot_put_u32(w, s->ncpus);
    snapshot_put_u32(w, s->irq);
}

/* A state file of this shape (the caller frees w). */
static void build(struct snapshot_writer *w, const struct shape *s)
{
    snapshot_writer_init(w);
    if (!s->meta_late)
        put_meta(w, s);
    if (s->twice_meta)
        put_meta(w, s);
    static const uint32_t leaves[] = {1, 7, 0x80000001};
    if (!s->no_cpuid) {
        snapshot_begin(w, SNAP_CPUID);
        for (unsigned i = 0; i < 3; i++) {
            snapshot_put_u32(w, leaves[i]);
            for (unsigned k = 0; k < 5; k++)
                snapshot_put_u32(w, k == 0 ? 0 : 0x1234);
        }
    }
    if (s->meta_late)
        put_meta(w, s);
    if (!s->no_clock) {
        snapshot_begin(w, SNAP_CLOCK);
        snapshot_put_u64(w, 123456789);
        snapshot_put_u32(w, 0);
        if (s->leftover)
            snapshot_put_u32(w, 0);
    }
    struct vcpu_state *v = calloc(1, sizeof(*v));
    v->nmsrs = s->nmsrs;
    for (uint32_t i = 0; i < s->vcpus; i++) {
        snapshot_begin(w, SNAP_VCPU);
        snapshot_put_u32(w, i);
        v->regs.rip = 0x1000 + i;
        snapshot_put(w, v, sizeof(*v));
    }
    free(v);
    snapshot_begin(w, s->irq ? SNAP_KERNEL_IRQCHIP : SNAP_IOAPIC);
    if (s->irq) {
        struct kvm_irqchip chip;
        for (uint32_t i = 0; i < 3; i++) {
            memset(&chip, 0, sizeof(chip));
            chip.chip_id = i;
            snapshot_put(w, &chip, sizeof(chip));
        }
        struct kvm_pit_state2 pit;
        memset(&pit, 0, sizeof(pit));
        snapshot_put(w, &pit, sizeof(pit));
    } else {
        snapshot_put(w, "io", 2); /* the model's own business */
    }
    if (s->device) {
        char name[64] = {0}; /* a long name is this one, NUL-padded */
        strncpy(name, s->device, sizeof(name) - 1);
        uint32_t n = s->device_name_len ? s->device_name_len : (uint32_t)strlen(s->device);
        snapshot_begin(w, SNAP_DEVICE);
        snapshot_put_u32(w, n);
        snapshot_put(w, name, n < sizeof(name) ? n : 0);
        snapshot_put(w, "state", 5);
    }
    for (unsigned k = 0; s->base && k < 1u + s->two_bases; k++) {
        snapshot_begin(w, SNAP_BASE);
        snapshot_put_u32(w, s->base_version ? s->base_version : 1);
        snapshot_put_u32(w, (uint32_t)strlen(s->base));
        snapshot_put(w, s->base, strlen(s->base));
        snapshot_put_u32(w, 0xc0ffee);
        snapshot_put_u64(w, 4321);
        snapshot_put_u64(w, s->count ? s->count : s->next);
        for (uint32_t i = 0; i < s->next; i++) {
            snapshot_put_u64(w, s->ext[i].page);
            snapshot_put_u64(w, s->ext[i].pages);
        }
    }
    if (s->unknown)
        snapshot_begin(w, SNAP_TAG('W', 'H', 'A', 'T'));
    cr_assert_eq(snapshot_finish(w, "1.2.0"), KVMC_OK);
}

static void refused(struct shape s, const char *why)
{
    struct snapshot_writer w;
    build(&w, &s);
    struct snapshot_image img;
    cr_assert_eq(snapshot_parse(w.buf, w.len, &img), KVMC_EFORMAT, "accepted; wanted [%s]",
                 why);
    cr_assert(strstr(kvmc_last_error(), why), "[%s] lacks [%s]", kvmc_last_error(), why);
    cr_assert_null(img.vcpus, "nothing left allocated");
    snapshot_writer_free(&w);
}

Test(snapshot_parse, a_whole_image_decodes)
{
    struct shape s = good();
    struct snapshot_writer w;
    build(&w, &s);
    struct snapshot_image img;
    cr_assert_eq(snapshot_parse(w.buf, w.len, &img), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(img.ram_size, 32u << 20);
    cr_assert_eq(img.ncpus, 2);
    cr_assert(!img.kernel_irqchip);
    cr_assert_eq(img.vcpus[1].regs.rip, 0x1001);
    cr_assert_eq(img.clock.clock, 123456789);
    cr_assert_eq(img.cpuid[1].function, 7);
    cr_assert_eq(img.irq_len, 2);
    cr_assert_eq(img.ndevices, 1);
    cr_assert_str_eq(img.devices[0].name, "serial");
    cr_assert_eq(img.devices[0].len, 5);
    cr_assert_eq(memcmp(img.devices[0].state, "state", 5), 0);
    cr_assert_str_eq(img.written_by, "1.2.0");
    snapshot_image_free(&img);
    snapshot_writer_free(&w);

    s.irq = 1; /* the kernel's irqchip and PIT */
    build(&w, &s);
    cr_assert_eq(snapshot_parse(w.buf, w.len, &img), KVMC_OK, "%s", kvmc_last_error());
    cr_assert(img.kernel_irqchip);
    cr_assert_eq(img.chips[2].chip_id, 2);
    snapshot_image_free(&img);
    snapshot_writer_free(&w);
}

Test(snapshot_parse, every_wrong_section_is_named)
{
    struct shape s;
    s = good(), s.meta_version = 2, refused(s, "unknown VM description version");
    s = good(), s.ram = 1u << 20, refused(s, "RAM size out of range");
    s = good(), s.ram = (32u << 20) + 1, refused(s, "RAM size out of range");
    s = good(), s.ncpus = 0, s.vcpus = 0, refused(s, "vCPU count out of range");
    s = good(), s.ncpus = 1000, refused(s, "vCPU count out of range");
    s = good(), s.irq = 2, refused(s, "unknown interrupt controller");
    s = good(), s.vcpus = 1, refused(s, "1 vCPU states for 2 vCPUs");
    s = good(), s.vcpus = 3, refused(s, "out of order or too many");
    s = good(), s.nmsrs = VCPU_STATE_MAX_MSRS + 1, refused(s, "more MSRs");
    s = good(), s.no_cpuid = true, refused(s, "is missing");
    s = good(), s.no_clock = true, refused(s, "is missing");
    s = good(), s.twice_meta = true, refused(s, "two VM descriptions");
    s = good(), s.meta_late = true, refused(s, "does not come first");
    s = good(), s.leftover = true, refused(s, "left over");
    s = good(), s.unknown = true, refused(s, "unknown section");
    s = good(), s.device = "ser ial", refused(s, "not printable");
    s = good(), s.device_name_len = 40, refused(s, "bad length");
}

Test(snapshot_parse, a_flipped_bit_anywhere_is_an_error_never_a_crash)
{
    struct shape s = good();
    struct snapshot_writer w;
    build(&w, &s);
    for (size_t at = 0; at < w.len; at += 7) {
        if (at >= 16 && at < 32)
            continue; /* the writer's version string: words for people, not checked */
        uint8_t *copy = malloc(w.len);
        memcpy(copy, w.buf, w.len);
        copy[at] ^= 0x10;
        struct snapshot_image img;
        int rc = snapshot_parse(copy, w.len, &img);
        cr_assert_neq(rc, KVMC_OK, "byte %zu flipped and still accepted", at);
        free(copy);
    }
    snapshot_writer_free(&w);
}

/* A diff's base and extents decode; extents that could reach outside RAM
 * or overlap, and paths that are not absolute, are refused. */
Test(snapshot_parse, a_diffs_base_and_extents_are_checked)
{
    const uint64_t pages = (32u << 20) / 4096;
    const struct snapshot_extent fine[] = {{0, 1}, {2, 10}, {pages - 1, 1}};
    struct shape s = good();
    s.base = "/srv/snap/base", s.ext = fine, s.next = 3;
    struct snapshot_writer w;
    build(&w, &s);
    struct snapshot_image img;
    cr_assert_eq(snapshot_parse(w.buf, w.len, &img), KVMC_OK, "%s", kvmc_last_error());
    cr_assert(img.diff);
    cr_assert_str_eq(img.base.path, "/srv/snap/base");
    cr_assert_eq(img.base.crc, 0xc0ffee);
    cr_assert_eq(img.base.len, 4321);
    cr_assert_eq(img.nextents, 3);
    struct snapshot_extent e = diff_extent_at(img.extents, 1);
    cr_assert(e.page == 2 && e.pages == 10);
    snapshot_image_free(&img);
    snapshot_writer_free(&w);
    s = good(), build(&w, &s);
    cr_assert_eq(snapshot_parse(w.buf, w.len, &img), KVMC_OK);
    cr_assert(!img.diff, "a full snapshot is no diff");
    snapshot_image_free(&img);
    snapshot_writer_free(&w);

    const struct snapshot_extent overlap[] = {{0, 3}, {2, 1}};
    const struct snapshot_extent adjacent[] = {{0, 3}, {3, 1}};
    const struct snapshot_extent backwards[] = {{5, 1}, {1, 1}};
    const struct snapshot_extent empty[] = {{5, 0}};
    const struct snapshot_extent beyond[] = {{pages, 1}};
    const struct snapshot_extent past_end[] = {{pages - 1, 2}};
    const struct snapshot_extent wraps[] = {{1, UINT64_MAX}};
    const struct snapshot_extent *bad_ext[] = {overlap, adjacent, backwards, empty, beyond,
                                               past_end, wraps};
    const uint32_t bad_n[] = {2, 2, 2, 1, 1, 1, 1};
    for (unsigned i = 0; i < 7; i++) {
        s = good(), s.base = "/b", s.ext = bad_ext[i], s.next = bad_n[i];
        refused(s, "extents out of order, empty, or beyond RAM");
    }
    s = good(), s.base = "/b", s.ext = fine, s.next = 3, s.count = 4;
    refused(s, "more extents than the section holds");
    s = good(), s.base = "/b", s.ext = fine, s.next = 3, s.count = UINT64_MAX / 2;
    refused(s, "more extents than the section holds");
    s = good(), s.base = "relative/dir", refused(s, "not an absolute path");
    s = good(), s.base = "", refused(s, "path length out of range");
    s = good(), s.base = "/b", s.base_version = 2, refused(s, "unknown version");
    s = good(), s.base = "/b", s.two_bases = true, refused(s, "two bases");
    s = good(), s.base = "/b", s.ext = fine, s.next = 3, s.count = 2, refused(s, "left over");
}

static int no_msi(void *ctx, const struct ioapic_msi *msi)
{
    (void)ctx, (void)msi;
    return 0;
}

static int no_routes(void *ctx, const unsigned *pins, const struct ioapic_msi *msis, unsigned n)
{
    (void)ctx, (void)pins, (void)msis, (void)n;
    return 0;
}

Test(snapshot_parse, the_ioapic_round_trips_and_refuses_reserved_bits)
{
    struct ioapic_host host = {.signal_msi = no_msi, .set_level_routes = no_routes};
    struct ioapic *a = ioapic_new(&host), *b = ioapic_new(&host);
    ioapic_mmio_write(a, 0x00, 4, 0x10 + 2 * 3); /* pin 3, low half */
    ioapic_mmio_write(a, 0x10, 4, 0xa041);        /* vector 0x41, level */
    struct snapshot_writer w;
    snapshot_writer_init(&w);
    snapshot_begin(&w, SNAP_IOAPIC);
    cr_assert_eq(ioapic_save(a, &w), KVMC_OK);
    cr_assert_eq(snapshot_finish(&w, "t"), KVMC_OK);
    struct snapshot_reader r;
    uint32_t tag;
    cr_assert_eq(snapshot_open(&r, w.buf, w.len), KVMC_OK);
    cr_assert_eq(snapshot_next(&r, &tag), 1);
    cr_assert_eq(ioapic_restore(b, &r), KVMC_OK, "%s", kvmc_last_error());
    cr_assert(snapshot_section_done(&r));
    ioapic_mmio_write(b, 0x00, 4, 0x10 + 2 * 3);
    cr_assert_eq(ioapic_mmio_read(b, 0x10, 4), 0xa041, "pin 3's entry came back");

    /* A reserved bit in an entry: refused, b unchanged. */
    uint8_t *bad = malloc(w.len);
    memcpy(bad, w.buf, w.len);
    size_t entry3 = SNAPSHOT_HEADER_SIZE + 8 + 12 + 8 * 3; /* header, section head, 3 u32s */
    bad[entry3 + 3] |= 0x01; /* bit 24: reserved */
    struct snapshot_reader r2;
    snapshot_reader_section(&r2, SNAP_IOAPIC, bad + SNAPSHOT_HEADER_SIZE + 8,
                            w.len - SNAPSHOT_HEADER_SIZE - 8);
    cr_assert_eq(ioapic_restore(b, &r2), KVMC_EFORMAT);
    cr_assert(strstr(kvmc_last_error(), "reserved bits"), "%s", kvmc_last_error());
    /* Cut short: refused. */
    snapshot_reader_section(&r2, SNAP_IOAPIC, w.buf + SNAPSHOT_HEADER_SIZE + 8, 20);
    cr_assert_eq(ioapic_restore(b, &r2), KVMC_EFORMAT);
    free(bad);
    snapshot_writer_free(&w);
    ioapic_free(a);
    ioapic_free(b);
}
