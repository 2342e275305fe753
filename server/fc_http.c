/* kvmc-firecracker's HTTP server (fc_http.h). */
#include "fc_http.h"

#include "fc_seccomp.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define IDLE_TIMEOUT_S 30
#define CONNECTION_MEMORY (64 * 1024) /* headers and buffers of one connection */

struct fc_http {
    struct MHD_Daemon *daemon;
    struct fc_api *api;
    pthread_t thread;
    bool confine;
    /* The thread's start: -1 until it has confined itself, then 0 or 1 (failed). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
    char err[256];
    atomic_bool stop;
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

static void started(struct fc_http *h, int result)
{
    pthread_mutex_lock(&h->lock);
    h->started = result;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* The API thread: confines itself, then serves until told to stop. */
static void *serve(void *arg)
{
    struct fc_http *h = arg;
    pthread_setname_np(pthread_self(), "fc_api"); /* Firecracker's API thread's name */
    if (h->confine && fc_seccomp_confine_api_thread(h->err, sizeof(h->err))) {
        started(h, 1);
        return NULL;
    }
    started(h, 0);
    while (!atomic_load(&h->stop))
        if (MHD_run_wait(h->daemon, 500) != MHD_YES)
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL); /* no hot loop */
    return NULL;
}

struct fc_http *fc_http_start(int listen_fd, struct fc_api *api, bool confine, char *err,
                              size_t errlen)
{
    struct fc_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        close(listen_fd);
        return NULL;
    }
    h->api = api;
    h->confine = confine;
    h->started = -1;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    /* No thread of libmicrohttpd's: ours runs it (MHD_run_wait), confined. */
    h->daemon = MHD_start_daemon(
        MHD_USE_EPOLL, 0, NULL, NULL, on_request, h,
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
    if (pthread_create(&h->thread, NULL, serve, h) != 0) {
        snprintf(err, errlen, "cannot start the API thread");
        MHD_stop_daemon(h->daemon);
        free(h);
        return NULL;
    }
    pthread_mutex_lock(&h->lock);
    while (h->started < 0)
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
    if (h->started) {
        snprintf(err, errlen, "%s", h->err);
        pthread_join(h->thread, NULL);
        MHD_stop_daemon(h->daemon);
        free(h);
        return NULL;
    }
    return h;
}

void fc_http_stop(struct fc_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stop, true);
    pthread_join(h->thread, NULL);
    MHD_stop_daemon(h->daemon);
    free(h);
}
