/* kvmc-firecracker's API (server/fc_api.c) against a fake backend: each
 * endpoint's answers, Firecracker's errors for bad bodies and wrong
 * states, and that a refused request changes nothing. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fc_api.h"
#include "fc_output.h"

struct fake {
    int started, paused, resumed, ctrl_alt_del, snapshots, loads;
    bool fail_next;
    struct fc_machine seen; /* shallow: what start/load got */
    char snapshot_dir[512];
    bool snapshot_diff, load_resume;
};

static int fake_result(struct fake *f, char *err, size_t errlen)
{
    if (!f->fail_next)
        return 0;
    f->fail_next = false;
    snprintf(err, errlen, "the fake says no");
    return -1;
}

static int f_start(void *ctx, const struct fc_machine *m, char *err, size_t errlen)
{
    struct fake *f = ctx;
    f->seen = *m;
    f->started++;
    return fake_result(f, err, errlen);
}

static int f_pause(void *ctx, char *err, size_t errlen)
{
    struct fake *f = ctx;
    f->paused++;
    return fake_result(f, err, errlen);
}

static int f_resume(void *ctx, char *err, size_t errlen)
{
    struct fake *f = ctx;
    f->resumed++;
    return fake_result(f, err, errlen);
}

static int f_cad(void *ctx, char *err, size_t errlen)
{
    struct fake *f = ctx;
    f->ctrl_alt_del++;
    return fake_result(f, err, errlen);
}

/* Writes what a kvmc snapshot directory holds, as far as the API looks. */
static int f_snapshot(void *ctx, const char *dir, bool diff, const char *config,
                      const char *mem, char *err, size_t errlen)
{
    struct fake *f = ctx;
    f->snapshots++;
    f->snapshot_diff = diff;
    snprintf(f->snapshot_dir, sizeof(f->snapshot_dir), "%s", dir);
    char path[600];
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/memory", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    if (fake_result(f, err, errlen))
        return -1;
    return fc_snapshot_finish(dir, config, mem, err, errlen);
}

static char *f_read_config(void *ctx, const char *dir, const char *mem, char *err,
                           size_t errlen)
{
    (void)ctx;
    return fc_snapshot_read_config(dir, mem, err, errlen);
}

static int f_load(void *ctx, const struct fc_machine *m, const char *dir, bool resume,
                  char *err, size_t errlen)
{
    struct fake *f = ctx;
    (void)dir;
    f->seen = *m;
    f->loads++;
    f->load_resume = resume;
    return fake_result(f, err, errlen);
}

static size_t f_metrics(void *ctx, char *out, size_t cap)
{
    (void)ctx;
    return (size_t)snprintf(out, cap, "\"vcpu\":{\"exit_io_in\":7},");
}

static int f_open_output(void *ctx, const char *path, char *err, size_t errlen)
{
    (void)ctx;
    return fc_output_open_file(path, err, errlen);
}

static struct fake fake;
static struct fc_api *api;
static char tmp[64];
static char *resp;

static void setup(void)
{
    memset(&fake, 0, sizeof(fake));
    struct fc_backend be = {.start = f_start, .pause = f_pause, .resume = f_resume,
                            .ctrl_alt_del = f_cad, .snapshot = f_snapshot,
                            .read_snapshot_config = f_read_config, .load = f_load,
                            .metrics = f_metrics, .open_output = f_open_output, .ctx = &fake};
    api = fc_api_new("test-vm", &be);
    cr_assert(api);
    snprintf(tmp, sizeof(tmp), "/tmp/kvmc-fc-api-XXXXXX");
    cr_assert(mkdtemp(tmp));
    resp = NULL;
}

static void teardown(void)
{
    free(resp);
    fc_api_free(api);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(fc_api, .init = setup, .fini = teardown);

/* One request; resp holds the answer's body (or NULL). */
static int call_len(const char *method, const char *path, const char *body, size_t len)
{
    free(resp);
    resp = NULL;
    return fc_api_handle(api, method, path, body, len, &resp);
}

static int call(const char *method, const char *path, const char *body)
{
    return call_len(method, path, body, body ? strlen(body) : 0);
}

/* The request gets status, and the answer holds text (unless NULL). */
static void expect_at(int line, int status, const char *method, const char *path,
                      const char *body, const char *text)
{
    int got = call(method, path, body);
    cr_assert_eq(got, status, "line %d: %s %s %s: %d %s", line, method, path, body ? body : "",
                 got, resp ? resp : "(no body)");
    if (text)
        cr_assert(resp && strstr(resp, text), "line %d: %s %s: %s, not \"%s\"", line, method,
                  path, resp ? resp : "(no body)", text);
}
#define expect(...) expect_at(__LINE__, __VA_ARGS__)

static const char *file_in_tmp(const char *name)
{
    static char path[8][128];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 128, "%s/%s", tmp, name);
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 1 << 20), 0);
    close(fd);
    return p;
}

