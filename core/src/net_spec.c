#include "net_spec.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "net/dns_forward.h"

#define SPEC_MAX 1024

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &tail) != 6 || strlen(s) != 17)
        return kvmc_fail(KVMC_EINVAL, "net: mac '%s' is not of the form 52:54:00:12:34:56", s);
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    if (mac[0] & 1)
        return kvmc_fail(KVMC_EINVAL, "net: mac '%s' is a multicast address", s);
    return KVMC_OK;
}

static int parse_port(const char *s, size_t len, uint16_t *port, const char *rule)
{
    char buf[8];
    if (len == 0 || len >= sizeof(buf))
        return kvmc_fail(KVMC_EINVAL, "net: hostfwd '%s': bad port", rule);
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    unsigned long v = strtoul(buf, &end, 10);
    if (*end || v == 0 || v > 65535 || buf[0] < '0' || buf[0] > '9')
        return kvmc_fail(KVMC_EINVAL, "net: hostfwd '%s': port '%s' is not 1..65535", rule,
                         buf);
    *port = (uint16_t)v;
    return KVMC_OK;
}

static int parse_addr(const char *s, size_t len, uint32_t *addr, const char *rule)
{
    char buf[INET_ADDRSTRLEN];
    *addr = 0;
    if (len == 0)
        return KVMC_OK;
    if (len >= sizeof(buf))
        return kvmc_fail(KVMC_EINVAL, "net: hostfwd '%s': bad address", rule);
    memcpy(buf, s, len);
    buf[len] = 0;
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1)
        return kvmc_fail(KVMC_EINVAL, "net: hostfwd '%s': '%s' is not an IPv4 address", rule,
                         buf);
    *addr = a.s_addr;
    return KVMC_OK;
}

/* "[ADDR]:PORT" */
static int parse_endpoint(const char *s, size_t len, uint32_t *addr, uint16_t *port,
                          const char *rule)
{
    const char *colon = memchr(s, ':', len);
    if (!colon)
        return kvmc_fail(KVMC_EINVAL, "net: hostfwd '%s': expected [ADDR]:PORT", rule);
    size_t alen = (size_t)(colon - s);
    int err = parse_addr(s, alen, addr, rule);
    return err ? err : parse_port(colon + 1, len - alen - 1, port, rule);
}

/* "tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT" */
static int parse_forward(const char *rule, struct net_forward *f)
{
    const char *p = rule;
    if (!strncmp(p, "tcp:", 4))
        f->udp = false;
    else if (!strncmp(p, "udp:", 4))
        f->udp = true;
    else
        return kvmc_fail(KVMC_EINVAL, "net: hostfwd '%s' must start with tcp: or udp:", rule);
    p += 4;
    const char *dash = strchr(p, '-');
    if (!dash)
        return kvmc_fail(KVMC_EINVAL,
                         "net: hostfwd '%s': expected tcp:[HOSTADDR]:PORT-[GUESTADDR]:PORT",
                         rule);
    int err = parse_endpoint(p, (size_t)(dash - p), &f->host_addr, &f->host_port, rule);
    return err ? err
               : parse_endpoint(dash + 1, strlen(dash + 1), &f->guest_addr, &f->guest_port,
                                rule);
}

static int parse_option(char *opt, struct net_config *out)
{
    if (!strncmp(opt, "mac=", 4)) {
        out->has_mac = true;
        return parse_mac(opt + 4, out->mac);
    }
    if (!strncmp(opt, "hostfwd=", 8)) {
        if (out->tap)
            return kvmc_fail(KVMC_EINVAL, "net: hostfwd is for user networking, not tap");
        if (out->nforwards == NET_MAX_FORWARDS)
            return kvmc_fail(KVMC_EINVAL, "net: at most %d hostfwd rules", NET_MAX_FORWARDS);
        return parse_forward(opt + 8, &out->forwards[out->nforwards++]);
    }
    if (!strncmp(opt, "dns-server=", 11)) {
        uint32_t addr;
        uint16_t port;
        if (out->tap)
            return kvmc_fail(KVMC_EINVAL, "net: dns-server is for user networking, not tap");
        if (strlen(opt + 11) >= sizeof(out->dns_server) ||
            !dns_parse_server(opt + 11, &addr, &port))
            return kvmc_fail(KVMC_EINVAL, "net: dns-server '%s' is not IPV4[:PORT]", opt + 11);
        out->has_dns_server = true;
        strcpy(out->dns_server, opt + 11);
        return KVMC_OK;
    }
    return kvmc_fail(KVMC_EINVAL, "net: unknown option '%s' (known: mac=, hostfwd=, "
                     "dns-server=)", opt);
}

static int parse_kind(const char *kind, struct net_config *out)
{
    if (!strcmp(kind, "user"))
        return KVMC_OK;
    if (!strncmp(kind, "tap=", 4)) {
        size_t n = strlen(kind + 4);
        if (n == 0 || n >= NET_IFNAME_MAX || strchr(kind + 4, '/'))
            return kvmc_fail(KVMC_EINVAL, "net: tap interface name '%s' is not valid "
                             "(1..%d characters, no '/')", kind + 4, NET_IFNAME_MAX - 1);
        out->tap = true;
        memcpy(out->ifname, kind + 4, n + 1);
        return KVMC_OK;
    }
    return kvmc_fail(KVMC_EINVAL, "net: '%s' is neither 'user' nor 'tap=IFNAME'", kind);
}

int net_spec_parse(const char *spec, struct net_config *out)
{
    memset(out, 0, sizeof(*out));
    if (!spec || !*spec)
        return kvmc_fail(KVMC_EINVAL, "net: empty description (try 'user' or 'tap=NAME')");
    size_t len = strlen(spec);
    if (len >= SPEC_MAX)
        return kvmc_fail(KVMC_EINVAL, "net: description longer than %d bytes", SPEC_MAX - 1);
    char buf[SPEC_MAX];
    memcpy(buf, spec, len + 1);
    char *save = NULL;
    char *part = strtok_r(buf, ",", &save);
    int err = part ? parse_kind(part, out)
                   : kvmc_fail(KVMC_EINVAL, "net: empty description");
    while (!err && (part = strtok_r(NULL, ",", &save)))
        err = parse_option(part, out);
    return err;
}
