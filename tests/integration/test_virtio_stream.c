/* virtio-console, virtio-vsock and virtio-net, each driven by the test
 * guest's own CPL3 driver on the host's /dev/kvm, against a peer this test
 * runs on the host: a console client, Unix-socket vsock peers, a UDP echo
 * server reached through libslirp or a tap interface. Seccomp is on, as in
 * the CLI, so the I/O thread's allow-list is exercised for real. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "guest_run.h"

/* Each test process runs one test: the PCI variants set this first. */
static kvmc_virtio_transport transport = KVMC_VIRTIO_MMIO;

static kvmc_vm *start_guest(const char *cmdline, struct console_capture *cap,
                            void (*configure)(kvmc_config *cfg, void *arg), void *arg)
{
    struct guest_spec spec = {.cmdline = cmdline};
    kvmc_config *cfg = guest_config(&spec, cap);
    cr_assert_eq(kvmc_config_set_virtio_transport(cfg, transport), KVMC_OK);
    configure(cfg, arg);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK, "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    cr_assert_eq(kvmc_vm_set_seccomp(vm, 1), KVMC_OK, "%s", kvmc_last_error());
    cr_assert_eq(kvmc_vm_start(vm), KVMC_OK, "%s", kvmc_last_error());
    return vm;
}

/* The counters of the VM finish_guest ended last. */
static kvmc_stats finished_stats;

static void finish_guest(kvmc_vm *vm, struct console_capture *cap, const char *prefix,
                         const char *want)
{
    kvmc_exit_info exit;
    cr_assert_eq(kvmc_vm_wait(vm, 30000, &exit), KVMC_OK, "guest hung: %s", cap->data);
    finished_stats = (kvmc_stats)KVMC_STATS_INIT;
    cr_assert_eq(kvmc_vm_get_stats(vm, &finished_stats), KVMC_OK);
    kvmc_vm_destroy(vm);
    cr_assert_eq(exit.reason, KVMC_EXIT_POWEROFF, "%s", cap->data);
    struct guest_result r = {.console = *cap};
    char line[512];
    const char *got = console_line(&r, prefix, line, sizeof(line));
    cr_assert(got, "no '%s' line in:\n%s", prefix, cap->data);
    cr_assert_str_eq(got, want, "console:\n%s", cap->data);
    free(cap->data);
}

static void temp_path(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "/tmp/kvmc-it-%s-%d", what, getpid());
    unlink(buf);
}

static int unix_listener(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 4) == 0,
              "listening on %s: %s", path, strerror(errno));
    return fd;
}

static int unix_client(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    cr_assert(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
              "connecting to %s: %s", path, strerror(errno));
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads up to and including '\n' (or len-1 bytes). */
static void read_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    while (n + 1 < len && recv(fd, buf + n, 1, 0) == 1 && buf[n++] != '\n') {
    }
    buf[n] = 0;
}

/* ------------------------------------------------------ virtio-console */

static void use_console_socket(kvmc_config *cfg, void *path)
{
    cr_assert_eq(kvmc_config_set_virtio_console_socket(cfg, path), KVMC_OK);
}

Test(virtio_console, socket_client_owns_the_console)
{
    char path[108];
    temp_path(path, sizeof(path), "hvc");
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest("kvmc.test=vconsole", &cap, use_console_socket, path);
    int fd = unix_client(path); /* output waits for us: nothing is lost */
    char line[128];
    read_line(fd, line, sizeof(line));
    cr_assert_str_eq(line, "hello from hvc0\n");
    cr_assert_eq(send(fd, "ping\n", 5, 0), 5);
    read_line(fd, line, sizeof(line));
    cr_assert_str_eq(line, "echo: ping\n");
    close(fd);
    finish_guest(vm, &cap, "virtio-console: ", "received 'ping'");
    cr_assert_neq(access(path, F_OK), 0, "the socket file is removed with the VM");
}

struct console_peer {
    kvmc_vm *vm;
    pthread_mutex_t lock;
    char out[256];
    size_t len;
    bool answered;
};

static void console_out(void *opaque, const uint8_t *data, size_t len)
{
    struct console_peer *p = opaque;
    pthread_mutex_lock(&p->lock);
    if (len > sizeof(p->out) - 1 - p->len)
        len = sizeof(p->out) - 1 - p->len;
    memcpy(p->out + p->len, data, len);
    p->len += len;
    p->out[p->len] = 0;
    pthread_mutex_unlock(&p->lock);
}

