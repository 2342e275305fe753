/* Firecracker's API without HTTP (fc_api.h): routing, request checking,
 * the configuration it builds, the metadata store, the logger and the
 * metrics. JSON through jansson. */
#include "fc_api.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fc_output.h"

#define FAULT_MAX 600

/* The routes, also the names their counters have in the metrics. */
enum route {
    R_INSTANCE, R_VERSION, R_MACHINE, R_BOOT, R_DRIVE, R_NET, R_VSOCK, R_ENTROPY, R_LOGGER,
    R_METRICS, R_ACTIONS, R_VM, R_VM_CONFIG, R_SNAP_CREATE, R_SNAP_LOAD, R_MMDS, R_MMDS_CONFIG,
    R_COUNT
};

static const char *const route_metric[R_COUNT] = {
    [R_INSTANCE] = "instance_info", [R_VERSION] = "vmm_version", [R_MACHINE] = "machine_cfg",
    [R_BOOT] = "boot_source", [R_DRIVE] = "drive", [R_NET] = "network", [R_VSOCK] = "vsock",
    [R_ENTROPY] = "entropy", [R_LOGGER] = "logger", [R_METRICS] = "metrics",
    [R_ACTIONS] = "actions", [R_VM] = "vm", [R_VM_CONFIG] = "vm_config",
    [R_SNAP_CREATE] = "snapshot_create", [R_SNAP_LOAD] = "snapshot_load", [R_MMDS] = "mmds",
    [R_MMDS_CONFIG] = "mmds_config"};

enum verb { V_GET, V_PUT, V_PATCH, V_COUNT };

struct counters {
    unsigned long long count[V_COUNT][R_COUNT], fails[V_COUNT][R_COUNT];
};

struct fc_api {
    pthread_mutex_t lock;
    char id[FC_ID_MAX + 1];
    struct fc_backend be;
    enum fc_state state;
    struct fc_machine m;
    bool boot_configured;      /* anything but the logger and metrics: no snapshot load then */
    json_t *mmds;              /* NULL until PUT /mmds */
    json_t *mmds_config;       /* NULL until PUT /mmds/config */
    struct fc_output log, metrics;
    json_t *logger_body, *metrics_body; /* as configured, for GET /vm/config */
    struct counters now, flushed;
    unsigned long long startup_us, startup_cpu_us;
    bool jailed; /* --jail: every path is inside the jail's root */
};

/* One request being served. */
struct req {
    struct fc_api *api;
    enum verb verb;
    const char *id; /* the path's {id} */
    json_t *body;
    int status;
    char fault[FAULT_MAX];
    char *resp;
};

static int fail(struct req *rq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct req *rq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rq->fault, sizeof(rq->fault), fmt, ap);
    va_end(ap);
    rq->status = 400;
    return -1;
}

static const char NOT_AFTER_BOOT[] =
    "The requested operation is not supported after starting the microVM.";
static const char NOT_BEFORE_BOOT[] =
    "The requested operation is not supported before starting the microVM.";

static int pre_boot(struct req *rq)
{
    return rq->api->state == FC_NOT_STARTED ? 0 : fail(rq, "%s", NOT_AFTER_BOOT);
}

static int post_boot(struct req *rq)
{
    return rq->api->state != FC_NOT_STARTED ? 0 : fail(rq, "%s", NOT_BEFORE_BOOT);
}

/* ------------------------------------------------------------ body checks */

enum ftype { F_STR, F_INT, F_BOOL, F_OBJ, F_ARR };

struct field {
    const char *name;
    enum ftype type;
    bool required;
};

static const char *ftype_name(enum ftype t)
{
    static const char *const names[] = {"a string", "an integer", "a boolean", "an object",
                                        "an array"};
    return names[t];
}

static bool has_type(const json_t *v, enum ftype t)
{
    switch (t) {
    case F_STR: return json_is_string(v);
    case F_INT: return json_is_integer(v);
    case F_BOOL: return json_is_boolean(v);
    case F_OBJ: return json_is_object(v);
    case F_ARR: return json_is_array(v);
    }
    return false;
}

#define DESERIALIZE "An error occurred when deserializing the json body of a request: "

/* The body is an object holding only these fields, each of its type
 * (null counts as absent for optional ones), the required ones present. */
static int check_fields(struct req *rq, const json_t *obj, const struct field *f, size_t n)
{
    if (!json_is_object(obj))
        return fail(rq, DESERIALIZE "expected a JSON object.");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        size_t i = 0;
        while (i < n && strcmp(f[i].name, key))
            i++;
        if (i == n) {
            char expected[300] = "";
            size_t used = 0;
            for (size_t j = 0; j < n && used < sizeof(expected); j++)
                used += (size_t)snprintf(expected + used, sizeof(expected) - used, "%s`%s`",
                                         j ? ", " : "", f[j].name);
            return fail(rq, DESERIALIZE "unknown field `%.64s`, expected one of %s.", key,
                        expected);
        }
        if (!json_is_null(v) && !has_type(v, f[i].type))
            return fail(rq, DESERIALIZE "invalid type for `%s`: expected %s.", key,
                        ftype_name(f[i].type));
    }
    for (size_t i = 0; i < n; i++) {
        json_t *got = json_object_get(obj, f[i].name);
        if (f[i].required && (!got || json_is_null(got)))
            return fail(rq, DESERIALIZE "missing field `%s`.", f[i].name);
    }
    return 0;
}

static const char *get_str(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool get_bool(const json_t *obj, const char *name, bool dflt)
{
    const json_t *v = json_object_get(obj, name);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static bool has(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);
    return v && !json_is_null(v);
}

/* An integer field within [lo, hi]; absent leaves *out. */
static int get_int(struct req *rq, const json_t *obj, const char *name, long long lo,
                   long long hi, long long *out)
{
    const json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v))
        return 0;
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(rq, "`%s` is %lld: it must be from %lld to %lld.", name, x, lo, hi);
    *out = x;
    return 0;
}

/* Whether a path has a ".." component. */
static bool climbs(const char *path)
{
    for (const char *p = path; (p = strstr(p, "..")); p += 2)
        if ((p == path || p[-1] == '/') && (p[2] == 0 || p[2] == '/'))
            return true;
    return false;
}

/* Host paths: absolute or relative, at most PATH_MAX, opened as asked.
 * Jailed, a path names a file inside the jail's root, where ".." could
 * not climb out anyway: refused, so a client learns its path is wrong. */
static int check_path(struct req *rq, const char *what, const char *path, int mode)
{
    if (!*path || strlen(path) >= PATH_MAX)
        return fail(rq, "%s: the path is empty or longer than %d bytes.", what, PATH_MAX - 1);
    if (rq->api->jailed && climbs(path))
        return fail(rq, "%s: %.300s has a '..' component: in the jail every path is inside "
                        "its root; name the file from there.", what, path);
    if (mode >= 0 && access(path, mode) != 0)
        return fail(rq, "%s: cannot open %.300s: %s.", what, path, strerror(errno));
    return 0;
}

/* Firecracker's ids: 1 to 64 of [A-Za-z0-9_]. */
static int check_id(struct req *rq, const char *what, const char *id)
{
    size_t n = strlen(id);
    bool ok = n > 0 && n < FC_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
             (id[i] >= '0' && id[i] <= '9') || id[i] == '_';
    return ok ? 0
              : fail(rq, "Invalid %s ID: it must be 1 to %d letters, digits or underscores.",
                     what, FC_ID_MAX - 1);
}

