/* Parsing of a network device description, shared by the C API and the CLI:
 *   user[,mac=52:54:00:12:34:56][,hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...
 *       [,dns-server=IPV4[:PORT]]
 *   tap=IFNAME[,mac=...]
 * It is a parser of untrusted text, so it is small, bounded and fuzzed. */
#ifndef KVMC_NET_SPEC_H
#define KVMC_NET_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#define NET_MAX_FORWARDS 8
#define NET_IFNAME_MAX 16 /* IFNAMSIZ, with the NUL */

struct net_forward {
    bool udp;
    uint32_t host_addr;  /* network order; 0: 127.0.0.1 */
    uint16_t host_port;
    uint32_t guest_addr; /* network order; 0: the DHCP address 10.0.2.15 */
    uint16_t guest_port;
};

struct net_config {
    bool tap;
    char ifname[NET_IFNAME_MAX];
    bool has_mac;
    uint8_t mac[6];
    unsigned nforwards;
    struct net_forward forwards[NET_MAX_FORWARDS];
    bool has_dns_server;     /* user: dns-server=IPV4[:PORT], else resolv.conf's */
    char dns_server[24];
    const char *resolv_conf; /* user: for tests; NULL is /etc/resolv.conf */
};

/* 0 or KVMC_EINVAL with a message naming the bad part. */
int net_spec_parse(const char *spec, struct net_config *out);

#endif
