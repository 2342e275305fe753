/* HTTP/1.1 on kvmc-firecracker's API socket, through libmicrohttpd: one
 * thread of ours ("fc_api") serves the requests one at a time, as
 * Firecracker's does, confined by its own seccomp list (fc_seccomp.h)
 * before it reads a byte of any request. Bodies beyond FC_MAX_PAYLOAD are refused without being kept;
 * headers are bounded by the connection's memory limit, idle clients are
 * dropped after a timeout, and the number of clients is limited. */
#ifndef KVMC_FC_HTTP_H
#define KVMC_FC_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "fc_api.h"

struct fc_http;

/* Serves api on listen_fd (a listening Unix socket, which it then owns),
 * on a thread confined with seccomp when `confine` is set; returns once it
 * is. NULL with err on failure. */
struct fc_http *fc_http_start(int listen_fd, struct fc_api *api, bool confine, char *err,
                              size_t errlen);
void fc_http_stop(struct fc_http *h);

#endif