static void boot_source(void)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"kernel_image_path\": \"%s\", \"boot_args\": \"console=ttyS0\"}",
             file_in_tmp("vmlinux"));
    expect(204, "PUT", "/boot-source", body, NULL);
}

Test(fc_api, instance_info_and_version_before_anything)
{
    expect(200, "GET", "/", NULL, "\"state\":\"Not started\"");
    cr_assert(strstr(resp, "\"id\":\"test-vm\"") && strstr(resp, "\"app_name\":\"Firecracker\""),
              "%s", resp);
    expect(200, "GET", "/version", NULL, "\"firecracker_version\":\"" FC_COMPAT_VERSION "\"");
    expect(200, "GET", "/machine-config", NULL, "\"vcpu_count\":1,\"mem_size_mib\":128");
    expect(400, "GET", "/nowhere", NULL, "Invalid request method and/or path: GET /nowhere.");
    expect(400, "DELETE", "/", NULL, "Invalid request method and/or path");
    expect(400, "PUT", "/balloon", "{}", "kvmc does not implement /balloon");
    /* A path of any bytes is quoted back as valid JSON. */
    expect(400, "GET", "/\xff\x01\"x", NULL, "Invalid request method and/or path: GET /??\\\"x.");
}

Test(fc_api, machine_config_is_checked_whole_and_patched_in_part)
{
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 2}", "missing field `mem_size_mib`");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": \"2\", \"mem_size_mib\": 64}",
           "invalid type for `vcpu_count`: expected an integer");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 33, \"mem_size_mib\": 64}",
           "`vcpu_count` is 33: it must be from 1 to 32");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 0, \"mem_size_mib\": 64}", "from 1");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"x\": 1}",
           "unknown field `x`, expected one of `vcpu_count`");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 64, \"smt\": true}",
           "SMT is not supported");
    expect(400, "PUT", "/machine-config",
           "{\"vcpu_count\": 1, \"mem_size_mib\": 65, \"huge_pages\": \"2M\"}", "must be even");
    expect(400, "PUT", "/machine-config",
           "{\"vcpu_count\": 1, \"mem_size_mib\": 64, \"cpu_template\": \"C3\"}", "CPUID");
    expect(200, "GET", "/machine-config", NULL, "\"vcpu_count\":1,\"mem_size_mib\":128");
    expect(204, "PUT", "/machine-config",
           "{\"vcpu_count\": 2, \"mem_size_mib\": 256, \"track_dirty_pages\": true, "
           "\"cpu_template\": \"None\"}", NULL);
    expect(204, "PATCH", "/machine-config", "{\"vcpu_count\": 4}", NULL);
    expect(200, "GET", "/machine-config", NULL,
           "\"vcpu_count\":4,\"mem_size_mib\":256,\"smt\":false,\"track_dirty_pages\":true");
    expect(204, "PATCH", "/machine-config", "{\"huge_pages\": \"2M\"}", NULL);
    expect(200, "GET", "/machine-config", NULL, "\"huge_pages\":\"2M\"");
}

Test(fc_api, bodies_that_are_not_what_they_should_be)
{
    expect(400, "PUT", "/machine-config", NULL, "needs a JSON body");
    expect(400, "PUT", "/machine-config", "[1, 2]", "expected a JSON object");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 1,", "deserializing");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 1, \"vcpu_count\": 2, "
                                          "\"mem_size_mib\": 1}", "duplicate");
    expect(400, "PUT", "/boot-source", "{\"kernel_image_path\": \"a\\u0000b\"}", "deserializing");
    /* Deeply nested: refused by the parser's depth limit, no stack overflow. */
    char *deep = malloc(200001);
    memset(deep, '[', 100000);
    memset(deep + 100000, ']', 100000);
    deep[200000] = 0;
    cr_assert_eq(call_len("PUT", "/mmds", deep, 200000), 400);
    cr_assert(strstr(resp, "larger than the limit of 51200"), "%s", resp);
    cr_assert_eq(call_len("PUT", "/mmds", deep + 100000 - 3000, 6000), 400);
    free(deep);
    expect(200, "GET", "/machine-config", NULL, "\"vcpu_count\":1,\"mem_size_mib\":128");
}