/* A rate limiter: kvmc has none, so only an empty one passes. */
static int no_rate_limiter(struct req *rq, const json_t *obj, const char *name)
{
    const json_t *rl = json_object_get(obj, name);
    if (!rl || json_is_null(rl))
        return 0;
    const char *key;
    json_t *bucket;
    json_object_foreach((json_t *)rl, key, bucket) {
        if (strcmp(key, "bandwidth") && strcmp(key, "ops"))
            return fail(rq, DESERIALIZE "unknown field `%.64s` in `%s`.", key, name);
        if (!json_is_null(bucket))
            return fail(rq, "`%s`: kvmc does not implement rate limiters.", name);
    }
    return 0;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void replace_str(char **slot, const char *s)
{
    free(*slot);
    *slot = dup_or_null(s);
}

/* ------------------------------------------------------------ responses */

static int respond_json(struct req *rq, json_t *v)
{
    rq->resp = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    rq->status = rq->resp ? 200 : 500;
    if (!rq->resp)
        snprintf(rq->fault, sizeof(rq->fault), "out of memory");
    return rq->resp ? 0 : -1;
}

static const char *state_name(enum fc_state s)
{
    return s == FC_RUNNING ? "Running" : s == FC_PAUSED ? "Paused" : "Not started";
}

static json_t *machine_json(const struct fc_machine *m)
{
    return json_pack("{s:I, s:I, s:b, s:b, s:s}", "vcpu_count", (json_int_t)m->vcpus,
                     "mem_size_mib", (json_int_t)m->mem_mib, "smt", 0, "track_dirty_pages",
                     m->track_dirty_pages, "huge_pages", m->hugepages ? "2M" : "None");
}

/* ------------------------------------------------------------ handlers */

static int get_instance(struct req *rq)
{
    return respond_json(rq, json_pack("{s:s, s:s, s:s, s:s}", "app_name", "Firecracker", "id",
                                      rq->api->id, "state", state_name(rq->api->state),
                                      "vmm_version", FC_COMPAT_VERSION));
}

static int get_version(struct req *rq)
{
    return respond_json(rq, json_pack("{s:s}", "firecracker_version", FC_COMPAT_VERSION));
}

static int get_machine(struct req *rq) { return respond_json(rq, machine_json(&rq->api->m)); }

static int put_machine(struct req *rq)
{
    static const struct field f[] = {
        {"vcpu_count", F_INT, true}, {"mem_size_mib", F_INT, true}, {"smt", F_BOOL, false},
        {"track_dirty_pages", F_BOOL, false}, {"cpu_template", F_STR, false},
        {"huge_pages", F_STR, false}};
    bool patch = rq->verb == V_PATCH;
    struct field fields[sizeof(f) / sizeof(f[0])];
    memcpy(fields, f, sizeof(f));
    if (patch)
        fields[0].required = fields[1].required = false;
    if (pre_boot(rq) || check_fields(rq, rq->body, fields, sizeof(f) / sizeof(f[0])))
        return -1;
    struct fc_machine *m = &rq->api->m;
    long long vcpus = patch ? m->vcpus : 1, mem = patch ? m->mem_mib : 128;
    if (get_int(rq, rq->body, "vcpu_count", 1, 32, &vcpus) ||
        get_int(rq, rq->body, "mem_size_mib", 1, 1ll << 22, &mem))
        return -1;
    if (get_bool(rq->body, "smt", false))
        return fail(rq, "`smt`: kvmc presents each vCPU as a core of its own; SMT is not "
                        "supported.");
    const char *tmpl = get_str(rq->body, "cpu_template");
    if (tmpl && strcmp(tmpl, "None"))
        return fail(rq, "`cpu_template` %.64s: kvmc passes the host's CPUID through; only "
                        "\"None\" is supported.", tmpl);
    const char *huge = get_str(rq->body, "huge_pages");
    bool hugepages = patch ? m->hugepages : false;
    if (huge && !strcmp(huge, "2M"))
        hugepages = true;
    else if (huge && !strcmp(huge, "None"))
        hugepages = false;
    else if (huge)
        return fail(rq, "`huge_pages` %.64s: kvmc supports \"None\" and \"2M\".", huge);
    if (hugepages && mem % 2)
        return fail(rq, "`mem_size_mib` %lld: with 2M huge pages it must be even.", mem);
    m->vcpus = (unsigned)vcpus;
    m->mem_mib = (unsigned)mem;
    m->hugepages = hugepages;
    m->track_dirty_pages = get_bool(rq->body, "track_dirty_pages",
                                    patch ? m->track_dirty_pages : false);
    rq->api->boot_configured = true;
    return 0;
}

static int put_boot(struct req *rq)
{
    static const struct field f[] = {{"kernel_image_path", F_STR, true},
                                     {"initrd_path", F_STR, false},
                                     {"boot_args", F_STR, false}};
    if (pre_boot(rq) || check_fields(rq, rq->body, f, 3))
        return -1;
    const char *kernel = get_str(rq->body, "kernel_image_path");
    const char *initrd = get_str(rq->body, "initrd_path");
    const char *args = get_str(rq->body, "boot_args");
    if (check_path(rq, "kernel_image_path", kernel, R_OK) ||
        (initrd && check_path(rq, "initrd_path", initrd, R_OK)))
        return -1;
    if (args && strlen(args) > 4095)
        return fail(rq, "`boot_args` is %zu bytes: at most 4095.", strlen(args));
    struct fc_machine *m = &rq->api->m;
    replace_str(&m->kernel, kernel);
    replace_str(&m->initrd, initrd);
    replace_str(&m->boot_args, args);
    rq->api->boot_configured = true;
    return 0;
}

static int path_id_matches(struct req *rq, const char *field)
{
    const char *body_id = get_str(rq->body, field);
    if (body_id && strcmp(body_id, rq->id))
        return fail(rq, "The id from the path [%.64s] does not match the id from the body "
                        "[%.64s]!", rq->id, body_id);
    return check_id(rq, field[0] == 'd' ? "drive" : "interface", rq->id);
}

static struct fc_drive *find_drive(struct fc_machine *m, const char *id)
{
    for (unsigned i = 0; i < m->ndrives; i++)
        if (!strcmp(m->drives[i].id, id))
            return &m->drives[i];
    return NULL;
}

static void free_drive(struct fc_drive *d)
{
    free(d->path);
    free(d->partuuid);
}

static int put_drive(struct req *rq)
{
    static const struct field f[] = {
        {"drive_id", F_STR, true}, {"path_on_host", F_STR, false},
        {"is_root_device", F_BOOL, true}, {"is_read_only", F_BOOL, false},
        {"partuuid", F_STR, false}, {"cache_type", F_STR, false},
        {"rate_limiter", F_OBJ, false}, {"io_engine", F_STR, false}, {"socket", F_STR, false}};
    if (pre_boot(rq) || check_fields(rq, rq->body, f, sizeof(f) / sizeof(f[0])) ||
        path_id_matches(rq, "drive_id") || no_rate_limiter(rq, rq->body, "rate_limiter"))
        return -1;
    if (has(rq->body, "socket"))
        return fail(rq, "`socket`: kvmc does not implement vhost-user-block.");
    const char *path = get_str(rq->body, "path_on_host");
    if (!path)
        return fail(rq, DESERIALIZE "missing field `path_on_host`.");
    bool ro = get_bool(rq->body, "is_read_only", false);
    bool root = get_bool(rq->body, "is_root_device", false);
    const char *cache = get_str(rq->body, "cache_type");
    const char *engine = get_str(rq->body, "io_engine");
    const char *partuuid = get_str(rq->body, "partuuid");
    if (cache && strcmp(cache, "Unsafe") && strcmp(cache, "Writeback"))
        return fail(rq, "`cache_type` %.64s: it is \"Unsafe\" or \"Writeback\".", cache);
    if (engine && strcmp(engine, "Sync") && strcmp(engine, "Async"))
        return fail(rq, "`io_engine` %.64s: it is \"Sync\" or \"Async\".", engine);
    if (partuuid && (strlen(partuuid) > 64 || strpbrk(partuuid, " \t\n")))
        return fail(rq, "`partuuid`: at most 64 characters, no spaces.");
    if (check_path(rq, "path_on_host", path, ro ? R_OK : R_OK | W_OK))
        return -1;
    struct fc_machine *m = &rq->api->m;
    struct fc_drive *old = find_drive(m, rq->id);
    if (root)
        for (unsigned i = 0; i < m->ndrives; i++)
            if (m->drives[i].root && &m->drives[i] != old)
                return fail(rq, "A root block device already exists!");
    if (!old && m->ndrives == FC_MAX_DRIVES)
        return fail(rq, "kvmc attaches at most %d drives.", FC_MAX_DRIVES);
    struct fc_drive d = {.root = root, .read_only = ro};
    snprintf(d.id, sizeof(d.id), "%s", rq->id);
    d.path = strdup(path);
    d.partuuid = dup_or_null(partuuid);
    if (old) {
        free_drive(old);
        memmove(old, old + 1, (size_t)(m->drives + m->ndrives - old - 1) * sizeof(*old));
        m->ndrives--;
    }
    /* The root device is the first: /dev/vda. */
    unsigned at = root ? 0 : m->ndrives;
    memmove(&m->drives[at + 1], &m->drives[at], (m->ndrives - at) * sizeof(d));
    m->drives[at] = d;
    m->ndrives++;
    rq->api->boot_configured = true;
    return 0;
}

static int patch_drive(struct req *rq)
{
    static const struct field f[] = {{"drive_id", F_STR, true}, {"path_on_host", F_STR, false},
                                     {"rate_limiter", F_OBJ, false}};
    if (post_boot(rq) || check_fields(rq, rq->body, f, 3) || path_id_matches(rq, "drive_id") ||
        no_rate_limiter(rq, rq->body, "rate_limiter"))
        return -1;
    struct fc_drive *d = find_drive(&rq->api->m, rq->id);
    if (!d)
        return fail(rq, "Could not find a drive with the id %.64s.", rq->id);
    const char *path = get_str(rq->body, "path_on_host");
    if (path && strcmp(path, d->path))
        return fail(rq, "`path_on_host`: kvmc cannot change a drive's backing file while the "
                        "guest runs.");
    return 0;
}

static bool valid_mac(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    return true;
}

/* A tap's name (IFNAMSIZ), or "user" with kvmc's options after a comma. */
static bool valid_host_dev(const char *s)
{
    if (!strncmp(s, "user", 4) && (s[4] == 0 || s[4] == ','))
        return strlen(s) < 1024;
    size_t n = strlen(s);
    if (n == 0 || n > 15)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("_.-", s[i])))
            return false;
    return true;
}

