/* libFuzzer: a hostile guest's frames against kvmc's DNS forwarder for
 * user networking (net/dns_forward.c), and a hostile server's answers.
 *
 * Input: [selector] [frame length lo, hi] [frame] [answer]
 *   the frame goes to dns_forward_input as the guest sent it; then, if the
 *   selector is odd, a server on 127.0.0.1 (the forwarder's dns-server)
 *   answers whatever it received with the rest of the input, and the
 *   forwarder's socket is polled once. Every frame handed to the guest
 *   must fit the MTU. */
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/dns_forward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dns_forward fwd;
static int server = -1;

static void deliver(void *opaque, const uint8_t *frame, size_t len)
{
    (void)opaque;
    if (len > 1514 || len < 14 + 20 + 1) /* a last fragment may be short */
        abort();
    volatile uint8_t sink = frame[len - 1];
    (void)sink;
}

static void init(void)
{
    server = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (server < 0 || bind(server, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    socklen_t len = sizeof(sa);
    getsockname(server, (struct sockaddr *)&sa, &len);
    char spec[32];
    snprintf(spec, sizeof(spec), "127.0.0.1:%u", ntohs(sa.sin_port));
    static const uint8_t ns[4] = {10, 0, 2, 3};
    if (dns_forward_init(&fwd, spec, NULL, ns, deliver, NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (server < 0)
        init();
    if (size < 3)
        return 0;
    size_t flen = (size_t)data[1] | (size_t)data[2] << 8;
    if (flen > size - 3)
        flen = size - 3;
    dns_forward_input(&fwd, data + 3, flen);
    if (data[0] & 1) {
        uint8_t q[2048];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(server, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n >= 0)
            sendto(server, data + 3 + flen, size - 3 - flen, 0, (struct sockaddr *)&from, fl);
        struct pollfd fds[DNS_MAX_PENDING];
        int timeout = -1;
        unsigned nfds = dns_forward_prepare(&fwd, fds, DNS_MAX_PENDING, &timeout);
        poll(fds, nfds, 0);
        dns_forward_dispatch(&fwd, fds, nfds);
    }
    return 0;
}