Test(fc_api, boot_source_names_the_file_it_cannot_open)
{
    expect(400, "PUT", "/boot-source", "{\"kernel_image_path\": \"/nonexistent/vmlinux\"}",
           "kernel_image_path: cannot open /nonexistent/vmlinux: No such file or directory");
    expect(400, "PUT", "/boot-source", "{\"boot_args\": \"x\"}", "missing field `kernel_image_path`");
    expect(400, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}",
           "without kernel configuration");
    cr_assert_eq(fake.started, 0);
    boot_source();
}

/* Jailed, every path is the jail's: a ".." component is refused in each
 * field that names a file, before anything is opened; two dots inside a
 * name are a name. Not jailed, ".." is the caller's business. */
Test(fc_api, jailed_paths_with_dot_dot_are_refused)
{
    char body[512], dotted[160];
    const char *disk = file_in_tmp("disk");
    snprintf(dotted, sizeof(dotted), "%s/../%s/log", tmp, strrchr(tmp, '/') + 1);
    file_in_tmp("log");
    snprintf(body, sizeof(body), "{\"log_path\": \"%s\"}", dotted);
    expect(204, "PUT", "/logger", body, NULL);

    fc_api_set_jailed(api);
    expect(400, "PUT", "/logger", body, "has a '..' component");
    snprintf(body, sizeof(body), "{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", "
             "\"is_root_device\": true}", dotted);
    expect(400, "PUT", "/drives/rootfs", body, "path_on_host: ");
    static const char *const climbing[] = {"..", "../x", "a/..", "a/../b", "/..", "/a/../../b"};
    for (unsigned i = 0; i < sizeof(climbing) / sizeof(*climbing); i++) {
        snprintf(body, sizeof(body), "{\"kernel_image_path\": \"%s\"}", climbing[i]);
        expect(400, "PUT", "/boot-source", body, "kernel_image_path: ");
        cr_assert(strstr(resp, "has a '..' component"), "%s: %s", climbing[i], resp);
    }
    expect(400, "PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"../v.sock\"}",
           "uds_path: ../v.sock has a '..' component");
    expect(400, "PUT", "/logger", "{\"log_path\": \"/x/../log\"}", "log_path: ");
    expect(400, "PUT", "/metrics", "{\"metrics_path\": \"..\"}", "metrics_path: ");
    expect(400, "PUT", "/snapshot/load", "{\"snapshot_path\": \"../s\", \"mem_file_path\": \"m\"}",
           "snapshot_path: ");
    /* a name with dots in it: opened as asked */
    snprintf(body, sizeof(body), "{\"kernel_image_path\": \"%s..old\"}", disk);
    expect(400, "PUT", "/boot-source", body, "No such file or directory");
    snprintf(body, sizeof(body), "{\"kernel_image_path\": \"%s\"}", disk);
    expect(204, "PUT", "/boot-source", body, NULL);
}

