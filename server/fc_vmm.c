/* The backend of kvmc-firecracker's API: one libkvmc VM (fc_vmm.h). */
#include "fc_vmm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fc_output.h"
#include "kvmc/kvmc.h"

void fc_vmm_init(struct fc_vmm *v, bool seccomp)
{
    *v = (struct fc_vmm){.seccomp = seccomp, .flushed = KVMC_STATS_INIT};
    pthread_mutex_init(&v->lock, NULL);
    pthread_cond_init(&v->cond, NULL);
    pthread_cond_init(&v->job_cond, NULL);
}

static int fail_with_kvmc(char *err, size_t errlen)
{
    snprintf(err, errlen, "%s", kvmc_last_error());
    return -1;
}

/* The kernel command line: the boot arguments, and the root device as
 * Firecracker adds it (the root drive is the first: /dev/vda). */
static char *cmdline_for(const struct fc_machine *m)
{
    const struct fc_drive *root = m->ndrives && m->drives[0].root ? &m->drives[0] : NULL;
    const char *args = m->boot_args ? m->boot_args : "";
    size_t len = strlen(args) + 128;
    char *line = malloc(len);
    if (!line)
        return NULL;
    if (!root)
        snprintf(line, len, "%s", args);
    else if (root->partuuid)
        snprintf(line, len, "%s%sroot=PARTUUID=%s %s", args, *args ? " " : "", root->partuuid,
                 root->read_only ? "ro" : "rw");
    else
        snprintf(line, len, "%s%sroot=/dev/vda %s", args, *args ? " " : "",
                 root->read_only ? "ro" : "rw");
    return line;
}

static int net_spec(const struct fc_net *n, char *out, size_t cap)
{
    int len = strncmp(n->host_dev, "user", 4) == 0
                  ? snprintf(out, cap, "%s", n->host_dev)
                  : snprintf(out, cap, "tap=%s", n->host_dev);
    if (n->mac)
        len += snprintf(out + len, cap > (size_t)len ? cap - (size_t)len : 0, ",mac=%s", n->mac);
    return (size_t)len < cap ? 0 : -1;
}

static int build(const struct fc_machine *m, kvmc_config *cfg)
{
    int err = KVMC_OK;
    if (m->kernel)
        err = kvmc_config_set_kernel(cfg, m->kernel);
    if (!err && m->initrd)
        err = kvmc_config_set_initrd(cfg, m->initrd);
    char *line = m->kernel ? cmdline_for(m) : NULL;
    if (!err && line && *line)
        err = kvmc_config_set_cmdline(cfg, line);
    free(line);
    if (!err)
        err = kvmc_config_set_memory(cfg, (uint64_t)m->mem_mib << 20);
    if (!err && m->hugepages)
        err = kvmc_config_set_memory_flags(cfg, KVMC_MEM_MEMFD | KVMC_MEM_HUGEPAGES);
    if (!err)
        err = kvmc_config_set_cpus(cfg, m->vcpus);
    /* "fc_vcpu N", as Firecracker's: Kata Containers finds them by name. */
    if (!err)
        err = kvmc_config_set_vcpu_thread_name(cfg, "fc_vcpu ");
    for (unsigned i = 0; i < m->ndrives && !err; i++)
        err = kvmc_config_add_disk(cfg, m->drives[i].path,
                                   m->drives[i].read_only ? KVMC_DISK_READ_ONLY : 0, NULL);
    for (unsigned i = 0; i < m->nnets && !err; i++) {
        char spec[1200];
        if (net_spec(&m->nets[i], spec, sizeof(spec)))
            return KVMC_EINVAL;
        err = kvmc_config_add_net(cfg, spec);
    }
    if (!err && m->vsock)
        err = kvmc_config_set_vsock(cfg, m->vsock_cid, m->vsock_uds);
    if (!err && m->entropy)
        err = kvmc_config_set_rng(cfg, 1);
    /* The serial console is the process's stdout and stdin, as Firecracker's. */
    if (!err)
        err = kvmc_config_set_console_fd(cfg, STDOUT_FILENO);
    if (!err)
        err = kvmc_config_set_console_input_fd(cfg, STDIN_FILENO);
    return err;
}

static int create(struct fc_vmm *v, const struct fc_machine *m, char *err, size_t errlen)
{
    kvmc_config *cfg = NULL;
    kvmc_vm *vm = NULL;
    if (kvmc_config_new(&cfg) || build(m, cfg) || kvmc_vm_create(cfg, &vm)) {
        kvmc_config_free(cfg);
        return fail_with_kvmc(err, errlen);
    }
    kvmc_config_free(cfg);
    if (v->seccomp && kvmc_vm_set_seccomp(vm, 1)) {
        fail_with_kvmc(err, errlen);
        kvmc_vm_destroy(vm);
        return -1;
    }
    v->vm = vm;
    v->flushed = (kvmc_stats)KVMC_STATS_INIT; /* a new VM counts from zero */
    return 0;
}