static int put_net(struct req *rq)
{
    static const struct field f[] = {
        {"iface_id", F_STR, true}, {"host_dev_name", F_STR, true}, {"guest_mac", F_STR, false},
        {"rx_rate_limiter", F_OBJ, false}, {"tx_rate_limiter", F_OBJ, false},
        {"mtu", F_INT, false}};
    if (pre_boot(rq) || check_fields(rq, rq->body, f, sizeof(f) / sizeof(f[0])) ||
        path_id_matches(rq, "iface_id") || no_rate_limiter(rq, rq->body, "rx_rate_limiter") ||
        no_rate_limiter(rq, rq->body, "tx_rate_limiter"))
        return -1;
    if (has(rq->body, "mtu"))
        return fail(rq, "`mtu`: kvmc's virtio-net does not advertise an MTU.");
    const char *dev = get_str(rq->body, "host_dev_name");
    const char *mac = get_str(rq->body, "guest_mac");
    if (!valid_host_dev(dev))
        return fail(rq, "`host_dev_name` %.64s: a tap's name (1 to 15 of [A-Za-z0-9_.-]), or "
                        "\"user\" for kvmc's user networking.", dev);
    if (mac && !valid_mac(mac))
        return fail(rq, "`guest_mac` %.64s: not a MAC address (aa:bb:cc:dd:ee:ff).", mac);
    struct fc_machine *m = &rq->api->m;
    unsigned at = m->nnets;
    for (unsigned i = 0; i < m->nnets; i++) {
        if (!strcmp(m->nets[i].id, rq->id)) {
            at = i;
            continue;
        }
        if (!strcmp(m->nets[i].host_dev, dev) && strncmp(dev, "user", 4))
            return fail(rq, "The host device name %.64s is already in use.", dev);
        if (mac && m->nets[i].mac && !strcasecmp(m->nets[i].mac, mac))
            return fail(rq, "The MAC address %s is already in use.", mac);
    }
    if (at == FC_MAX_NETS)
        return fail(rq, "kvmc attaches at most %d network interfaces.", FC_MAX_NETS);
    struct fc_net *n = &m->nets[at];
    if (at == m->nnets) {
        memset(n, 0, sizeof(*n));
        m->nnets++;
    }
    snprintf(n->id, sizeof(n->id), "%s", rq->id);
    replace_str(&n->host_dev, dev);
    replace_str(&n->mac, mac);
    rq->api->boot_configured = true;
    return 0;
}

static int patch_net(struct req *rq)
{
    static const struct field f[] = {{"iface_id", F_STR, true},
                                     {"rx_rate_limiter", F_OBJ, false},
                                     {"tx_rate_limiter", F_OBJ, false}};
    if (post_boot(rq) || check_fields(rq, rq->body, f, 3) || path_id_matches(rq, "iface_id") ||
        no_rate_limiter(rq, rq->body, "rx_rate_limiter") ||
        no_rate_limiter(rq, rq->body, "tx_rate_limiter"))
        return -1;
    for (unsigned i = 0; i < rq->api->m.nnets; i++)
        if (!strcmp(rq->api->m.nets[i].id, rq->id))
            return 0;
    return fail(rq, "Could not find a network interface with the id %.64s.", rq->id);
}

static int put_vsock(struct req *rq)
{
    static const struct field f[] = {{"guest_cid", F_INT, true}, {"uds_path", F_STR, true},
                                     {"vsock_id", F_STR, false}};
    long long cid = 0;
    if (pre_boot(rq) || check_fields(rq, rq->body, f, 3) ||
        get_int(rq, rq->body, "guest_cid", 3, 0xfffffffell, &cid))
        return -1;
    const char *uds = get_str(rq->body, "uds_path");
    if (check_path(rq, "uds_path", uds, -1))
        return -1;
    if (strlen(uds) >= 108 - 12) /* sun_path, with room for "_<port>" */
        return fail(rq, "`uds_path` is %zu bytes: a Unix socket's path has room for 95.",
                    strlen(uds));
    struct fc_machine *m = &rq->api->m;
    m->vsock = true;
    m->vsock_cid = (uint32_t)cid;
    replace_str(&m->vsock_uds, uds);
    rq->api->boot_configured = true;
    return 0;
}

