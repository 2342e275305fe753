/* libFuzzer: kvmc-firecracker's API (server/fc_api.c) with hostile
 * requests, in sequences, so that every state is reached: method, path and
 * body all come from the input. The backend is a fake that never writes a
 * host file (snapshots are refused; the log and metrics go to /dev/null),
 * so the fuzzer can run anywhere.
 *
 * Input: requests, one after another:
 *   [method: byte % 4 = GET, PUT, PATCH, DELETE] [path bytes] '\n'
 *   [body length: 2 bytes LE] [body]
 * A path longer than 256 bytes or a body past the input's end ends it. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fc_api.h"

static int ok(void *ctx, char *err, size_t errlen)
{
    (void)ctx, (void)err, (void)errlen;
    return 0;
}

static int start(void *ctx, const struct fc_machine *m, char *err, size_t errlen)
{
    (void)ctx, (void)err, (void)errlen;
    /* What a backend reads of the machine, all of it. */
    size_t sum = strlen(m->kernel) + (m->boot_args ? strlen(m->boot_args) : 0);
    for (unsigned i = 0; i < m->ndrives; i++)
        sum += strlen(m->drives[i].path) + strlen(m->drives[i].id);
    for (unsigned i = 0; i < m->nnets; i++)
        sum += strlen(m->nets[i].host_dev) + (m->nets[i].mac ? strlen(m->nets[i].mac) : 0);
    return sum == 0 ? -1 : 0;
}

static int no_snapshot(void *ctx, const char *dir, bool diff, const char *config,
                       const char *mem, char *err, size_t errlen)
{
    (void)ctx, (void)dir, (void)diff, (void)config, (void)mem;
    snprintf(err, errlen, "no snapshots while fuzzing");
    return -1;
}

/* A snapshot's configuration from the input would be a file: a fixed one. */
static char *read_config(void *ctx, const char *dir, const char *mem, char *err,
                         size_t errlen)
{
    (void)ctx, (void)dir, (void)mem, (void)err, (void)errlen;
    return strdup("{\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 64}, "
                  "\"drives\": [], \"network-interfaces\": [{\"iface_id\": \"eth0\", "
                  "\"host_dev_name\": \"tap0\"}], \"vsock\": {\"guest_cid\": 3, "
                  "\"uds_path\": \"/tmp/v.sock\"}}");
}

static int load(void *ctx, const struct fc_machine *m, const char *dir, bool resume, char *err,
                size_t errlen)
{
    (void)ctx, (void)m, (void)dir, (void)resume, (void)err, (void)errlen;
    return 0;
}

static size_t metrics(void *ctx, char *out, size_t cap)
{
    (void)ctx;
    return (size_t)snprintf(out, cap, "\"vcpu\":{\"exits\":1},");
}

static int dev_null(void *ctx, const char *path, char *err, size_t errlen)
{
    (void)ctx, (void)path, (void)err, (void)errlen;
    return open("/dev/null", O_WRONLY | O_CLOEXEC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "PUT", "PATCH", "DELETE"};
    struct fc_backend be = {.start = start, .pause = ok, .resume = ok, .ctrl_alt_del = ok,
                            .snapshot = no_snapshot, .read_snapshot_config = read_config,
                            .load = load, .metrics = metrics,
                            .open_output = dev_null};
    struct fc_api *api = fc_api_new("fuzz", &be);
    if (size & 1) /* half the inputs as --jail would have it: '..' refused */
        fc_api_set_jailed(api);
    size_t at = 0;
    for (int n = 0; n < 64 && at < size; n++) {
        const char *method = methods[data[at++] % 4];
        char path[258];
        size_t len = 0;
        while (at < size && data[at] != '\n' && len < 256)
            path[len++] = (char)data[at++];
        if (at >= size || data[at] != '\n')
            break;
        at++;
        path[len] = 0;
        if (at + 2 > size)
            break;
        size_t body_len = data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        if (at + body_len > size)
            break;
        char *body = malloc(body_len + 1); /* its own allocation: overreads are caught */
        memcpy(body, data + at, body_len);
        at += body_len;
        char *resp = NULL;
        int status = fc_api_handle(api, method, path, body_len ? body : NULL, body_len, &resp);
        if (status < 200 || status > 599 || (status != 204 && !resp))
            abort(); /* every answer has a status, and a body unless 204 */
        free(resp);
        free(body);
        if (n % 8 == 7)
            fc_api_flush_metrics(api);
    }
    fc_api_free(api);
    return 0;
}
