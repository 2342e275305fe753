/* What the lab needs and Debian's busybox lacks, built statically for L1
 * and L2:
 *   lab-tool guest-serve PORT          L2: accept one vsock connection,
 *                                      answer its line in capitals
 *   lab-tool guest-connect PORT MSG    L2: connect to the host (CID 2)
 *   lab-tool host-serve PATH           L1: the same server on a Unix socket
 *   lab-tool host-connect UDS PORT MSG L1: Firecracker's "CONNECT PORT\n"
 *   lab-tool host-read PATH            L1: copy a Unix socket (kvmc's
 *                                      virtio-console) to stdout until EOF
 *   lab-tool dns-serve ADDR NAME IPV4  L1: a DNS server on ADDR:53 that
 *                                      answers NAME's A query with IPV4
 *   lab-tool records FILE              L2: appends "record N" lines, each
 *                                      fsync'ed, printing "SYNCED N" after
 *                                      each fsync returned, forever
 *   lab-tool as-nobody PATH ARGS...    L1: exec PATH as uid/gid 65534
 *   lab-tool hmp PATH COMMAND          L1: one command to QEMU's human
 *                                      monitor on a Unix socket; prints
 *                                      what it answered
 * The connecting modes print "reply=[...]". */
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void answer_in_capitals(int c)
{
    char buf[256];
    ssize_t n = read(c, buf, sizeof(buf));
    for (ssize_t i = 0; i < n; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
    if (n > 0 && write(c, buf, (size_t)n) != n)
        die("write");
    close(c);
}

static void print_reply(int fd, const char *msg)
{
    if (write(fd, msg, strlen(msg)) < 0)
        die("write");
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("reply=[%s]\n", buf);
}

static int unix_socket(const char *path, struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
    return fd;
}

/* Connects, retrying for a minute until kvmc listens there. */
static int unix_connect_retry(const char *path)
{
    struct sockaddr_un sa;
    for (int tries = 0; tries < 600; tries++) {
        int fd = unix_socket(path, &sa);
        if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
            return fd;
        close(fd);
        usleep(100000);
    }
    die("unix connect");
    return -1;
}

/* Answers one DNS query in q (n bytes) into r; returns the answer's length,
 * or 0 to ignore it. NAME's A query gets ip, anything else NXDOMAIN. */
static size_t dns_answer(const unsigned char *q, size_t n, const char *name, struct in_addr ip,
                         unsigned char *r)
{
    if (n < 12 || n > 512 || (q[2] & 0x80) || q[4] || q[5] != 1)
        return 0;
    char qname[256];
    size_t at = 12, len = 0;
    while (at < n && q[at]) {
        size_t l = q[at++];
        if (l > 63 || at + l > n || len + l + 1 >= sizeof(qname))
            return 0;
        if (len)
            qname[len++] = '.';
        memcpy(qname + len, q + at, l);
        len += l;
        at += l;
    }
    qname[len] = 0;
    if (at + 5 > n)
        return 0;
    size_t qend = at + 5; /* the root label, type, class */
    int qtype = q[at + 1] << 8 | q[at + 2];
    bool match = strcasecmp(qname, name) == 0;
    memcpy(r, q, qend);
    r[2] = 0x84 | (q[2] & 0x01); /* response, authoritative, RD copied */
    r[3] = match ? 0x00 : 0x03;  /* NOERROR or NXDOMAIN */
    r[6] = 0;
    r[7] = match && qtype == 1;
    memset(r + 8, 0, 4);
    size_t out = qend;
    if (r[7]) {
        static const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
        memcpy(r + out, rr, sizeof(rr));
        memcpy(r + out + sizeof(rr), &ip, 4);
        out += sizeof(rr) + 4;
    }
    return out;
}

static void dns_serve(const char *addr, const char *name, const char *ipv4)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
    struct in_addr ip;
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || inet_pton(AF_INET, ipv4, &ip) != 1)
        die("dns-serve: addresses");
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
        die("dns-serve: bind");
    for (;;) {
        unsigned char q[512], r[600];
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        size_t len = n > 0 ? dns_answer(q, (size_t)n, name, ip, r) : 0;
        if (len)
            sendto(fd, r, len, 0, (struct sockaddr *)&from, fl);
    }
}