static int put_entropy(struct req *rq)
{
    static const struct field f[] = {{"rate_limiter", F_OBJ, false}};
    if (pre_boot(rq) || check_fields(rq, rq->body, f, 1) ||
        no_rate_limiter(rq, rq->body, "rate_limiter"))
        return -1;
    rq->api->m.entropy = true;
    rq->api->boot_configured = true;
    return 0;
}

static int put_logger(struct req *rq)
{
    static const struct field f[] = {
        {"log_path", F_STR, false}, {"level", F_STR, false}, {"show_level", F_BOOL, false},
        {"show_log_origin", F_BOOL, false}, {"module", F_STR, false}};
    if (check_fields(rq, rq->body, f, sizeof(f) / sizeof(f[0])))
        return -1;
    const char *path = get_str(rq->body, "log_path");
    const char *level = get_str(rq->body, "level");
    if (level && fc_output_level(level) < 0)
        return fail(rq, "`level` %.64s: it is one of Error, Warning, Info, Debug, Trace, Off.",
                    level);
    if (path && check_path(rq, "log_path", path, -1))
        return -1;
    char err[FAULT_MAX];
    int fd = path ? rq->api->be.open_output(rq->api->be.ctx, path, err, sizeof(err)) : -1;
    if (path && fd < 0)
        return fail(rq, "log_path: %s.", err);
    if (fd >= 0)
        fc_output_set_fd(&rq->api->log, fd);
    fc_output_set_log(&rq->api->log, level, get_bool(rq->body, "show_level", false));
    json_decref(rq->api->logger_body);
    rq->api->logger_body = json_incref(rq->body);
    return 0;
}

static int put_metrics(struct req *rq)
{
    static const struct field f[] = {{"metrics_path", F_STR, true}, {"emit_id", F_BOOL, false},
                                     {"properties", F_OBJ, false}};
    if (check_fields(rq, rq->body, f, 3) ||
        check_path(rq, "metrics_path", get_str(rq->body, "metrics_path"), -1))
        return -1;
    if (rq->api->metrics.fd >= 0)
        return fail(rq, "Reinitialization of metrics not allowed.");
    char err[FAULT_MAX];
    int fd = rq->api->be.open_output(rq->api->be.ctx, get_str(rq->body, "metrics_path"), err,
                                     sizeof(err));
    if (fd < 0)
        return fail(rq, "metrics_path: %s.", err);
    fc_output_set_fd(&rq->api->metrics, fd);
    json_decref(rq->api->metrics_body);
    rq->api->metrics_body = json_incref(rq->body);
    return 0;
}

static int backend_failed(struct req *rq, const char *what, const char *err)
{
    fc_api_log(rq->api, true, "%s: %s", what, err);
    return fail(rq, "%s: %s", what, err);
}

static int instance_start(struct req *rq)
{
    struct fc_api *api = rq->api;
    if (pre_boot(rq))
        return -1;
    if (!api->m.kernel)
        return fail(rq, "Cannot start microvm without kernel configuration: PUT /boot-source "
                        "first.");
    char err[FAULT_MAX - 64];
    if (api->be.start(api->be.ctx, &api->m, err, sizeof(err)))
        return backend_failed(rq, "Cannot start the microVM", err);
    api->state = FC_RUNNING;
    fc_api_log(api, false, "microVM %s started", api->id);
    return 0;
}

static void flush_metrics_locked(struct fc_api *api);

static int put_actions(struct req *rq)
{
    static const struct field f[] = {{"action_type", F_STR, true}};
    if (check_fields(rq, rq->body, f, 1))
        return -1;
    const char *action = get_str(rq->body, "action_type");
    if (!strcmp(action, "InstanceStart"))
        return instance_start(rq);
    if (!strcmp(action, "FlushMetrics")) {
        if (rq->api->metrics.fd < 0)
            return fail(rq, "The metrics system is not initialized: PUT /metrics first.");
        flush_metrics_locked(rq->api);
        return 0;
    }
    if (!strcmp(action, "SendCtrlAltDel")) {
        char err[FAULT_MAX - 64];
        if (post_boot(rq))
            return -1;
        if (rq->api->be.ctrl_alt_del(rq->api->be.ctx, err, sizeof(err)))
            return backend_failed(rq, "SendCtrlAltDel", err);
        return 0;
    }
    return fail(rq, DESERIALIZE "unknown variant `%.64s`, expected one of `FlushMetrics`, "
                                "`InstanceStart`, `SendCtrlAltDel`.", action);
}

static int patch_vm(struct req *rq)
{
    static const struct field f[] = {{"state", F_STR, true}};
    if (check_fields(rq, rq->body, f, 1))
        return -1;
    const char *state = get_str(rq->body, "state");
    bool pause = !strcmp(state, "Paused");
    if (!pause && strcmp(state, "Resumed"))
        return fail(rq, DESERIALIZE "unknown variant `%.64s`, expected `Paused` or `Resumed`.",
                    state);
    if (post_boot(rq))
        return -1;
    struct fc_api *api = rq->api;
    enum fc_state want = pause ? FC_PAUSED : FC_RUNNING;
    if (api->state == want)
        return 0; /* as Firecracker: asking for the state it is in is fine */
    char err[FAULT_MAX - 64];
    if ((pause ? api->be.pause : api->be.resume)(api->be.ctx, err, sizeof(err)))
        return backend_failed(rq, pause ? "Cannot pause the microVM" : "Cannot resume the "
                                                                       "microVM", err);
    api->state = want;
    fc_api_log(api, false, "microVM %s", pause ? "paused" : "resumed");
    return 0;
}

/* The configuration as GET /vm/config gives it, and as a snapshot keeps
 * it (FC_SNAPSHOT_CONFIG) to be loaded again through the same handlers. */
static json_t *vm_config_json(const struct fc_api *api)
{
    const struct fc_machine *m = &api->m;
    json_t *drives = json_array(), *nets = json_array();
    for (unsigned i = 0; i < m->ndrives; i++) {
        const struct fc_drive *d = &m->drives[i];
        json_t *o = json_pack("{s:s, s:s, s:b, s:b}", "drive_id", d->id, "path_on_host",
                              d->path, "is_root_device", d->root, "is_read_only", d->read_only);
        if (d->partuuid)
            json_object_set_new(o, "partuuid", json_string(d->partuuid));
        json_array_append_new(drives, o);
    }
    for (unsigned i = 0; i < m->nnets; i++) {
        json_t *o = json_pack("{s:s, s:s}", "iface_id", m->nets[i].id, "host_dev_name",
                              m->nets[i].host_dev);
        if (m->nets[i].mac)
            json_object_set_new(o, "guest_mac", json_string(m->nets[i].mac));
        json_array_append_new(nets, o);
    }
    json_t *cfg = json_pack("{s:o, s:o, s:o}", "machine-config", machine_json(m), "drives",
                            drives, "network-interfaces", nets);
    if (m->kernel) {
        json_t *boot = json_pack("{s:s}", "kernel_image_path", m->kernel);
        if (m->initrd)
            json_object_set_new(boot, "initrd_path", json_string(m->initrd));
        if (m->boot_args)
            json_object_set_new(boot, "boot_args", json_string(m->boot_args));
        json_object_set_new(cfg, "boot-source", boot);
    }
    if (m->vsock)
        json_object_set_new(cfg, "vsock", json_pack("{s:I, s:s}", "guest_cid",
                                                    (json_int_t)m->vsock_cid, "uds_path",
                                                    m->vsock_uds));
    if (m->entropy)
        json_object_set_new(cfg, "entropy", json_object());
    if (api->mmds_config)
        json_object_set(cfg, "mmds-config", api->mmds_config);
    if (api->logger_body)
        json_object_set(cfg, "logger", api->logger_body);
    if (api->metrics_body)
        json_object_set(cfg, "metrics", api->metrics_body);
    return cfg;
}