static void use_console_callback(kvmc_config *cfg, void *peer)
{
    cr_assert_eq(kvmc_config_set_virtio_console_callback(cfg, console_out, peer), KVMC_OK);
}

static void console_callback_and_write(void)
{
    struct console_peer peer = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest("kvmc.test=vconsole", &cap, use_console_callback, &peer);
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&peer.lock);
        bool greeted = strstr(peer.out, "hello from hvc0\n") != NULL;
        pthread_mutex_unlock(&peer.lock);
        if (greeted)
            break;
        usleep(5000);
    }
    size_t written = 0;
    cr_assert_eq(kvmc_vm_virtio_console_write(vm, "ping\n", 5, &written), KVMC_OK);
    cr_assert_eq(written, 5);
    finish_guest(vm, &cap, "virtio-console: ", "received 'ping'");
    cr_assert_str_eq(peer.out, "hello from hvc0\necho: ping\n");
}

Test(virtio_console, callback_and_write)
{
    console_callback_and_write();
}

Test(virtio_console, callback_and_write_over_pci)
{
    transport = KVMC_VIRTIO_PCI;
    console_callback_and_write();
}

Test(virtio_console, write_without_a_console_is_an_error)
{
    struct guest_spec spec = {.cmdline = "kvmc.test=boot-only"};
    struct console_capture cap = {0};
    kvmc_config *cfg = guest_config(&spec, &cap);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_OK);
    kvmc_config_free(cfg);
    cr_assert_eq(kvmc_vm_virtio_console_write(vm, "x", 1, NULL), KVMC_ESTATE);
    cr_assert(strstr(kvmc_last_error(), "no virtio-console"));
    kvmc_vm_destroy(vm);
    free(cap.data);
}

/* ------------------------------------------------------ virtio-vsock */

struct vsock_peer {
    char path[80];
    int listener; /* <path>_5000: echoes in capitals */
    char seen[64];
};

static void *vsock_echo(void *arg)
{
    struct vsock_peer *p = arg;
    int c = accept(p->listener, NULL, NULL);
    if (c < 0)
        return NULL;
    ssize_t n = recv(c, p->seen, sizeof(p->seen) - 1, 0);
    if (n > 0) {
        char up[64];
        for (ssize_t i = 0; i < n; i++)
            up[i] = (char)toupper((unsigned char)p->seen[i]);
        send(c, up, (size_t)n, 0);
    }
    char rest[8];
    while (recv(c, rest, sizeof(rest), 0) > 0) { /* until the guest closes */
    }
    close(c);
    return NULL;
}

static void use_vsock(kvmc_config *cfg, void *path)
{
    cr_assert_eq(kvmc_config_set_vsock(cfg, 3, path), KVMC_OK);
}

static void vsock_both_directions(void)
{
    struct vsock_peer p;
    temp_path(p.path, sizeof(p.path), "vsock");
    char port_path[100];
    snprintf(port_path, sizeof(port_path), "%s_5000", p.path);
    p.listener = unix_listener(port_path);
    memset(p.seen, 0, sizeof(p.seen));
    pthread_t echo;
    pthread_create(&echo, NULL, vsock_echo, &p);

    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest("kvmc.test=vsock", &cap, use_vsock, p.path);
    int fd = unix_client(p.path);
    cr_assert_eq(send(fd, "CONNECT 6000\n", 13, 0), 13);
    char line[64];
    read_line(fd, line, sizeof(line));
    unsigned host_port = 0;
    cr_assert_eq(sscanf(line, "OK %u\n", &host_port), 1, "handshake answer '%s'", line);
    cr_assert_eq(send(fd, "ping", 4, 0), 4);
    char pong[8] = {0};
    cr_assert_eq(recv(fd, pong, 4, MSG_WAITALL), 4);
    cr_assert_str_eq(pong, "pong");
    close(fd);
    finish_guest(vm, &cap, "virtio-vsock: ",
                 "cid 3, refused ok, guest->host reply 'HELLO VSOCK', close ok, "
                 "host->guest got 'ping', host closed");
    pthread_join(echo, NULL);
    cr_assert_str_eq(p.seen, "hello vsock");
    close(p.listener);
    unlink(port_path);
}

Test(virtio_vsock, both_directions_refusal_and_close)
{
    vsock_both_directions();
}

Test(virtio_vsock, both_directions_refusal_and_close_over_pci)
{
    transport = KVMC_VIRTIO_PCI;
    vsock_both_directions();
}

/* A connector routes the guest's connections: port 5000 to one end of a
 * socket pair whose other end echoes in capitals, anything else refused;
 * kvmc never looks for "<path>_<port>" files. */
