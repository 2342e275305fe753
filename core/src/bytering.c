#include "bytering.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int bytering_init(struct bytering *r, size_t cap)
{
    *r = (struct bytering){.cap = cap};
    r->buf = malloc(cap);
    return r->buf ? KVMC_OK : kvmc_fail(KVMC_ENOMEM, "allocating a %zu-byte buffer", cap);
}

void bytering_free(struct bytering *r)
{
    free(r->buf);
    *r = (struct bytering){0};
}

size_t bytering_free_run(const struct bytering *r, uint8_t **p)
{
    if (r->len == r->cap) {
        *p = NULL;
        return 0;
    }
    size_t tail = (r->head + r->len) % r->cap;
    *p = r->buf + tail;
    return tail >= r->head ? r->cap - tail : r->head - tail;
}

void bytering_commit(struct bytering *r, size_t n) { r->len += n; }

size_t bytering_push(struct bytering *r, const void *data, size_t n)
{
    size_t done = 0;
    while (done < n) {
        uint8_t *p;
        size_t run = bytering_free_run(r, &p);
        if (!run)
            break;
        if (run > n - done)
            run = n - done;
        memcpy(p, (const uint8_t *)data + done, run);
        bytering_commit(r, run);
        done += run;
    }
    return done;
}

size_t bytering_peek(const struct bytering *r, const uint8_t **p)
{
    *p = r->buf + r->head;
    size_t run = r->cap - r->head;
    return r->len < run ? r->len : run;
}

void bytering_drop(struct bytering *r, size_t n)
{
    if (n > r->len)
        n = r->len;
    r->head = (r->head + n) % r->cap;
    r->len -= n;
    if (!r->len)
        r->head = 0; /* keep runs long */
}

size_t bytering_pop(struct bytering *r, void *out, size_t n)
{
    size_t done = 0;
    while (done < n && r->len) {
        const uint8_t *p;
        size_t run = bytering_peek(r, &p);
        if (run > n - done)
            run = n - done;
        memcpy((uint8_t *)out + done, p, run);
        bytering_drop(r, run);
        done += run;
    }
    return done;
}

void bytering_runs(const struct bytering *r, const uint8_t *p[2], size_t n[2])
{
    n[0] = bytering_peek(r, &p[0]);
    p[1] = r->buf;
    n[1] = r->len - n[0];
}