static int get_vm_config(struct req *rq) { return respond_json(rq, vm_config_json(rq->api)); }

/* ------------------------------------------------------------ snapshots */

/* Inside a kvmc snapshot directory: the configuration the API built,
 * besides kvmc's own "state" and "memory". */
#define FC_SNAPSHOT_CONFIG "firecracker-config.json"

int fc_snapshot_finish(const char *dir, const char *config, const char *mem, char *err,
                       size_t errlen)
{
    char path[PATH_MAX + 64], memory[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, FC_SNAPSHOT_CONFIG);
    FILE *f = fopen(path, "we");
    bool written = f && fputs(config, f) >= 0;
    if (f && fclose(f) != 0)
        written = false;
    if (!written) {
        snprintf(err, errlen, "writing %.300s: %s", path, strerror(errno));
        return -1;
    }
    /* The memory file the client names is kvmc's own, linked there. */
    snprintf(memory, sizeof(memory), "%s/memory", dir);
    unlink(mem);
    if (link(memory, mem) != 0) {
        char abs[PATH_MAX];
        if (errno != EXDEV || !realpath(memory, abs) || symlink(abs, mem) != 0) {
            snprintf(err, errlen, "linking %.300s to %.300s: %s", mem, memory, strerror(errno));
            return -1;
        }
    }
    return 0;
}

char *fc_snapshot_read_config(const char *dir, const char *mem, char *err, size_t errlen)
{
    char path[PATH_MAX + 64];
    struct stat want, got;
    snprintf(path, sizeof(path), "%s/memory", dir);
    if (stat(path, &want) || stat(mem, &got) || want.st_dev != got.st_dev ||
        want.st_ino != got.st_ino) {
        snprintf(err, errlen, "%.300s is not the memory of the snapshot %.300s: kvmc keeps a "
                 "snapshot's memory in its directory (%.300s)", mem, dir, path);
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, FC_SNAPSHOT_CONFIG);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!cfg) {
        snprintf(err, errlen, "%.300s: %s (is %.300s a snapshot kvmc-firecracker wrote?)", path,
                 jerr.text, dir);
        return NULL;
    }
    char *text = json_dumps(cfg, JSON_COMPACT);
    json_decref(cfg);
    if (!text)
        snprintf(err, errlen, "out of memory");
    return text;
}

static int put_snapshot_create(struct req *rq)
{
    static const struct field f[] = {{"snapshot_path", F_STR, true},
                                     {"mem_file_path", F_STR, true},
                                     {"snapshot_type", F_STR, false},
                                     {"version", F_STR, false}};
    struct fc_api *api = rq->api;
    if (check_fields(rq, rq->body, f, 4) || post_boot(rq))
        return -1;
    const char *dir = get_str(rq->body, "snapshot_path");
    const char *mem = get_str(rq->body, "mem_file_path");
    const char *type = get_str(rq->body, "snapshot_type");
    if (type && strcmp(type, "Full") && strcmp(type, "Diff"))
        return fail(rq, DESERIALIZE "unknown variant `%.64s`, expected `Full` or `Diff`.", type);
    if (check_path(rq, "snapshot_path", dir, -1) || check_path(rq, "mem_file_path", mem, -1))
        return -1;
    if (api->state != FC_PAUSED)
        return fail(rq, "Cannot create a snapshot: the microVM is not paused (PATCH /vm "
                        "{\"state\": \"Paused\"} first).");
    if (!strcmp(dir, mem))
        return fail(rq, "snapshot_path and mem_file_path are the same path.");
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return fail(rq, "snapshot_path %.300s is a file: kvmc writes a snapshot directory "
                        "there (remove the file first).", dir);
    if (lstat(mem, &st) == 0 && S_ISDIR(st.st_mode))
        return fail(rq, "mem_file_path %.300s is a directory.", mem);
    /* The configuration goes with it, to build the same VM on load. */
    json_t *cfg = vm_config_json(api);
    json_object_del(cfg, "logger"); /* this process's, not the VM's */
    json_object_del(cfg, "metrics");
    char *config = json_dumps(cfg, JSON_INDENT(2));
    json_decref(cfg);
    if (!config)
        return fail(rq, "out of memory");
    char err[FAULT_MAX - 64];
    int rc = api->be.snapshot(api->be.ctx, dir, type && !strcmp(type, "Diff"), config, mem, err,
                              sizeof(err));
    free(config);
    if (rc)
        return backend_failed(rq, "Cannot create the snapshot", err);
    fc_api_log(api, false, "snapshot written to %s", dir);
    return 0;
}

static int apply_section(struct fc_api *api, const char *method, const char *path,
                         json_t *body, char *err, size_t errlen);

/* Builds the configuration from a snapshot's (or a --config-file's) JSON
 * through the handlers. */
static int apply_config(struct fc_api *api, json_t *cfg, bool with_boot, char *err,
                        size_t errlen)
{
    static const char *const known[] = {"machine-config", "boot-source", "drives",
                                        "network-interfaces", "vsock", "entropy", "logger",
                                        "metrics", "mmds-config", "balloon", "cpu-config"};
    if (!json_is_object(cfg)) {
        snprintf(err, errlen, "the configuration is not a JSON object");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        size_t i = 0;
        while (i < sizeof(known) / sizeof(known[0]) && strcmp(known[i], key))
            i++;
        if (i == sizeof(known) / sizeof(known[0])) {
            snprintf(err, errlen, "unknown section `%.64s`", key);
            return -1;
        }
        if (json_is_null(v))
            continue;
        if (!strcmp(key, "balloon") || !strcmp(key, "cpu-config")) {
            snprintf(err, errlen, "`%s`: kvmc does not implement it", key);
            return -1;
        }
    }
    /* The order matters: interfaces before the metadata service's config. */
    static const struct { const char *key, *path; } singles[] = {
        {"logger", "/logger"}, {"metrics", "/metrics"}, {"machine-config", "/machine-config"},
        {"boot-source", "/boot-source"}, {"vsock", "/vsock"}, {"entropy", "/entropy"}};
    for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++) {
        json_t *s = json_object_get(cfg, singles[i].key);
        if (!s || json_is_null(s) || (!with_boot && !strcmp(singles[i].key, "boot-source")))
            continue;
        if (apply_section(api, "PUT", singles[i].path, s, err, errlen))
            return -1;
    }
    static const struct { const char *key, *prefix, *id; } lists[] = {
        {"drives", "/drives/", "drive_id"}, {"network-interfaces", "/network-interfaces/",
                                             "iface_id"}};
    for (size_t l = 0; l < 2; l++) {
        json_t *arr = json_object_get(cfg, lists[l].key);
        if (!arr || json_is_null(arr))
            continue;
        if (!json_is_array(arr)) {
            snprintf(err, errlen, "`%s` is not an array", lists[l].key);
            return -1;
        }
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item) {
            const char *id = json_is_object(item) ? get_str(item, lists[l].id) : NULL;
            char path[128];
            snprintf(path, sizeof(path), "%s%.64s", lists[l].prefix, id ? id : "");
            if (apply_section(api, "PUT", path, item, err, errlen))
                return -1;
        }
    }
    json_t *mmds = json_object_get(cfg, "mmds-config");
    if (mmds && !json_is_null(mmds) && apply_section(api, "PUT", "/mmds/config", mmds, err, errlen))
        return -1;
    return 0;
}