struct routed {
    int peer[2];
    uint32_t asked[4];
    unsigned nasked;
};

static int route(void *opaque, uint32_t port)
{
    struct routed *r = opaque;
    if (r->nasked < 4)
        r->asked[r->nasked++] = port;
    if (port != 5000)
        return -1;
    int fd = r->peer[0]; /* kvmc owns it now (and seccomp forbids dup here) */
    r->peer[0] = -1;
    return fd;
}

static void use_routed_vsock(kvmc_config *cfg, void *arg)
{
    struct routed *r = arg;
    char path[80];
    temp_path(path, sizeof(path), "vsock-routed");
    cr_assert_eq(kvmc_config_set_vsock(cfg, 3, path), KVMC_OK);
    cr_assert_eq(kvmc_config_set_vsock_connector(cfg, route, r), KVMC_OK);
}

static void *pair_echo(void *arg)
{
    int fd = *(int *)arg;
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    for (ssize_t i = 0; i < n; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
    if (n > 0)
        send(fd, buf, (size_t)n, 0);
    return NULL;
}

Test(virtio_vsock, a_connector_routes_guest_connections)
{
    struct routed r = {0};
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r.peer), 0);
    pthread_t echo;
    pthread_create(&echo, NULL, pair_echo, &r.peer[1]);
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest("kvmc.test=vsock", &cap, use_routed_vsock, &r);
    kvmc_exit_info exit;
    cr_assert_eq(kvmc_vm_wait(vm, 60000, &exit), KVMC_OK, "%s", cap.data);
    kvmc_stats st = KVMC_STATS_INIT;
    cr_assert_eq(kvmc_vm_get_stats(vm, &st), KVMC_OK);
    kvmc_vm_destroy(vm);
    pthread_join(echo, NULL);
    /* The connection the connector took (the refused one never had a slot),
     * closed again, "hello vsock" each way. */
    cr_assert_eq(st.vsock_conns_opened, 1, "%" PRIu64, st.vsock_conns_opened);
    cr_assert_eq(st.vsock_conns_closed, st.vsock_conns_opened);
    cr_assert_geq(st.vsock_tx_bytes, 11, "%" PRIu64, st.vsock_tx_bytes);
    cr_assert_geq(st.vsock_rx_bytes, 11, "%" PRIu64, st.vsock_rx_bytes);
    cr_assert(strstr(cap.data, "refused ok, guest->host reply 'HELLO VSOCK', close ok"),
              "%s", cap.data);
    cr_assert_eq(r.nasked, 2u);
    cr_assert_eq(r.asked[0], 5001u);
    cr_assert_eq(r.asked[1], 5000u);
    cr_assert_eq(r.peer[0], -1);
    close(r.peer[1]);
    free(cap.data);
}

Test(virtio_vsock, a_bad_handshake_is_closed)
{
    char path[108];
    temp_path(path, sizeof(path), "vsock-bad");
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest("kvmc.test=echo", &cap, use_vsock, path);
    int fd = unix_client(path);
    cr_assert_eq(send(fd, "HELLO 6000\n", 11, 0), 11);
    char b;
    cr_assert_eq(recv(fd, &b, 1, 0), 0, "kvmc closes a connection that does not say CONNECT");
    close(fd);
    kvmc_vm_stop(vm);
    kvmc_vm_wait(vm, 10000, NULL);
    kvmc_vm_destroy(vm);
    free(cap.data);
}

/* ------------------------------------------------------ virtio-net */

struct udp_echo {
    int fd;
    bool keep_id; /* leave the first two bytes (a DNS message ID) as they came */
    char seen[64];
};