Test(fc_api, drives_root_first_one_root_ids_checked)
{
    char body[512];
    const char *a = file_in_tmp("a.img"), *b = file_in_tmp("b.img");
    snprintf(body, sizeof(body), "{\"drive_id\": \"data\", \"path_on_host\": \"%s\", "
                                 "\"is_root_device\": false, \"is_read_only\": true}", a);
    expect(204, "PUT", "/drives/data", body, NULL);
    expect(400, "PUT", "/drives/other", body, "The id from the path [other] does not match");
    snprintf(body, sizeof(body), "{\"drive_id\": \"bad-id\", \"path_on_host\": \"%s\", "
                                 "\"is_root_device\": false}", a);
    expect(400, "PUT", "/drives/bad-id", body, "Invalid drive ID");
    snprintf(body, sizeof(body), "{\"drive_id\": \"root\", \"path_on_host\": \"%s\", "
                                 "\"is_root_device\": true, \"partuuid\": \"1234-01\"}", b);
    expect(204, "PUT", "/drives/root", body, NULL);
    snprintf(body, sizeof(body), "{\"drive_id\": \"root2\", \"path_on_host\": \"%s\", "
                                 "\"is_root_device\": true}", b);
    expect(400, "PUT", "/drives/root2", body, "A root block device already exists!");
    snprintf(body, sizeof(body), "{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
             "\"is_root_device\": false, \"rate_limiter\": {\"bandwidth\": {\"size\": 1, "
             "\"refill_time\": 100}}}", a);
    expect(400, "PUT", "/drives/x", body, "rate limiters");
    snprintf(body, sizeof(body), "{\"drive_id\": \"x\", \"path_on_host\": \"%s\", "
             "\"is_root_device\": false, \"rate_limiter\": {}, \"cache_type\": \"Writeback\", "
             "\"io_engine\": \"Async\"}", a);
    expect(204, "PUT", "/drives/x", body, NULL);
    expect(400, "PUT", "/drives/y", "{\"drive_id\": \"y\", \"is_root_device\": false, "
                                    "\"socket\": \"/tmp/vhost\"}", "vhost-user");
    expect(400, "PUT", "/drives/y", "{\"drive_id\": \"y\", \"is_root_device\": false, "
                                    "\"path_on_host\": \"/nonexistent\"}", "cannot open /nonexistent");
    expect(400, "PATCH", "/drives/x", "{\"drive_id\": \"x\"}", "before starting the microVM");
    expect(200, "GET", "/vm/config", NULL, "\"drives\":[{\"drive_id\":\"root\"");
    cr_assert(strstr(resp, "\"partuuid\":\"1234-01\""), "%s", resp);
    cr_assert(strstr(resp, "{\"drive_id\":\"data\""), "%s", resp);
    boot_source();
    expect(204, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", NULL);
    cr_assert_eq(fake.seen.ndrives, 3);
    cr_assert_str_eq(fake.seen.drives[0].id, "root");
    cr_assert(fake.seen.drives[0].root);
    cr_assert_str_eq(fake.seen.drives[1].id, "data");
    cr_assert(fake.seen.drives[1].read_only);
    expect(204, "PATCH", "/drives/data", "{\"drive_id\": \"data\"}", NULL);
    snprintf(body, sizeof(body), "{\"drive_id\": \"data\", \"path_on_host\": \"%s\"}", b);
    expect(400, "PATCH", "/drives/data", body, "cannot change a drive's backing file");
    expect(400, "PATCH", "/drives/nope", "{\"drive_id\": \"nope\"}", "Could not find a drive");
}

Test(fc_api, network_interfaces_tap_or_user_never_a_spec_injected)
{
    expect(204, "PUT", "/network-interfaces/eth0",
           "{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", \"guest_mac\": "
           "\"06:00:AC:10:00:02\"}", NULL);
    expect(400, "PUT", "/network-interfaces/eth1",
           "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap0\"}", "already in use");
    expect(400, "PUT", "/network-interfaces/eth1",
           "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1,mac=1\"}", "a tap's name");
    expect(400, "PUT", "/network-interfaces/eth1",
           "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\", \"guest_mac\": \"06:00\"}",
           "not a MAC address");
    expect(400, "PUT", "/network-interfaces/eth1",
           "{\"iface_id\": \"eth1\", \"host_dev_name\": \"tap1\", \"mtu\": 9000}", "MTU");
    expect(204, "PUT", "/network-interfaces/eth1",
           "{\"iface_id\": \"eth1\", \"host_dev_name\": \"user,hostfwd=tcp::2222-:22\"}", NULL);
    expect(200, "GET", "/vm/config", NULL, "\"host_dev_name\":\"user,hostfwd=tcp::2222-:22\"");
    expect(400, "PUT", "/mmds/config", "{\"network_interfaces\": [\"eth9\"]}", "not found");
    expect(400, "PUT", "/mmds/config", "{\"network_interfaces\": []}", "is empty");
    expect(400, "PUT", "/mmds/config", "{\"network_interfaces\": [\"eth0\"], \"ipv4_address\": "
                                       "\"10.0.0.1\"}", "link-local");
    expect(204, "PUT", "/mmds/config", "{\"network_interfaces\": [\"eth0\"], \"version\": \"V2\"}",
           NULL);
    expect(400, "PATCH", "/network-interfaces/eth0", "{\"iface_id\": \"eth0\"}",
           "before starting");
}

Test(fc_api, vsock_and_entropy)
{
    expect(400, "PUT", "/vsock", "{\"guest_cid\": 2, \"uds_path\": \"/tmp/v.sock\"}",
           "`guest_cid` is 2");
    expect(400, "PUT", "/vsock", "{\"guest_cid\": 3}", "missing field `uds_path`");
    expect(204, "PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/tmp/v.sock\", "
                                 "\"vsock_id\": \"vsock0\"}", NULL);
    expect(204, "PUT", "/entropy", "{}", NULL);
    boot_source();
    expect(204, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", NULL);
    cr_assert(fake.seen.vsock && fake.seen.vsock_cid == 3 && fake.seen.entropy);
    cr_assert_str_eq(fake.seen.vsock_uds, "/tmp/v.sock");
}

Test(fc_api, states_pre_boot_post_boot_pause_resume)
{
    expect(400, "PATCH", "/vm", "{\"state\": \"Paused\"}",
           "The requested operation is not supported before starting the microVM.");
    expect(400, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", "before starting");
    expect(400, "PUT", "/actions", "{\"action_type\": \"Reboot\"}", "unknown variant `Reboot`");
    boot_source();
    fake.fail_next = true;
    expect(400, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}",
           "Cannot start the microVM: the fake says no");
    expect(200, "GET", "/", NULL, "\"state\":\"Not started\"");
    expect(204, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", NULL);
    expect(200, "GET", "/", NULL, "\"state\":\"Running\"");
    expect(400, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}",
           "The requested operation is not supported after starting the microVM.");
    expect(400, "PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 64}",
           "after starting");
    expect(400, "PUT", "/vsock", "{\"guest_cid\": 3, \"uds_path\": \"/tmp/v\"}", "after starting");
    expect(400, "PATCH", "/vm", "{\"state\": \"Stopped\"}", "unknown variant `Stopped`");
    expect(204, "PATCH", "/vm", "{\"state\": \"Paused\"}", NULL);
    expect(204, "PATCH", "/vm", "{\"state\": \"Paused\"}", NULL);
    cr_assert_eq(fake.paused, 1, "pausing a paused VM is fine and does nothing");
    expect(200, "GET", "/", NULL, "\"state\":\"Paused\"");
    fake.fail_next = true;
    expect(400, "PATCH", "/vm", "{\"state\": \"Resumed\"}", "Cannot resume the microVM: the fake");
    expect(200, "GET", "/", NULL, "\"state\":\"Paused\"");
    expect(204, "PATCH", "/vm", "{\"state\": \"Resumed\"}", NULL);
    expect(204, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", NULL);
    cr_assert_eq(fake.ctrl_alt_del, 1);
}

Test(fc_api, metadata_store_put_patch_get)
{
    expect(404, "GET", "/mmds", NULL, "not initialized");
    expect(400, "PATCH", "/mmds", "{\"a\": 1}", "PUT /mmds first");
    expect(400, "PUT", "/mmds", "[1]", "holds a JSON object");
    expect(204, "PUT", "/mmds", "{\"latest\": {\"meta-data\": {\"id\": \"i-1\", \"az\": \"x\"}}}",
           NULL);
    expect(204, "PATCH", "/mmds", "{\"latest\": {\"meta-data\": {\"az\": null, \"t\": [1]}}}",
           NULL);
    expect(200, "GET", "/mmds", NULL, "{\"latest\":{\"meta-data\":{\"id\":\"i-1\",\"t\":[1]}}}");
    /* The store's limit holds for a patch too, and a refused patch changes nothing. */
    char *big = malloc(40000);
    for (int round = 0; round < 2; round++) {
        snprintf(big, 40000, "{\"k%d\": \"%0*d\"}", round, 30000, 0);
        expect(round ? 400 : 204, "PATCH", "/mmds", big, round ? "its limit is 51200" : NULL);
    }
    free(big);
    expect(200, "GET", "/mmds", NULL, "\"k0\"");
    cr_assert_null(strstr(resp, "\"k1\""));
}

Test(fc_api, logger_and_metrics_files)
{
    char body[256];
    expect(400, "PUT", "/logger", "{\"level\": \"Loud\"}", "`level` Loud");
    expect(400, "PUT", "/logger", "{\"log_path\": \"/nonexistent/log\"}", "cannot open");
    const char *log = file_in_tmp("log"), *metrics = file_in_tmp("metrics");
    cr_assert_eq(truncate(log, 0), 0);
    cr_assert_eq(truncate(metrics, 0), 0);
    snprintf(body, sizeof(body), "{\"log_path\": \"%s\", \"level\": \"info\", \"show_level\": true}",
             log);
    expect(204, "PUT", "/logger", body, NULL);
    expect(400, "PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", "not initialized");
    snprintf(body, sizeof(body), "{\"metrics_path\": \"%s\"}", metrics);
    expect(204, "PUT", "/metrics", body, NULL);
    expect(400, "PUT", "/metrics", body, "Reinitialization of metrics not allowed.");
    boot_source();
    expect(204, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", NULL);
    expect(204, "PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", NULL);
    expect(204, "PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", NULL);
    char text[8192] = "";
    FILE *f = fopen(metrics, "r");
    cr_assert(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    char *second = strchr(text, '\n');
    cr_assert(second && second[1], "two lines: %s", text);
    /* What the first line counted: the requests until it, fails included. */
    cr_assert(strstr(text, "\"put_api_requests\":{\"machine_cfg_count\":0"), "%s", text);
    cr_assert(strstr(text, "\"boot_source_count\":1,\"boot_source_fails\":0"), "%s", text);
    cr_assert(strstr(text, "\"metrics_count\":2,\"metrics_fails\":1"), "%s", text);
    cr_assert(strstr(text, "\"actions_count\":3,\"actions_fails\":1"), "%s", text);
    cr_assert(strstr(text, "\"vcpu\":{\"exit_io_in\":7}}\n"), "%s", text);
    /* The second: only what came after the first. */
    cr_assert(strstr(second, "\"actions_count\":1,\"actions_fails\":0"), "%s", second);
    cr_assert(strstr(second, "\"boot_source_count\":0"), "%s", second);
    f = fopen(log, "r");
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    cr_assert(strstr(text, ":Error] PUT /metrics: Reinitialization"), "%s", text);
    cr_assert(strstr(text, ":Info] microVM test-vm started\n"), "%s", text);
}

Test(fc_api, snapshot_create_needs_a_pause_and_load_builds_the_same_vm)
{
    char body[512], dir[128], mem[128];
    snprintf(dir, sizeof(dir), "%s/snap", tmp);
    snprintf(mem, sizeof(mem), "%s/snap.mem", tmp);
    snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}", dir,
             mem);
    expect(400, "PUT", "/snapshot/create", body, "before starting");
    const char *disk = file_in_tmp("root.img");
    char drive[256];
    snprintf(drive, sizeof(drive), "{\"drive_id\": \"rootfs\", \"path_on_host\": \"%s\", "
                                   "\"is_root_device\": true}", disk);
    expect(204, "PUT", "/drives/rootfs", drive, NULL);
    expect(204, "PUT", "/machine-config", "{\"vcpu_count\": 2, \"mem_size_mib\": 64}", NULL);
    boot_source();
    expect(204, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", NULL);
    expect(400, "PUT", "/snapshot/create", body, "not paused");
    expect(204, "PATCH", "/vm", "{\"state\": \"Paused\"}", NULL);
    expect(400, "PUT", "/snapshot/create", "{\"snapshot_path\": \"/a\", \"mem_file_path\": \"/b\", "
                                           "\"snapshot_type\": \"Half\"}", "unknown variant `Half`");
    snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\", "
                                 "\"snapshot_type\": \"Diff\", \"version\": \"1.0.0\"}", dir, mem);
    expect(204, "PUT", "/snapshot/create", body, NULL);
    cr_assert(fake.snapshot_diff);
    struct stat a, b;
    char path[256];
    snprintf(path, sizeof(path), "%s/memory", dir);
    cr_assert_eq(stat(path, &a), 0);
    cr_assert_eq(stat(mem, &b), 0);
    cr_assert(a.st_ino == b.st_ino, "mem_file_path is the snapshot's memory, linked");
    snprintf(path, sizeof(path), "%s/firecracker-config.json", dir);
    cr_assert_eq(access(path, R_OK), 0);

    /* A fresh API loads it: the same machine, started paused or running. */
    struct fc_backend be = {.start = f_start, .pause = f_pause, .resume = f_resume,
                            .ctrl_alt_del = f_cad, .snapshot = f_snapshot,
                            .read_snapshot_config = f_read_config, .load = f_load,
                            .metrics = f_metrics, .open_output = f_open_output, .ctx = &fake};
    fc_api_free(api);
    api = fc_api_new(NULL, &be);
    expect(200, "GET", "/", NULL, "\"id\":\"anonymous-instance\"");
    snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}", dir,
             disk);
    expect(400, "PUT", "/snapshot/load", body, "is not the memory of the snapshot");
    snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": "
                                 "\"Uffd\", \"backend_path\": \"/x\"}}", dir);
    expect(400, "PUT", "/snapshot/load", body, "Uffd is not supported");
    snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\"}", dir);
    expect(400, "PUT", "/snapshot/load", body, "Either mem_file_path or mem_backend");
    snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": "
                                 "\"File\", \"backend_path\": \"%s\"}, \"resume_vm\": true, "
                                 "\"network_overrides\": [{\"iface_id\": \"eth0\", "
                                 "\"host_dev_name\": \"tap9\"}]}", dir, mem);
    expect(400, "PUT", "/snapshot/load", body, "the snapshot has no interface eth0");
    cr_assert_eq(fake.loads, 0);
    snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_backend\": {\"backend_type\": "
                                 "\"File\", \"backend_path\": \"%s\"}, \"resume_vm\": true}", dir,
             mem);
    expect(204, "PUT", "/snapshot/load", body, NULL);
    cr_assert_eq(fake.loads, 1);
    cr_assert(fake.load_resume);
    cr_assert_eq(fake.seen.vcpus, 2);
    cr_assert_eq(fake.seen.mem_mib, 64);
    cr_assert_eq(fake.seen.ndrives, 1);
    cr_assert_str_eq(fake.seen.drives[0].path, disk);
    cr_assert_null(fake.seen.kernel, "a restore needs no kernel");
    expect(200, "GET", "/", NULL, "\"state\":\"Running\"");
    expect(400, "PUT", "/snapshot/load", body, "after starting");
}