static void machine_free(struct fc_machine *m);
static void machine_defaults(struct fc_machine *m);

static int put_snapshot_load(struct req *rq)
{
    static const struct field f[] = {
        {"snapshot_path", F_STR, true}, {"mem_file_path", F_STR, false},
        {"mem_backend", F_OBJ, false}, {"enable_diff_snapshots", F_BOOL, false},
        {"track_dirty_pages", F_BOOL, false}, {"resume_vm", F_BOOL, false},
        {"network_overrides", F_ARR, false}, {"vsock_override", F_OBJ, false}};
    struct fc_api *api = rq->api;
    if (check_fields(rq, rq->body, f, sizeof(f) / sizeof(f[0])) || pre_boot(rq))
        return -1;
    if (api->boot_configured)
        return fail(rq, "Loading a microVM snapshot not allowed after configuring boot-specific "
                        "resources.");
    const char *dir = get_str(rq->body, "snapshot_path");
    const char *mem = get_str(rq->body, "mem_file_path");
    const json_t *backend = json_object_get(rq->body, "mem_backend");
    if (has(rq->body, "mem_backend")) {
        static const struct field bf[] = {{"backend_type", F_STR, true},
                                          {"backend_path", F_STR, true}};
        if (mem)
            return fail(rq, "Only one of mem_file_path and mem_backend may be given.");
        if (check_fields(rq, backend, bf, 2))
            return -1;
        if (strcmp(get_str(backend, "backend_type"), "File"))
            return fail(rq, "mem_backend: kvmc loads memory from a file; backend_type %.32s is "
                            "not supported.", get_str(backend, "backend_type"));
        mem = get_str(backend, "backend_path");
    }
    if (!mem)
        return fail(rq, "Either mem_file_path or mem_backend must be given.");
    if (check_path(rq, "snapshot_path", dir, R_OK) || check_path(rq, "memory file", mem, R_OK))
        return -1;
    char err[FAULT_MAX - 128];
    char *text = api->be.read_snapshot_config(api->be.ctx, dir, mem, err, sizeof(err));
    if (!text)
        return fail(rq, "%s.", err);
    json_t *cfg = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return fail(rq, "%.300s: the snapshot's configuration is not a JSON object.", dir);
    }
    /* The overrides go into the configuration before it is applied. */
    json_t *overrides = json_object_get(rq->body, "network_overrides");
    size_t i;
    json_t *o;
    json_array_foreach(overrides, i, o) {
        static const struct field of[] = {{"iface_id", F_STR, true},
                                          {"host_dev_name", F_STR, true}};
        if (check_fields(rq, o, of, 2)) {
            json_decref(cfg);
            return -1;
        }
        json_t *nets = json_object_get(cfg, "network-interfaces"), *n;
        size_t j;
        bool found = false;
        json_array_foreach(nets, j, n) {
            if (json_is_object(n) && get_str(n, "iface_id") &&
                !strcmp(get_str(n, "iface_id"), get_str(o, "iface_id"))) {
                json_object_set(n, "host_dev_name", json_object_get(o, "host_dev_name"));
                found = true;
            }
        }
        if (!found) {
            json_decref(cfg);
            return fail(rq, "network_overrides: the snapshot has no interface %.64s.",
                        get_str(o, "iface_id"));
        }
    }
    const json_t *vsock_override = json_object_get(rq->body, "vsock_override");
    if (vsock_override && !json_is_null(vsock_override)) {
        static const struct field vf[] = {{"uds_path", F_STR, true}};
        json_t *vsock = json_object_get(cfg, "vsock");
        if (check_fields(rq, vsock_override, vf, 1) || !json_is_object(vsock)) {
            json_decref(cfg);
            return rq->status == 400 ? -1 : fail(rq, "vsock_override: the snapshot has no vsock.");
        }
        json_object_set(vsock, "uds_path", json_object_get(vsock_override, "uds_path"));
    }
    int rc = apply_config(api, cfg, false, err, sizeof(err));
    json_decref(cfg);
    if (rc) {
        machine_free(&api->m);
        machine_defaults(&api->m);
        return fail(rq, "Cannot load the snapshot's configuration: %s.", err);
    }
    bool resume = get_bool(rq->body, "resume_vm", false);
    if (api->be.load(api->be.ctx, &api->m, dir, resume, err, sizeof(err)))
        return backend_failed(rq, "Cannot load the snapshot", err);
    api->state = resume ? FC_RUNNING : FC_PAUSED;
    fc_api_log(api, false, "snapshot %s loaded", dir);
    return 0;
}

/* ------------------------------------------------------------ metadata */

/* RFC 7396: members of patch replace target's; null removes. Bounded by
 * the parser's depth limit. */
static json_t *merge_patch(json_t *target, json_t *patch)
{
    if (!json_is_object(patch))
        return json_incref(patch);
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    const char *key;
    json_t *v;
    json_object_foreach(patch, key, v) {
        if (json_is_null(v))
            json_object_del(out, key);
        else
            json_object_set_new(out, key, merge_patch(json_object_get(out, key), v));
    }
    return out;
}

static int mmds_fits(struct req *rq, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    size_t n = text ? strlen(text) : SIZE_MAX;
    free(text);
    if (n > FC_MMDS_LIMIT)
        return fail(rq, "The MMDS data store would hold %zu bytes: its limit is %d.", n,
                    FC_MMDS_LIMIT);
    return 0;
}

static int mmds(struct req *rq)
{
    struct fc_api *api = rq->api;
    if (rq->verb == V_GET) {
        if (!api->mmds) {
            rq->status = 404;
            snprintf(rq->fault, sizeof(rq->fault), "The MMDS data store is not initialized.");
            return -1;
        }
        return respond_json(rq, json_incref(api->mmds));
    }
    if (!json_is_object(rq->body))
        return fail(rq, "The MMDS data store holds a JSON object.");
    json_t *next;
    if (rq->verb == V_PUT) {
        next = json_incref(rq->body);
    } else {
        if (!api->mmds)
            return fail(rq, "The MMDS data store is not initialized: PUT /mmds first.");
        next = merge_patch(api->mmds, rq->body);
    }
    if (mmds_fits(rq, next)) {
        json_decref(next);
        return -1;
    }
    json_decref(api->mmds);
    api->mmds = next;
    return 0;
}