static void *udp_echo_main(void *arg)
{
    struct udp_echo *e = arg;
    struct sockaddr_in from;
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(e->fd, e->seen, sizeof(e->seen) - 1, 0, (struct sockaddr *)&from, &fl);
    if (n > 0) {
        char up[64];
        for (ssize_t i = 0; i < n; i++)
            up[i] = e->keep_id && i < 2 ? e->seen[i] : (char)toupper((unsigned char)e->seen[i]);
        sendto(e->fd, up, (size_t)n, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

/* A UDP echo server on addr, on a free port; returns the port. */
static unsigned start_udp_echo(struct udp_echo *e, const char *addr, pthread_t *t)
{
    memset(e, 0, sizeof(*e));
    e->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    cr_assert(bind(e->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %s", addr,
              strerror(errno));
    socklen_t len = sizeof(sa);
    getsockname(e->fd, (struct sockaddr *)&sa, &len);
    struct timeval tv = {.tv_sec = 25};
    setsockopt(e->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    pthread_create(t, NULL, udp_echo_main, e);
    return ntohs(sa.sin_port);
}

static void use_net(kvmc_config *cfg, void *spec)
{
    cr_assert_eq(kvmc_config_add_net(cfg, spec), KVMC_OK, "%s", kvmc_last_error());
}

static void net_reaches_a_host_udp_server(void)
{
    struct udp_echo e;
    pthread_t t;
    unsigned port = start_udp_echo(&e, "127.0.0.1", &t);
    char cmdline[128];
    snprintf(cmdline, sizeof(cmdline), "kvmc.test=net kvmc.net=10.0.2.15,10.0.2.2,%u", port);
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest(cmdline, &cap, use_net, "user,mac=52:54:00:aa:bb:cc");
    finish_guest(vm, &cap, "virtio-net: ", "mac cc, arp ok, udp reply 'KVMC-NET-PING'");
    pthread_join(t, NULL);
    /* An ARP request and a datagram out, their answers in. */
    const kvmc_stats *st = &finished_stats;
    cr_assert_geq(st->net_tx_packets, 2, "%" PRIu64, st->net_tx_packets);
    cr_assert_geq(st->net_rx_packets, 2, "%" PRIu64, st->net_rx_packets);
    cr_assert_geq(st->net_tx_bytes, 42 + 55, "%" PRIu64, st->net_tx_bytes);
    cr_assert_geq(st->net_rx_bytes, 42 + 55, "%" PRIu64, st->net_rx_bytes);
    cr_assert_str_eq(e.seen, "kvmc-net-ping");
    close(e.fd);
}

Test(virtio_net, user_networking_reaches_a_host_udp_server)
{
    net_reaches_a_host_udp_server();
}

Test(virtio_net, user_networking_reaches_a_host_udp_server_over_pci)
{
    transport = KVMC_VIRTIO_PCI;
    net_reaches_a_host_udp_server();
}

/* DNS to 10.0.2.3: kvmc forwards it itself, under the I/O thread's seccomp
 * list (libslirp's own forwarding opened /etc/resolv.conf there, and the
 * filter killed the process at the guest's first query). */
Test(virtio_net, dns_queries_to_the_slirp_nameserver_are_forwarded)
{
    struct udp_echo e;
    pthread_t t;
    unsigned port = start_udp_echo(&e, "127.0.0.1", &t);
    e.keep_id = true;
    char spec[64];
    snprintf(spec, sizeof(spec), "user,dns-server=127.0.0.1:%u", port);
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest("kvmc.test=net kvmc.net=10.0.2.15,10.0.2.3,53", &cap, use_net,
                              spec);
    finish_guest(vm, &cap, "virtio-net: ", "mac 56, arp ok, udp reply 'kvMC-NET-PING'");
    pthread_join(t, NULL);
    cr_assert_str_eq(e.seen, "kvmc-net-ping");
    close(e.fd);
}

static unsigned open_fds(void)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

/* libslirp opens a host socket per guest UDP port (and TCP connection): a
 * guest must not be able to take all of the process's descriptors. */
Test(virtio_net, a_guest_cannot_make_slirp_open_unbounded_sockets)
{
    struct udp_echo e;
    pthread_t t;
    unsigned port = start_udp_echo(&e, "127.0.0.1", &t);
    unsigned before = open_fds();
    char cmdline[128];
    snprintf(cmdline, sizeof(cmdline),
             "kvmc.test=net-ports:400 kvmc.net=10.0.2.15,10.0.2.2,%u", port);
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest(cmdline, &cap, use_net, "user");
    kvmc_exit_info exit;
    cr_assert_eq(kvmc_vm_wait(vm, 60000, &exit), KVMC_OK, "guest hung: %s", cap.data);
    unsigned during = open_fds(); /* slirp's sockets live until the VM is destroyed */
    kvmc_vm_destroy(vm);
    cr_assert(strstr(cap.data, "sent 400"), "%s", cap.data);
    cr_assert_leq(during - before, 128u + 24u, "%u descriptors for one VM", during - before);
    cr_assert_geq(during - before, 100u, "only %u: the guest's datagrams never got out",
                  during - before);
    shutdown(e.fd, SHUT_RDWR);
    pthread_join(t, NULL);
    close(e.fd);
    free(cap.data);
}

static void sh(const char *cmd)
{
    cr_assert_eq(system(cmd), 0, "'%s' failed", cmd);
}

Test(virtio_net, tap_interface)
{
    /* Needs CAP_NET_ADMIN (CI runs as root): a failure here says so. */
    cr_assert_eq(access("/dev/net/tun", R_OK | W_OK), 0,
                 "/dev/net/tun is missing or not accessible: tap cannot be tested");
    char ifname[16];
    snprintf(ifname, sizeof(ifname), "kvmct%d", getpid() % 100000);
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "ip tuntap add dev %s mode tap && ip addr add 10.97.0.1/24 dev %s && "
             "ip link set %s up", ifname, ifname, ifname);
    sh(cmd);
    struct udp_echo e;
    pthread_t t;
    unsigned port = start_udp_echo(&e, "10.97.0.1", &t);
    char cmdline[128], spec[64];
    snprintf(cmdline, sizeof(cmdline), "kvmc.test=net kvmc.net=10.97.0.2,10.97.0.1,%u", port);
    snprintf(spec, sizeof(spec), "tap=%s", ifname);
    struct console_capture cap = {0};
    kvmc_vm *vm = start_guest(cmdline, &cap, use_net, spec);
    kvmc_exit_info exit;
    int waited = kvmc_vm_wait(vm, 30000, &exit);
    kvmc_vm_destroy(vm);
    snprintf(cmd, sizeof(cmd), "ip tuntap del dev %s mode tap", ifname);
    sh(cmd);
    cr_assert_eq(waited, KVMC_OK, "%s", cap.data);
    struct guest_result r = {.console = cap};
    char line[256];
    const char *got = console_line(&r, "virtio-net: ", line, sizeof(line));
    cr_assert(got && !strcmp(got, "mac 56, arp ok, udp reply 'KVMC-NET-PING'"), "%s",
              cap.data);
    pthread_join(t, NULL);
    close(e.fd);
    free(cap.data);
}

Test(virtio_net, bad_specs_name_the_problem)
{
    kvmc_config *cfg = NULL;
    cr_assert_eq(kvmc_config_new(&cfg), KVMC_OK);
    static const struct { const char *spec, *msg; } bad[] = {
        {"", "empty"},
        {"slirp", "neither 'user' nor 'tap=IFNAME'"},
        {"user,mac=52:54:00:12:34", "not of the form"},
        {"user,hostfwd=tcp::0-:22", "not 1..65535"},
        {"user,hostfwd=sctp::22-:22", "must start with tcp: or udp:"},
        {"user,hostfwd=tcp:300.1.1.1:22-:22", "not an IPv4 address"},
        {"tap=", "not valid"},
        {"tap=a/b", "not valid"},
        {"tap=x,hostfwd=tcp::22-:22", "not tap"},
        {"user,speed=10", "unknown option 'speed=10'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(kvmc_config_add_net(cfg, bad[i].spec), KVMC_EINVAL, "%s", bad[i].spec);
        cr_assert(strstr(kvmc_last_error(), bad[i].msg), "'%s' gave '%s'", bad[i].spec,
                  kvmc_last_error());
    }
    cr_assert_eq(kvmc_config_set_vsock(cfg, 2, "/tmp/x"), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "CID 2 is reserved"));
    char long_path[120];
    memset(long_path, 'p', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = 0;
    cr_assert_eq(kvmc_config_set_vsock(cfg, 3, long_path), KVMC_EINVAL);
    cr_assert(strstr(kvmc_last_error(), "is too long"), "%s", kvmc_last_error());
    kvmc_config_free(cfg);
}

Test(virtio_net, a_taken_forward_port_is_a_clear_error)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    char spec[64];
    snprintf(spec, sizeof(spec), "user,hostfwd=tcp::%u-:80", ntohs(sa.sin_port));
    struct guest_spec gs = {.cmdline = "kvmc.test=boot-only"};
    struct console_capture cap = {0};
    kvmc_config *cfg = guest_config(&gs, &cap);
    cr_assert_eq(kvmc_config_add_net(cfg, spec), KVMC_OK);
    kvmc_vm *vm = NULL;
    cr_assert_eq(kvmc_vm_create(cfg, &vm), KVMC_EIO);
    char want[64];
    snprintf(want, sizeof(want), "hostfwd tcp:127.0.0.1:%u", ntohs(sa.sin_port));
    cr_assert(strstr(kvmc_last_error(), want), "%s", kvmc_last_error());
    kvmc_config_free(cfg);
    close(fd);
    free(cap.data);
}
