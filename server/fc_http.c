/* kvmc-firecracker's HTTP server (fc_http.h). */
#include "fc_http.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define IDLE_TIMEOUT_S 30
#define CONNECTION_MEMORY (64 * 1024) /* headers and buffers of one connection */

struct fc_http {
    struct MHD_Daemon *daemon;
    struct fc_api *api;
};

/* One request's body as it arrives. */
struct upload {
    char *data;
    size_t len;       /* kept */
    size_t total;     /* received */
};

static enum MHD_Result send_body(struct MHD_Connection *c, int status, char *body)
{
    struct MHD_Response *r =
        body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (body)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_SERVER, "Firecracker API (kvmc)");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *data, size_t *data_size, void **state)
{
    struct fc_http *h = cls;
    struct upload *u = *state;
    (void)version;
    if (!u) {
        static __thread bool named;
        if (!named) /* Firecracker's API thread's name */
            named = pthread_setname_np(pthread_self(), "fc_api") == 0;
        u = calloc(1, sizeof(*u));
        if (!u)
            return MHD_NO;
        *state = u;
        return MHD_YES;
    }
    if (*data_size) {
        size_t n = *data_size;
        u->total += n;
        if (u->total <= FC_MAX_PAYLOAD) {
            char *grown = realloc(u->data, u->len + n + 1);
            if (!grown)
                return MHD_NO;
            u->data = grown;
            memcpy(u->data + u->len, data, n);
            u->len += n;
            u->data[u->len] = 0;
        }
        *data_size = 0; /* taken (beyond the limit: dropped, only counted) */
        return MHD_YES;
    }
    char *resp = NULL;
    int status;
    if (u->total > FC_MAX_PAYLOAD) {
        char msg[160];
        snprintf(msg, sizeof(msg), "{\"fault_message\":\"Request payload with size %zu is "
                 "larger than the limit of %d allowed by server.\"}", u->total, FC_MAX_PAYLOAD);
        resp = strdup(msg);
        status = 400;
    } else {
        status = fc_api_handle(h->api, method, url, u->data, u->len, &resp);
    }
    return send_body(c, status, resp);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why)
{
    struct upload *u = *state;
    (void)cls, (void)c, (void)why;
    if (u) {
        free(u->data);
        free(u);
    }
    *state = NULL;
}

struct fc_http *fc_http_start(int listen_fd, struct fc_api *api, char *err, size_t errlen)
{
    struct fc_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        close(listen_fd);
        return NULL;
    }
    h->api = api;
    h->daemon = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD, 0, NULL, NULL, on_request, h,
        MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CLIENTS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
        MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "libmicrohttpd could not start serving the API socket");
        close(listen_fd);
        free(h);
        return NULL;
    }
    return h;
}

void fc_http_stop(struct fc_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