Test(fc_api, snapshot_load_only_on_a_fresh_api)
{
    expect(204, "PUT", "/machine-config", "{\"vcpu_count\": 1, \"mem_size_mib\": 64}", NULL);
    expect(400, "PUT", "/snapshot/load", "{\"snapshot_path\": \"/x\", \"mem_file_path\": \"/y\"}",
           "not allowed after configuring boot-specific resources");
}

Test(fc_api, config_file_sections)
{
    char cfg[1024];
    const char *kernel = file_in_tmp("vmlinux"), *disk = file_in_tmp("disk");
    snprintf(cfg, sizeof(cfg),
             "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"machine-config\": "
             "{\"vcpu_count\": 2, \"mem_size_mib\": 96}, \"drives\": [{\"drive_id\": \"d\", "
             "\"path_on_host\": \"%s\", \"is_root_device\": false}], \"network-interfaces\": "
             "[{\"iface_id\": \"n\", \"host_dev_name\": \"user\"}], \"mmds-config\": "
             "{\"network_interfaces\": [\"n\"]}}", kernel, disk);
    char err[512];
    cr_assert_eq(fc_api_load_config(api, cfg, strlen(cfg), err, sizeof(err)), 0, "%s", err);
    expect(200, "GET", "/vm/config", NULL, "\"vcpu_count\":2,\"mem_size_mib\":96");
    cr_assert(strstr(resp, "\"mmds-config\":{\"network_interfaces\":[\"n\"]}"), "%s", resp);
    const char *bad = "{\"machine-config\": {\"vcpu_count\": 99, \"mem_size_mib\": 1}}";
    cr_assert_eq(fc_api_load_config(api, bad, strlen(bad), err, sizeof(err)), -1);
    cr_assert(strstr(err, "/machine-config: `vcpu_count` is 99"), "%s", err);
    const char *unknown = "{\"gpu\": {}}";
    cr_assert_eq(fc_api_load_config(api, unknown, strlen(unknown), err, sizeof(err)), -1);
    cr_assert(strstr(err, "unknown section `gpu`"), "%s", err);
    cr_assert_eq(fc_api_load_config(api, "{", 1, err, sizeof(err)), -1);
    cr_assert(strstr(err, "line 1"), "%s", err);
}
