/* Both ends of the lab's vsock check, built statically for L1 and L2
 * (busybox has no vsock tool):
 *   vsock-peer guest-serve PORT          L2: accept one vsock connection,
 *                                        answer its line in capitals
 *   vsock-peer guest-connect PORT MSG    L2: connect to the host (CID 2)
 *   vsock-peer host-serve PATH           L1: the same server on a Unix socket
 *   vsock-peer host-connect UDS PORT MSG L1: Firecracker's "CONNECT PORT\n"
 *   vsock-peer host-read PATH            L1: copy a Unix socket (kvmc's
 *                                        virtio-console) to stdout until EOF
 * The connecting modes print "reply=[...]". */
#include <ctype.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    } else {
        fprintf(stderr, "usage: see the comment in vsock-peer.c\n");
        return 2;
    }
    return 0;
}