static void records(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0)
        die("records: open");
    setvbuf(stdout, NULL, _IONBF, 0);
    for (unsigned long i = 1;; i++) {
        char line[64];
        int n = snprintf(line, sizeof(line), "record %lu\n", i);
        if (write(fd, line, (size_t)n) != n || fsync(fd))
            die("records: write");
        printf("SYNCED %lu\n", i);
    }
}

/* Reads the monitor until its "(qemu) " prompt; prints what came before. */
static void hmp_until_prompt(int fd, bool print)
{
    char buf[8192];
    size_t got = 0;
    while (got < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = 0;
        if (got >= 7 && !strcmp(buf + got - 7, "(qemu) "))
            break;
    }
    buf[got] = 0;
    if (print)
        fputs(buf, stdout);
}

/* One HMP command; returns once QEMU prompts again (for "migrate", which
 * blocks the monitor, once the migration ended). */
static void hmp(const char *path, const char *command)
{
    int fd = unix_connect_retry(path);
    hmp_until_prompt(fd, false); /* the banner */
    char line[512];
    int n = snprintf(line, sizeof(line), "%s\n", command);
    if (n <= 0 || (size_t)n >= sizeof(line) || write(fd, line, (size_t)n) != n)
        die("hmp write");
    hmp_until_prompt(fd, true);
    printf("\n");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "guest-serve")) {
        int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                                 .svm_port = (unsigned)atoi(argv[2])};
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1))
            die("vsock listen");
        answer_in_capitals(accept(fd, NULL, NULL));
    } else if (argc == 4 && !strcmp(argv[1], "guest-connect")) {
        int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST,
                                 .svm_port = (unsigned)atoi(argv[2])};
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
            die("vsock connect");
        print_reply(fd, argv[3]);
    } else if (argc == 3 && !strcmp(argv[1], "host-serve")) {
        struct sockaddr_un sa;
        int fd = unix_socket(argv[2], &sa);
        unlink(argv[2]);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1))
            die("unix listen");
        answer_in_capitals(accept(fd, NULL, NULL));
    } else if (argc == 5 && !strcmp(argv[1], "host-connect")) {
        int fd = unix_connect_retry(argv[2]);
        char line[64];
        int n = snprintf(line, sizeof(line), "CONNECT %s\n", argv[3]);
        if (write(fd, line, (size_t)n) != n)
            die("write");
        /* "OK <port>\n" comes only once the guest accepted. */
        size_t got = 0;
        while (got < sizeof(line) - 1 && read(fd, line + got, 1) == 1 && line[got++] != '\n') {
        }
        line[got] = 0;
        if (strncmp(line, "OK ", 3))
            fprintf(stderr, "handshake answer [%s]\n", line);
        print_reply(fd, argv[4]);
    } else if (argc == 3 && !strcmp(argv[1], "host-read")) {
        int fd = unix_connect_retry(argv[2]);
        char buf[256];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            if (write(1, buf, (size_t)n) != n)
                die("write");
    } else if (argc == 5 && !strcmp(argv[1], "dns-serve")) {
        dns_serve(argv[2], argv[3], argv[4]);
    } else if (argc == 3 && !strcmp(argv[1], "records")) {
        records(argv[2]);
    } else if (argc == 4 && !strcmp(argv[1], "hmp")) {
        hmp(argv[2], argv[3]);
    } else if (argc >= 3 && !strcmp(argv[1], "as-nobody")) {
        /* as-nobody COMMAND...: runs COMMAND as uid/gid 65534, no groups. */
        if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
            die("dropping to uid 65534");
        execv(argv[2], argv + 2);
        die("execv");
    } else {
        fprintf(stderr, "usage: see the comment in lab-tool.c\n");
        return 2;
    }
    return 0;
}
