/* kvmc-firecracker: kvmc behind Firecracker's command line and REST API, so
 * that Firecracker's clients (firecracker-go-sdk, firectl, Kata
 * Containers, flintlock) drive kvmc unchanged. One process, one VM, as
 * Firecracker: the process ends when the guest does. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "fc_api.h"
#include "fc_http.h"
#include "fc_vmm.h"
#include "jail.h"
#include "kvmc/kvmc.h"

#define METRICS_PERIOD_MS 60000 /* Firecracker's periodic flush */
#define JAIL_PIDS 128            /* 32 vCPUs, their helpers, the API's threads */

static const char usage[] =
    "usage: kvmc-firecracker --api-sock PATH [--id ID] [--config-file FILE [--no-api]]\n"
    "                        [--no-seccomp] [--log-path PATH] [--level LEVEL]\n"
    "                        [--show-level] [--show-log-origin] [--metrics-path PATH]\n"
    "                        [--jail DIR [--jail-user UID[:GID]]]\n"
    "       kvmc-firecracker --config-file FILE --no-api\n"
    "       kvmc-firecracker --version | --help\n"
    "\n"
    "Runs one microVM, driven as Firecracker is: HTTP/1.1 on a Unix socket with\n"
    "Firecracker's requests and answers (GET /, /machine-config, /boot-source,\n"
    "/drives/ID, /network-interfaces/ID, /vsock, /entropy, /logger, /metrics,\n"
    "/actions, /vm, /vm/config, /snapshot/create, /snapshot/load, /mmds,\n"
    "/mmds/config, /version). The process ends when the guest powers off or\n"
    "resets (status 0), fails (1), or on SIGTERM/SIGINT (0, after stopping it).\n"
    "The guest's serial console is this process's stdin and stdout.\n"
    "\n"
    "options:\n"
    "  --api-sock PATH       the API's Unix socket (must not exist yet)\n"
    "  --id ID               the instance id GET / reports (anonymous-instance)\n"
    "  --config-file FILE    boot at once from FILE: a JSON object with the bodies\n"
    "                        of the PUTs, named as GET /vm/config names them\n"
    "  --no-api              with --config-file: no API socket\n"
    "  --no-seccomp          do not confine the VM's threads and the API's with seccomp\n"
    "  --seccomp-filter F    refused: kvmc builds its own seccomp lists\n"
    "  --log-path PATH       the log (an existing file or named pipe), as PUT /logger\n"
    "  --level LEVEL         Error, Warning, Info (default), Debug, Trace or Off\n"
    "  --show-level          put each line's level in the log\n"
    "  --show-log-origin     accepted; kvmc's lines carry no source location\n"
    "  --metrics-path PATH   the metrics (an existing file or named pipe), as PUT /metrics\n"
    "  --jail DIR            run confined to DIR, as Firecracker's jailer's chroot:\n"
    "                        every path (here and in requests) is inside DIR, where\n"
    "                        kvmc mounts dev/ (kvm, net/tun) and proc/; new PID,\n"
    "                        mount, IPC and UTS namespaces, no capabilities, and\n"
    "                        (as root) --jail-user. Paths with '..' are refused.\n"
    "                        DIR's files must be open to that user; taps must be\n"
    "                        owned by it (ip tuntap add NAME mode tap user UID).\n"
    "                        The network namespace is the one it starts in.\n"
    "  --jail-user UID[:GID] the user --jail runs as, when started as root\n"
    "                        (default 65534:65534, nobody; not 0)\n"
    "  --boot-timer          accepted; kvmc has no boot-timer device\n"
    "  --start-time-us N, --start-time-cpu-us N, --parent-cpu-time-us N\n"
    "                        the jailer's clocks, for the startup-time metrics\n"
    "  --http-api-max-payload-size N, --mmds-size-limit N\n"
    "                        refused unless 51200: these limits are fixed here\n"
    "  -V, --version         print \"Firecracker v" FC_COMPAT_VERSION " (kvmc VERSION)\"\n"
    "  -h, --help            this help\n"
    "\n"
    "kvmc extensions: a network interface whose host_dev_name is \"user\" (or\n"
    "\"user,hostfwd=tcp::2222-:22\", kvmc run's --net syntax) uses kvmc's user\n"
    "networking instead of a tap. A snapshot (PUT /snapshot/create) is a\n"
    "directory at snapshot_path (kvmc's state, memory and the configuration);\n"
    "mem_file_path is linked to its memory file.\n"
    "\n"
    "example (curl):\n"
    "  kvmc-firecracker --api-sock /tmp/fc.sock &\n"
    "  curl --unix-socket /tmp/fc.sock -X PUT http://localhost/boot-source \\\n"
    "       -d '{\"kernel_image_path\": \"vmlinux\", \"boot_args\": \"console=ttyS0\"}'\n"
    "  curl --unix-socket /tmp/fc.sock -X PUT http://localhost/actions \\\n"
    "       -d '{\"action_type\": \"InstanceStart\"}'\n";

