/* Firecracker's REST API (src/firecracker/swagger/firecracker.yaml in the
 * Firecracker repository), without HTTP: a request is a method, a path and
 * a body; the answer is a status and a body. The HTTP server (fc_http.c),
 * the --config-file loader (fc_main.c), the unit tests and the fuzzer all
 * come in here. What the API configures is kept in struct fc_machine; what
 * runs it is a backend (fc_vmm.c drives libkvmc, the tests use a fake).
 *
 * Every request body is untrusted: its JSON is parsed with limits, every
 * field is checked for its type and range, unknown fields are refused, and
 * a bad request changes nothing.
 *
 * Threads: fc_api_handle and the other calls take the API's lock; call
 * them from any thread. The backend is called with that lock held. */
#ifndef KVMC_FC_API_H
#define KVMC_FC_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Firecracker release whose API this speaks: what GET / and GET
 * /version report, and `--version` prints first. */
#define FC_COMPAT_VERSION "1.4.1"
#define FC_MAX_DRIVES 8
#define FC_MAX_NETS 4
#define FC_ID_MAX 64             /* drive and interface ids, with the NUL */
#define FC_MAX_PAYLOAD 51200     /* Firecracker's default request body limit */
#define FC_MMDS_LIMIT 51200      /* Firecracker's default metadata store limit */

struct fc_drive {
    char id[FC_ID_MAX];
    char *path;
    bool root, read_only;
    char *partuuid;
};

struct fc_net {
    char id[FC_ID_MAX];
    char *host_dev; /* a tap's name, or "user[,OPTIONS]": kvmc's user networking */
    char *mac;      /* "aa:bb:cc:dd:ee:ff" or NULL */
};

/* What the API configured before InstanceStart. */
struct fc_machine {
    unsigned vcpus;          /* default 1 */
    unsigned mem_mib;        /* default 128 */
    bool hugepages;          /* huge_pages "2M" */
    bool track_dirty_pages;  /* accepted; kvmc's diffs need no tracking */
    char *kernel, *initrd, *boot_args;
    struct fc_drive drives[FC_MAX_DRIVES]; /* the root device first */
    unsigned ndrives;
    struct fc_net nets[FC_MAX_NETS];
    unsigned nnets;
    bool vsock;
    uint32_t vsock_cid;
    char *vsock_uds;
    bool entropy;            /* PUT /entropy: a virtio-rng */
};

/* What the backend does. Each returns 0, or -1 with one line in err. */
struct fc_backend {
    /* Creates the VM from m and starts it; returns without waiting for
     * the guest. */
    int (*start)(void *ctx, const struct fc_machine *m, char *err, size_t errlen);
    int (*pause)(void *ctx, char *err, size_t errlen);
    int (*resume)(void *ctx, char *err, size_t errlen);
    int (*ctrl_alt_del)(void *ctx, char *err, size_t errlen);
    /* The VM is paused. Writes a kvmc snapshot directory, then the API's
     * configuration (config, JSON) and the link at mem_path to its memory
     * (fc_snapshot_finish). */
    int (*snapshot)(void *ctx, const char *dir, bool diff, const char *config,
                    const char *mem_path, char *err, size_t errlen);
    /* A snapshot's configuration, as fc_snapshot_read_config: malloc'd
     * JSON, or NULL with err. */
    char *(*read_snapshot_config)(void *ctx, const char *dir, const char *mem_path, char *err,
                                  size_t errlen);
    /* Creates the VM from m, restores dir into it; resumes it if asked,
     * else leaves it paused (started and paused at once). */
    int (*load)(void *ctx, const struct fc_machine *m, const char *dir, bool resume,
                char *err, size_t errlen);
    /* Writes the VM's counters as JSON members (`"name": {...}, ...`,
     * without braces) into out; returns how many bytes (0 if none). */
    size_t (*metrics)(void *ctx, char *out, size_t cap);
    /* Opens the log's or the metrics' file (which must exist: a file or a
     * named pipe) for non-blocking appends: an fd, or -1 with err. The
     * only host file the API writes to outside a snapshot. */
    int (*open_output)(void *ctx, const char *path, char *err, size_t errlen);
    void *ctx;
};

enum fc_state { FC_NOT_STARTED, FC_RUNNING, FC_PAUSED };

/* A snapshot directory's part that is kvmc-firecracker's (for backends):
 * writes the configuration beside kvmc's state and memory, and makes
 * mem_path a hard link (across file systems a symbolic one) to the memory;
 * reads the configuration back once mem_path proves to be that memory.
 * 0 / the text (malloc'd), or -1 / NULL with err. */
int fc_snapshot_finish(const char *dir, const char *config, const char *mem_path, char *err,
                       size_t errlen);
char *fc_snapshot_read_config(const char *dir, const char *mem_path, char *err, size_t errlen);

struct fc_api;

/* id: the instance id (--id). Returns NULL on allocation failure. */
struct fc_api *fc_api_new(const char *id, const struct fc_backend *backend);
void fc_api_free(struct fc_api *api);

/* Serves one request. body may be NULL (len 0). Returns the HTTP status
 * and sets *resp to a malloc'd JSON body, or NULL for none (204). */
int fc_api_handle(struct fc_api *api, const char *method, const char *path, const char *body,
                  size_t len, char **resp);

enum fc_state fc_api_state(struct fc_api *api);

/* --config-file: a JSON object of sections named as in GET /vm/config
 * ("machine-config", "boot-source", "drives", "network-interfaces",
 * "vsock", "entropy", "logger", "metrics", "mmds-config"), each holding
 * the body of its PUT. 0, or -1 with err naming the section and fault. */
int fc_api_load_config(struct fc_api *api, const char *json_text, size_t len, char *err,
                       size_t errlen);

/* Logger and metrics set from the command line (--log-path, --level,
 * --metrics-path): as PUT /logger and PUT /metrics. 0 or -1 with err. */
int fc_api_set_logger(struct fc_api *api, const char *path, const char *level, bool show_level,
                      bool show_origin, char *err, size_t errlen);
int fc_api_set_metrics(struct fc_api *api, const char *path, char *err, size_t errlen);
/* Writes one metrics line now (FlushMetrics; the periodic flush). */
void fc_api_flush_metrics(struct fc_api *api);
/* A line in the log (if one is set), at "Info" or "Error" level. */
void fc_api_log(struct fc_api *api, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* --jail: paths with a ".." component are refused from now on. */
void fc_api_set_jailed(struct fc_api *api);
/* The startup times the metrics report (--start-time-us and the API
 * socket's readiness), in microseconds. */
void fc_api_set_startup(struct fc_api *api, uint64_t wall_us, uint64_t cpu_us);

#endif