static int put_mmds_config(struct req *rq)
{
    static const struct field f[] = {{"network_interfaces", F_ARR, true}, {"version", F_STR, false},
                                     {"ipv4_address", F_STR, false},
                                     {"imds_compat", F_BOOL, false}};
    if (pre_boot(rq) || check_fields(rq, rq->body, f, 4))
        return -1;
    const char *version = get_str(rq->body, "version");
    if (version && strcmp(version, "V1") && strcmp(version, "V2"))
        return fail(rq, DESERIALIZE "unknown variant `%.16s`, expected `V1` or `V2`.", version);
    const char *addr = get_str(rq->body, "ipv4_address");
    unsigned a, b, c, d;
    char tail;
    if (addr && (sscanf(addr, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a != 169 ||
                 b != 254 || c > 254 || d > 255 || (c == 0 && d == 0)))
        return fail(rq, "`ipv4_address` %.32s: not a link-local IPv4 address (169.254.x.y).",
                    addr);
    json_t *ifaces = json_object_get(rq->body, "network_interfaces"), *id;
    if (json_array_size(ifaces) == 0)
        return fail(rq, "The list of network interface IDs that allow forwarding MMDS "
                        "requests is empty.");
    size_t i;
    json_array_foreach(ifaces, i, id) {
        bool found = false;
        for (unsigned n = 0; json_is_string(id) && n < rq->api->m.nnets; n++)
            found |= !strcmp(rq->api->m.nets[n].id, json_string_value(id));
        if (!found)
            return fail(rq, "Invalid network interface ID - not found.");
    }
    json_decref(rq->api->mmds_config);
    rq->api->mmds_config = json_incref(rq->body);
    return 0;
}

static int not_implemented(struct req *rq, const char *what)
{
    return fail(rq, "kvmc does not implement %s.", what);
}

/* ------------------------------------------------------------ routing */

static int apply_section(struct fc_api *api, const char *method, const char *path,
                         json_t *body, char *err, size_t errlen)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY), *resp = NULL;
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* The lock is recursive: this runs inside a request or fc_api_load. */
    int status = fc_api_handle(api, method, path, text, strlen(text), &resp);
    free(text);
    if (status >= 300) {
        json_t *v = resp ? json_loads(resp, 0, NULL) : NULL;
        const char *fault = v ? get_str(v, "fault_message") : NULL;
        snprintf(err, errlen, "%s: %s", path, fault ? fault : "refused");
        json_decref(v);
    }
    free(resp);
    return status >= 300 ? -1 : 0;
}

struct route_entry {
    const char *path; /* a trailing '*' takes one path segment: the {id} */
    enum route route;
    int (*get)(struct req *), (*put)(struct req *), (*patch)(struct req *);
};

static const struct route_entry routes[] = {
    {"/", R_INSTANCE, get_instance, NULL, NULL},
    {"/version", R_VERSION, get_version, NULL, NULL},
    {"/machine-config", R_MACHINE, get_machine, put_machine, put_machine},
    {"/boot-source", R_BOOT, NULL, put_boot, NULL},
    {"/drives/*", R_DRIVE, NULL, put_drive, patch_drive},
    {"/network-interfaces/*", R_NET, NULL, put_net, patch_net},
    {"/vsock", R_VSOCK, NULL, put_vsock, NULL},
    {"/entropy", R_ENTROPY, NULL, put_entropy, NULL},
    {"/logger", R_LOGGER, NULL, put_logger, NULL},
    {"/metrics", R_METRICS, NULL, put_metrics, NULL},
    {"/actions", R_ACTIONS, NULL, put_actions, NULL},
    {"/vm", R_VM, NULL, NULL, patch_vm},
    {"/vm/config", R_VM_CONFIG, get_vm_config, NULL, NULL},
    {"/snapshot/create", R_SNAP_CREATE, NULL, put_snapshot_create, NULL},
    {"/snapshot/load", R_SNAP_LOAD, NULL, put_snapshot_load, NULL},
    {"/mmds", R_MMDS, mmds, mmds, mmds},
    {"/mmds/config", R_MMDS_CONFIG, NULL, put_mmds_config, NULL},
};

static const char *const unimplemented[] = {"/balloon", "/cpu-config", "/serial", "/pmem",
                                            "/hotplug"};

/* Whether path matches pattern; *id points at the {id} segment. */
static bool path_matches(const char *pattern, const char *path, size_t pathlen, const char **id,
                         size_t *idlen)
{
    size_t plen = strlen(pattern);
    if (plen && pattern[plen - 1] == '*') {
        plen--;
        if (pathlen <= plen || strncmp(pattern, path, plen) || memchr(path + plen, '/',
                                                                      pathlen - plen))
            return false;
        *id = path + plen;
        *idlen = pathlen - plen;
        return true;
    }
    return plen == pathlen && !strncmp(pattern, path, plen);
}

static void serve(struct req *rq, const char *method, const char *path, const char *body,
                  size_t len)
{
    size_t pathlen = strcspn(path, "?");
    while (pathlen > 1 && path[pathlen - 1] == '/')
        pathlen--;
    const struct route_entry *r = NULL;
    const char *id = NULL;
    size_t idlen = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && !r; i++)
        if (path_matches(routes[i].path, path, pathlen, &id, &idlen))
            r = &routes[i];
    int (*fn)(struct req *) = NULL;
    if (r) {
        rq->verb = !strcmp(method, "GET") ? V_GET : !strcmp(method, "PUT") ? V_PUT
                   : !strcmp(method, "PATCH")                           ? V_PATCH
                                                                        : V_COUNT;
        fn = rq->verb == V_GET ? r->get : rq->verb == V_PUT ? r->put
             : rq->verb == V_PATCH                         ? r->patch
                                                           : NULL;
    }
    if (!fn) {
        for (size_t i = 0; !r && i < sizeof(unimplemented) / sizeof(unimplemented[0]); i++)
            if (!strncmp(path, unimplemented[i], strlen(unimplemented[i]))) {
                not_implemented(rq, unimplemented[i]);
                return;
            }
        fail(rq, "Invalid request method and/or path: %.16s %.*s.", method,
             (int)(pathlen > 200 ? 200 : pathlen), path);
        return;
    }
    char idbuf[FC_ID_MAX + 1] = "";
    if (r->path[strlen(r->path) - 1] == '*') {
        if (idlen >= sizeof(idbuf)) {
            fail(rq, "Invalid ID: longer than %d characters.", FC_ID_MAX - 1);
            return;
        }
        memcpy(idbuf, id, idlen);
        rq->id = idbuf;
    }
    struct counters *c = &rq->api->now;
    c->count[rq->verb][r->route]++;
    if (rq->verb != V_GET) {
        if (!body || !len) {
            fail(rq, "The request needs a JSON body.");
        } else if (len > FC_MAX_PAYLOAD) {
            fail(rq, "Request payload with size %zu is larger than the limit of %d allowed by "
                     "server.", len, FC_MAX_PAYLOAD);
        } else {
            json_error_t jerr;
            rq->body = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
            if (!rq->body)
                fail(rq, DESERIALIZE "%s at line %d column %d.", jerr.text, jerr.line,
                     jerr.column);
        }
        if (!rq->body) {
            c->fails[rq->verb][r->route]++;
            return;
        }
    }
    rq->status = 204;
    if (fn(rq) != 0)
        c->fails[rq->verb][r->route]++;
    json_decref(rq->body);
    rq->id = NULL;
}