static void announce(struct fc_vmm *v)
{
    pthread_mutex_lock(&v->lock);
    v->started = true;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

/* ------------------------------------------------ on the VMM thread */

struct load_args {
    const struct fc_machine *m;
    const char *dir;
    bool resume;
};

static int do_start(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    if (create(v, arg, err, errlen))
        return -1;
    if (kvmc_vm_start(v->vm)) {
        fail_with_kvmc(err, errlen);
        kvmc_vm_destroy(v->vm); /* InstanceStart may be tried again */
        v->vm = NULL;
        return -1;
    }
    announce(v);
    return 0;
}

static int do_load(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    const struct load_args *a = arg;
    if (create(v, a->m, err, errlen))
        return -1;
    if (kvmc_vm_restore(v->vm, a->dir) || kvmc_vm_start(v->vm) ||
        (!a->resume && kvmc_vm_pause(v->vm))) {
        fail_with_kvmc(err, errlen);
        kvmc_vm_destroy(v->vm); /* not announced: nothing waits for it */
        v->vm = NULL;
        return -1;
    }
    announce(v);
    return 0;
}

static int do_pause(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return kvmc_vm_pause(v->vm) ? fail_with_kvmc(err, errlen) : 0;
}

static int do_resume(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return kvmc_vm_resume(v->vm) ? fail_with_kvmc(err, errlen) : 0;
}

static int do_ctrl_alt_del(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    (void)arg;
    return kvmc_vm_send_ctrl_alt_del(v->vm) ? fail_with_kvmc(err, errlen) : 0;
}

struct snapshot_args {
    const char *dir, *config, *mem;
    bool diff;
};

static int do_snapshot(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    const struct snapshot_args *a = arg;
    kvmc_snapshot_options opts = KVMC_SNAPSHOT_OPTIONS_INIT;
    opts.flags = a->diff ? KVMC_SNAPSHOT_DIFF : 0;
    if (kvmc_vm_snapshot_ext(v->vm, a->dir, &opts))
        return fail_with_kvmc(err, errlen);
    return fc_snapshot_finish(a->dir, a->config, a->mem, err, errlen);
}

struct read_config_args {
    const char *dir, *mem;
    char *text;
};

static int do_read_config(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    struct read_config_args *a = arg;
    (void)v;
    a->text = fc_snapshot_read_config(a->dir, a->mem, err, errlen);
    return a->text ? 0 : -1;
}

struct open_args {
    const char *path;
    int fd;
};

static int do_open_output(struct fc_vmm *v, void *arg, char *err, size_t errlen)
{
    struct open_args *a = arg;
    (void)v;
    a->fd = fc_output_open_file(a->path, err, errlen);
    return a->fd < 0 ? -1 : 0;
}

static void *worker_main(void *arg)
{
    struct fc_vmm *v = arg;
    pthread_setname_np(pthread_self(), "fc_vmm");
    pthread_mutex_lock(&v->lock);
    for (;;) {
        while (!v->job)
            pthread_cond_wait(&v->job_cond, &v->lock);
        int (*job)(struct fc_vmm *, void *, char *, size_t) = v->job;
        pthread_mutex_unlock(&v->lock);
        int rc = job(v, v->job_arg, v->job_err, v->job_errlen);
        pthread_mutex_lock(&v->lock);
        v->job = NULL;
        v->job_rc = rc;
        v->job_done = true;
        pthread_cond_broadcast(&v->job_cond);
    }
    return NULL;
}

int fc_vmm_start_worker(struct fc_vmm *v)
{
    return pthread_create(&v->worker, NULL, worker_main, v) == 0 ? 0 : -1;
}

/* Runs fn on the VMM thread and waits for it. Requests come one at a time
 * (the API's lock), so there is never more than one job. */
static int on_vmm_thread(struct fc_vmm *v, int (*fn)(struct fc_vmm *, void *, char *, size_t),
                         void *arg, char *err, size_t errlen)
{
    pthread_mutex_lock(&v->lock);
    v->job = fn;
    v->job_arg = arg;
    v->job_err = err;
    v->job_errlen = errlen;
    v->job_done = false;
    pthread_cond_broadcast(&v->job_cond);
    while (!v->job_done)
        pthread_cond_wait(&v->job_cond, &v->lock);
    int rc = v->job_rc;
    pthread_mutex_unlock(&v->lock);
    return rc;
}

/* ------------------------------------------------ the backend */

static int vmm_start(void *ctx, const struct fc_machine *m, char *err, size_t errlen)
{
    return on_vmm_thread(ctx, do_start, (void *)m, err, errlen);
}

static int vmm_load(void *ctx, const struct fc_machine *m, const char *dir, bool resume,
                    char *err, size_t errlen)
{
    struct load_args a = {m, dir, resume};
    return on_vmm_thread(ctx, do_load, &a, err, errlen);
}

static int vmm_pause(void *ctx, char *err, size_t errlen)
{
    return on_vmm_thread(ctx, do_pause, NULL, err, errlen);
}

static int vmm_resume(void *ctx, char *err, size_t errlen)
{
    return on_vmm_thread(ctx, do_resume, NULL, err, errlen);
}

static int vmm_ctrl_alt_del(void *ctx, char *err, size_t errlen)
{
    return on_vmm_thread(ctx, do_ctrl_alt_del, NULL, err, errlen);
}

static int vmm_snapshot(void *ctx, const char *dir, bool diff, const char *config,
                        const char *mem, char *err, size_t errlen)
{
    struct snapshot_args a = {dir, config, mem, diff};
    return on_vmm_thread(ctx, do_snapshot, &a, err, errlen);
}

static char *vmm_read_snapshot_config(void *ctx, const char *dir, const char *mem, char *err,
                                      size_t errlen)
{
    struct read_config_args a = {dir, mem, NULL};
    return on_vmm_thread(ctx, do_read_config, &a, err, errlen) ? NULL : a.text;
}

static int vmm_open_output(void *ctx, const char *path, char *err, size_t errlen)
{
    struct open_args a = {path, -1};
    return on_vmm_thread(ctx, do_open_output, &a, err, errlen) ? -1 : a.fd;
}

/* Firecracker's groups and names where it has them (its counters are what
 * happened since the last flush), kvmc's own names for the rest. */
static size_t vmm_metrics(void *ctx, char *out, size_t cap)
{
    struct fc_vmm *v = ctx;
    kvmc_stats now = KVMC_STATS_INIT;
    if (!v->vm || kvmc_vm_get_stats(v->vm, &now) != KVMC_OK)
        return 0;
    const kvmc_stats *was = &v->flushed;
#define D(field) (unsigned long long)(now.field - was->field)
    int n = snprintf(
        out, cap,
        "\"vcpu\":{\"exit_io_in\":%llu,\"exit_io_out\":%llu,\"exit_mmio_read\":%llu,"
        "\"exit_mmio_write\":%llu,\"exit_other\":%llu},"
        "\"block\":{\"read_count\":%llu,\"read_bytes\":%llu,\"write_count\":%llu,"
        "\"write_bytes\":%llu,\"flush_count\":%llu,\"execute_fails\":%llu},"
        "\"net\":{\"rx_packets_count\":%llu,\"rx_bytes_count\":%llu,\"rx_dropped\":%llu,"
        "\"tx_packets_count\":%llu,\"tx_bytes_count\":%llu},"
        "\"vsock\":{\"conns_added\":%llu,\"conns_removed\":%llu,\"rx_bytes_count\":%llu,"
        "\"tx_bytes_count\":%llu},"
        "\"entropy\":{\"entropy_bytes\":%llu},\"vmm\":{\"virtio_errors\":%llu},",
        D(exit_io_in), D(exit_io_out), D(exit_mmio_read), D(exit_mmio_write), D(exit_other),
        D(block_read_count), D(block_read_bytes), D(block_write_count), D(block_write_bytes),
        D(block_flush_count), D(block_errors), D(net_rx_packets), D(net_rx_bytes),
        D(net_rx_dropped), D(net_tx_packets), D(net_tx_bytes), D(vsock_conns_opened),
        D(vsock_conns_closed), D(vsock_rx_bytes), D(vsock_tx_bytes), D(rng_bytes),
        D(virtio_errors));
#undef D
    if (n < 0 || (size_t)n >= cap)
        return 0; /* not a cut group: nothing */
    v->flushed = now;
    return (size_t)n;
}

struct fc_backend fc_vmm_backend(struct fc_vmm *v)
{
    return (struct fc_backend){.start = vmm_start, .pause = vmm_pause, .resume = vmm_resume,
                               .ctrl_alt_del = vmm_ctrl_alt_del, .snapshot = vmm_snapshot,
                               .read_snapshot_config = vmm_read_snapshot_config,
                               .load = vmm_load, .metrics = vmm_metrics,
                               .open_output = vmm_open_output, .ctx = v};
}

kvmc_vm *fc_vmm_wait_started(struct fc_vmm *v, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&v->lock);
    while (!v->started && !v->stopping &&
           pthread_cond_timedwait(&v->cond, &v->lock, &until) == 0)
        ;
    kvmc_vm *vm = v->started && !v->stopping ? v->vm : NULL;
    pthread_mutex_unlock(&v->lock);
    return vm;
}

void fc_vmm_stop(struct fc_vmm *v)
{
    pthread_mutex_lock(&v->lock);
    v->stopping = true;
    if (v->started)
        kvmc_vm_stop(v->vm);
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

bool fc_vmm_stopping(struct fc_vmm *v)
{
    pthread_mutex_lock(&v->lock);
    bool stopping = v->stopping;
    pthread_mutex_unlock(&v->lock);
    return stopping;
}