struct options {
    const char *api_sock, *id, *config_file, *log_path, *level, *metrics_path, *jail;
    unsigned jail_uid, jail_gid;
    bool no_api, no_seccomp, show_level, show_origin, jail_user;
    unsigned long long start_us, start_cpu_us, parent_cpu_us;
};

static bool parse_u64(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        return false;
    *out = v;
    return true;
}

/* 0: go on; otherwise the exit status (after --help or --version, or an error). */
static int parse(int argc, char **argv, struct options *o)
{
    enum { O_API = 256, O_ID, O_CONFIG, O_NO_API, O_NO_SECCOMP, O_SECCOMP_FILTER, O_LOG,
           O_LEVEL, O_SHOW_LEVEL, O_SHOW_ORIGIN, O_METRICS, O_BOOT_TIMER, O_START,
           O_START_CPU, O_PARENT_CPU, O_PAYLOAD, O_MMDS_LIMIT, O_JAIL, O_JAIL_USER };
    static const struct option longs[] = {
        {"api-sock", required_argument, 0, O_API}, {"id", required_argument, 0, O_ID},
        {"config-file", required_argument, 0, O_CONFIG}, {"no-api", no_argument, 0, O_NO_API},
        {"no-seccomp", no_argument, 0, O_NO_SECCOMP},
        {"seccomp-filter", required_argument, 0, O_SECCOMP_FILTER},
        {"log-path", required_argument, 0, O_LOG}, {"level", required_argument, 0, O_LEVEL},
        {"show-level", no_argument, 0, O_SHOW_LEVEL},
        {"show-log-origin", no_argument, 0, O_SHOW_ORIGIN},
        {"metrics-path", required_argument, 0, O_METRICS},
        {"boot-timer", no_argument, 0, O_BOOT_TIMER},
        {"start-time-us", required_argument, 0, O_START},
        {"start-time-cpu-us", required_argument, 0, O_START_CPU},
        {"parent-cpu-time-us", required_argument, 0, O_PARENT_CPU},
        {"http-api-max-payload-size", required_argument, 0, O_PAYLOAD},
        {"mmds-size-limit", required_argument, 0, O_MMDS_LIMIT},
        {"jail", required_argument, 0, O_JAIL}, {"jail-user", required_argument, 0, O_JAIL_USER},
        {"version", no_argument, 0, 'V'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    unsigned long long n;
    opterr = 0;
    while ((c = getopt_long_only(argc, argv, "Vh", longs, NULL)) != -1) {
        switch (c) {
        case O_API: o->api_sock = optarg; break;
        case O_ID:
            if (!*optarg || strlen(optarg) > FC_ID_MAX - 1 ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789-_") != strlen(optarg)) {
                fprintf(stderr, "kvmc-firecracker: --id: 1 to %d letters, digits, '-' or "
                                "'_'\n", FC_ID_MAX - 1);
                return 2;
            }
            o->id = optarg;
            break;
        case O_CONFIG: o->config_file = optarg; break;
        case O_NO_API: o->no_api = true; break;
        case O_NO_SECCOMP: o->no_seccomp = true; break;
        case O_SECCOMP_FILTER:
            fprintf(stderr, "kvmc-firecracker: --seccomp-filter %s: kvmc builds its own seccomp "
                            "lists per thread; a BPF file of Firecracker's is not supported "
                            "(use --no-seccomp to run without)\n", optarg);
            return 2;
        case O_LOG: o->log_path = optarg; break;
        case O_LEVEL: o->level = optarg; break;
        case O_SHOW_LEVEL: o->show_level = true; break;
        case O_SHOW_ORIGIN: o->show_origin = true; break;
        case O_METRICS: o->metrics_path = optarg; break;
        case O_BOOT_TIMER:
            fprintf(stderr, "kvmc-firecracker: --boot-timer: kvmc has no boot-timer device; "
                            "ignored\n");
            break;
        case O_START:
        case O_START_CPU:
        case O_PARENT_CPU:
            if (!parse_u64(optarg, &n)) {
                fprintf(stderr, "kvmc-firecracker: %s: not a number of microseconds\n",
                        argv[optind - 1]);
                return 2;
            }
            *(c == O_START ? &o->start_us : c == O_START_CPU ? &o->start_cpu_us
                                                             : &o->parent_cpu_us) = n;
            break;
        case O_PAYLOAD:
        case O_MMDS_LIMIT:
            if (!parse_u64(optarg, &n) || n != 51200) {
                fprintf(stderr, "kvmc-firecracker: %s %s: kvmc's limit is fixed at 51200 "
                                "bytes\n", c == O_PAYLOAD ? "--http-api-max-payload-size"
                                                          : "--mmds-size-limit", optarg);
                return 2;
            }
            break;
        case O_JAIL: o->jail = optarg; break;
        case O_JAIL_USER:
            if (!jail_parse_user(optarg, &o->jail_uid, &o->jail_gid)) {
                fprintf(stderr, "kvmc-firecracker: --jail-user %s: use UID or UID:GID, numbers "
                                "other than 0\n", optarg);
                return 2;
            }
            o->jail_user = true;
            break;
        case 'V':
            printf("Firecracker v%s (kvmc %s)\n", FC_COMPAT_VERSION, kvmc_version_string());
            return -1;
        case 'h':
            fputs(usage, stdout);
            return -1;
        default:
            fprintf(stderr, "kvmc-firecracker: unknown or incomplete option '%s'\n\n%s",
                    argv[optind - 1], usage);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kvmc-firecracker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->no_api && !o->config_file) {
        fprintf(stderr, "kvmc-firecracker: --no-api needs --config-file\n");
        return 2;
    }
    if (o->jail_user && !o->jail) {
        fprintf(stderr, "kvmc-firecracker: --jail-user needs --jail\n");
        return 2;
    }
    if (!o->no_api && !o->api_sock) {
        fprintf(stderr, "kvmc-firecracker: --api-sock PATH is required (or --config-file "
                        "FILE --no-api)\n\n%s", usage);
        return 2;
    }
    return 0;
}

static int listen_on(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "kvmc-firecracker: --api-sock %s: longer than a Unix socket's %zu "
                        "bytes\n", path, sizeof(addr.sun_path) - 1);
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 64) != 0) {
        fprintf(stderr, "kvmc-firecracker: --api-sock %s: %s%s\n", path, strerror(errno),
                errno == EADDRINUSE ? " (remove it first: another process may serve it)" : "");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    size_t cap = 0, used = 0;
    char *buf = NULL;
    for (;;) {
        if (used == cap) {
            if (cap >= (1u << 20)) { /* a configuration is a few KiB */
                errno = EFBIG;
                break;
            }
            char *grown = realloc(buf, cap = cap ? cap * 2 : 4096);
            if (!grown)
                break;
            buf = grown;
        }
        size_t n = fread(buf + used, 1, cap - used, f);
        used += n;
        if (n == 0) {
            if (ferror(f))
                break;
            fclose(f);
            *len = used;
            return buf;
        }
    }
    int saved = errno;
    fclose(f);
    free(buf);
    errno = saved;
    return NULL;
}

static uint64_t now_us(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

struct signals {
    sigset_t set;
    struct fc_vmm *vmm;
    struct fc_api *api;
};

static void *signal_thread(void *arg)
{
    struct signals *s = arg;
    pthread_setname_np(pthread_self(), "fc_signals");
    int sig;
    while (sigwait(&s->set, &sig) == 0) {
        fc_vmm_stop(s->vmm); /* first: the log waits for a request being served */
        fc_api_log(s->api, false, "signal %d: stopping", sig);
    }
    return NULL;
}

static int exit_status(const kvmc_exit_info *info)
{
    switch (info->reason) {
    case KVMC_EXIT_POWEROFF:
        return info->code == 0 ? 0 : 1;
    case KVMC_EXIT_RESET:
    case KVMC_EXIT_STOPPED: /* only SIGTERM stops it */
        return 0;
    default:
        return 1;
    }
}

/* --jail DIR: this process forks; the parent stays outside and waits,
 * forwarding signals, and ends with the child's status (jail.h). The
 * child goes on here in DIR, a PID 1 without capabilities. */
static int enter_jail(const struct options *o, char *err, size_t errlen)
{
    static char root[PATH_MAX];
    static struct jail jail;
    if (!realpath(o->jail, root)) {
        snprintf(err, errlen, "--jail %s: %s", o->jail, strerror(errno));
        return -1;
    }
    if (strcmp(root, "/") == 0) {
        snprintf(err, errlen, "--jail %s: the host's root is no jail", o->jail);
        return -1;
    }
    jail = (struct jail){.uid = o->jail_uid, .gid = o->jail_gid, .keep_host_network = true,
                         .pids_limit = JAIL_PIDS, .broker_fd = -1, .root_from = root};
    if (jail_fork(&jail, err, errlen) < 0 || jail_lock_down(&jail, err, errlen) < 0)
        return -1;
    if (jail.proc_note[0])
        fprintf(stderr, "kvmc-firecracker: --jail: no proc in the jail (%s): Diff snapshots "
                        "will fail\n", jail.proc_note);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t started_us = now_us(CLOCK_MONOTONIC);
    mallopt(M_ARENA_MAX, 1); /* as kvmc run: threads malloc rarely */
    /* jansson seeds its hash function from /dev/urandom on first use: here,
     * not on the confined API thread. */
    json_object_seed(0);
    tzset(); /* the same for libmicrohttpd's Date header and /etc/localtime */
    struct options o = {.jail_uid = 65534, .jail_gid = 65534};
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;

    char err[1024];
    /* The jail first: its namespaces need a process of one thread. */
    if (o.jail && enter_jail(&o, err, sizeof(err)) < 0) {
        fprintf(stderr, "kvmc-firecracker: %s\n", err);
        return 1;
    }

    struct fc_vmm vmm;
    fc_vmm_init(&vmm, !o.no_seccomp);
    struct fc_backend backend = fc_vmm_backend(&vmm);
    struct fc_api *api = fc_api_new(o.id, &backend);
    if (!api) {
        fprintf(stderr, "kvmc-firecracker: out of memory\n");
        return 1;
    }
    if (o.jail)
        fc_api_set_jailed(api);
    /* Signals: blocked everywhere (the VM's threads inherit the mask),
     * taken by a thread of their own. */
    struct signals sigs = {.vmm = &vmm, .api = api};
    sigemptyset(&sigs.set);
    sigaddset(&sigs.set, SIGTERM);
    sigaddset(&sigs.set, SIGINT);
    sigaddset(&sigs.set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs.set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up mid-answer */
    pthread_t watcher;
    if (pthread_create(&watcher, NULL, signal_thread, &sigs) != 0 ||
        fc_vmm_start_worker(&vmm) != 0) {
        fprintf(stderr, "kvmc-firecracker: cannot start its threads\n");
        return 1;
    }

    if ((o.log_path || o.level) &&
        fc_api_set_logger(api, o.log_path, o.level, o.show_level, o.show_origin, err,
                          sizeof(err))) {
        fprintf(stderr, "kvmc-firecracker: --log-path/--level: %s\n", err);
        return 2;
    }
    if (o.metrics_path && fc_api_set_metrics(api, o.metrics_path, err, sizeof(err))) {
        fprintf(stderr, "kvmc-firecracker: --metrics-path: %s\n", err);
        return 2;
    }

    struct fc_http *http = NULL;
    if (!o.no_api) {
        int fd = listen_on(o.api_sock);
        if (fd < 0)
            return 1;
        http = fc_http_start(fd, api, !o.no_seccomp, err, sizeof(err));
        if (!http) {
            fprintf(stderr, "kvmc-firecracker: %s\n", err);
            unlink(o.api_sock);
            return 1;
        }
    }
    fc_api_set_startup(api, now_us(CLOCK_MONOTONIC) - (o.start_us ? o.start_us : started_us),
                       now_us(CLOCK_PROCESS_CPUTIME_ID) + o.parent_cpu_us);
    fc_api_log(api, false, "Running Firecracker v%s (kvmc %s)", FC_COMPAT_VERSION,
               kvmc_version_string());

    if (o.config_file) {
        size_t len;
        char *text = read_file(o.config_file, &len), *resp = NULL;
        int status = 0;
        if (!text)
            snprintf(err, sizeof(err), "%s", strerror(errno));
        else if (fc_api_load_config(api, text, len, err, sizeof(err)) == 0) {
            static const char start[] = "{\"action_type\":\"InstanceStart\"}";
            status = fc_api_handle(api, "PUT", "/actions", start, sizeof(start) - 1, &resp);
            if (status >= 300)
                snprintf(err, sizeof(err), "%s", resp ? resp : "InstanceStart failed");
        }
        free(text);
        free(resp);
        if (!text || status == 0 || status >= 300) {
            fprintf(stderr, "kvmc-firecracker: --config-file %s: %s\n", o.config_file, err);
            if (!o.no_api)
                unlink(o.api_sock);
            return 1;
        }
    }

    /* Wait for InstanceStart (or a snapshot load), flushing the metrics
     * every minute, then for the guest to end. */
    kvmc_vm *vm;
    while (!(vm = fc_vmm_wait_started(&vmm, METRICS_PERIOD_MS))) {
        if (fc_vmm_stopping(&vmm))
            break;
        fc_api_flush_metrics(api);
    }
    int status = 0;
    if (vm) {
        kvmc_exit_info info;
        while ((rc = kvmc_vm_wait(vm, METRICS_PERIOD_MS, &info)) == KVMC_ETIMEDOUT)
            fc_api_flush_metrics(api);
        if (rc) {
            fc_api_log(api, true, "waiting for the VM: %s", kvmc_last_error());
            status = 1;
        } else {
            status = exit_status(&info);
            fc_api_log(api, status != 0, "the microVM ended: %s%s%s",
                       kvmc_exit_reason_name(info.reason), info.message[0] ? ": " : "",
                       info.message);
            if (status)
                fprintf(stderr, "kvmc-firecracker: the microVM ended: %s: %s\n",
                        kvmc_exit_reason_name(info.reason), info.message);
        }
    }
    fc_api_flush_metrics(api);
    if (!o.no_api)
        unlink(o.api_sock);
    /* As kvmc run: the kernel tears the VM down on exit faster than
     * kvmc_vm_destroy; the vCPU threads are joined already. */
    fflush(NULL);
    _exit(status);
}