int fc_api_handle(struct fc_api *api, const char *method, const char *path, const char *body,
                  size_t len, char **resp)
{
    struct req rq = {.api = api};
    *resp = NULL;
    if (!method || !path || path[0] != '/') {
        rq.status = 400;
        snprintf(rq.fault, sizeof(rq.fault), "Invalid request: no method or path.");
    } else {
        pthread_mutex_lock(&api->lock);
        serve(&rq, method, path, body, len);
        pthread_mutex_unlock(&api->lock);
    }
    if (rq.status >= 300) {
        /* Paths and names quoted from the request may be any bytes: the
         * answer is JSON, so valid UTF-8 (here: ASCII) whatever they were. */
        for (char *p = rq.fault; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
        json_t *f = json_pack("{s:s}", "fault_message", rq.fault);
        *resp = f ? json_dumps(f, JSON_COMPACT) : NULL;
        json_decref(f);
        if (rq.status != 404)
            fc_api_log(api, true, "%s %.200s: %s", method ? method : "?", path ? path : "?",
                       rq.fault);
    } else {
        *resp = rq.resp;
    }
    return rq.status;
}

/* ------------------------------------------------------------ lifetime */

static void machine_defaults(struct fc_machine *m)
{
    memset(m, 0, sizeof(*m));
    m->vcpus = 1;
    m->mem_mib = 128;
}

static void machine_free(struct fc_machine *m)
{
    free(m->kernel);
    free(m->initrd);
    free(m->boot_args);
    for (unsigned i = 0; i < m->ndrives; i++)
        free_drive(&m->drives[i]);
    for (unsigned i = 0; i < m->nnets; i++) {
        free(m->nets[i].host_dev);
        free(m->nets[i].mac);
    }
    free(m->vsock_uds);
}

struct fc_api *fc_api_new(const char *id, const struct fc_backend *backend)
{
    struct fc_api *api = calloc(1, sizeof(*api));
    if (!api)
        return NULL;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&api->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    snprintf(api->id, sizeof(api->id), "%s", id ? id : "anonymous-instance");
    api->be = *backend;
    machine_defaults(&api->m);
    fc_output_init(&api->log);
    fc_output_init(&api->metrics);
    return api;
}

void fc_api_free(struct fc_api *api)
{
    if (!api)
        return;
    machine_free(&api->m);
    json_decref(api->mmds);
    json_decref(api->mmds_config);
    json_decref(api->logger_body);
    json_decref(api->metrics_body);
    fc_output_close(&api->log);
    fc_output_close(&api->metrics);
    pthread_mutex_destroy(&api->lock);
    free(api);
}

enum fc_state fc_api_state(struct fc_api *api)
{
    pthread_mutex_lock(&api->lock);
    enum fc_state s = api->state;
    pthread_mutex_unlock(&api->lock);
    return s;
}

int fc_api_load_config(struct fc_api *api, const char *json_text, size_t len, char *err,
                       size_t errlen)
{
    json_error_t jerr;
    json_t *cfg = json_loadb(json_text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!cfg) {
        snprintf(err, errlen, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return -1;
    }
    pthread_mutex_lock(&api->lock);
    int rc = apply_config(api, cfg, true, err, errlen);
    pthread_mutex_unlock(&api->lock);
    json_decref(cfg);
    return rc;
}

int fc_api_set_logger(struct fc_api *api, const char *path, const char *level, bool show_level,
                      bool show_origin, char *err, size_t errlen)
{
    json_t *body = json_pack("{s:b, s:b}", "show_level", show_level, "show_log_origin",
                             show_origin);
    if (path)
        json_object_set_new(body, "log_path", json_string(path));
    if (level)
        json_object_set_new(body, "level", json_string(level));
    pthread_mutex_lock(&api->lock);
    int rc = apply_section(api, "PUT", "/logger", body, err, errlen);
    pthread_mutex_unlock(&api->lock);
    json_decref(body);
    return rc;
}

int fc_api_set_metrics(struct fc_api *api, const char *path, char *err, size_t errlen)
{
    json_t *body = json_pack("{s:s}", "metrics_path", path);
    pthread_mutex_lock(&api->lock);
    int rc = apply_section(api, "PUT", "/metrics", body, err, errlen);
    pthread_mutex_unlock(&api->lock);
    json_decref(body);
    return rc;
}

void fc_api_set_jailed(struct fc_api *api)
{
    api->jailed = true;
}

void fc_api_set_startup(struct fc_api *api, uint64_t wall_us, uint64_t cpu_us)
{
    pthread_mutex_lock(&api->lock);
    api->startup_us = wall_us;
    api->startup_cpu_us = cpu_us;
    pthread_mutex_unlock(&api->lock);
}

void fc_api_log(struct fc_api *api, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&api->lock);
    fc_output_vlog(&api->log, api->id, error ? FC_LEVEL_ERROR : FC_LEVEL_INFO, fmt, ap);
    pthread_mutex_unlock(&api->lock);
    va_end(ap);
}

/* ------------------------------------------------------------ metrics */

/* Firecracker's counters are what happened since the last flush. */
static size_t put_group(char *out, size_t cap, size_t used, const struct fc_api *api,
                        enum verb verb, const char *name)
{
    used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "\"%s\":{", name);
    bool first = true;
    for (int r = 0; r < R_COUNT; r++) {
        unsigned long long n = api->now.count[verb][r] - api->flushed.count[verb][r];
        unsigned long long f = api->now.fails[verb][r] - api->flushed.fails[verb][r];
        bool served = false;
        for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
            served |= routes[i].route == (enum route)r &&
                      (verb == V_GET ? routes[i].get : verb == V_PUT ? routes[i].put
                                                                     : routes[i].patch);
        if (!served)
            continue;
        used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s\"%s_count\":%llu",
                                 first ? "" : ",", route_metric[r], n);
        if (verb != V_GET)
            used += (size_t)snprintf(out + used, used < cap ? cap - used : 0,
                                     ",\"%s_fails\":%llu", route_metric[r], f);
        first = false;
    }
    used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "},");
    return used;
}

static void flush_metrics_locked(struct fc_api *api)
{
    if (api->metrics.fd < 0)
        return;
    char line[16384];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    size_t used = (size_t)snprintf(
        line, sizeof(line),
        "{\"utc_timestamp_ms\":%lld,\"api_server\":{\"process_startup_time_us\":%llu,"
        "\"process_startup_time_cpu_us\":%llu},",
        (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, api->startup_us,
        api->startup_cpu_us);
    used = put_group(line, sizeof(line), used, api, V_GET, "get_api_requests");
    used = put_group(line, sizeof(line), used, api, V_PUT, "put_api_requests");
    used = put_group(line, sizeof(line), used, api, V_PATCH, "patch_api_requests");
    used += (size_t)snprintf(line + used, used < sizeof(line) ? sizeof(line) - used : 0,
                             "\"logger\":{\"missed_log_count\":%llu,\"missed_metrics_count\":%llu},",
                             api->log.missed, api->metrics.missed);
    if (used < sizeof(line) && api->state != FC_NOT_STARTED)
        used += api->be.metrics(api->be.ctx, line + used, sizeof(line) - used);
    if (used >= sizeof(line) - 2)
        return; /* cannot happen with these groups; never a cut line */
    if (line[used - 1] == ',')
        used--;
    line[used++] = '}';
    line[used++] = '\n';
    fc_output_write(&api->metrics, line, used);
    api->flushed = api->now;
}

void fc_api_flush_metrics(struct fc_api *api)
{
    pthread_mutex_lock(&api->lock);
    flush_metrics_locked(api);
    pthread_mutex_unlock(&api->lock);
}
