/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd --auto-pool under real memory pressure: a cgroup made for the
 * test, a memory hog inside it under a memory limit (anonymous memory
 * touched, and a file read over and over through a page cache that does
 * not fit), real PSI from the kernel. vtmemd must lower the pool while
 * the hog runs and grow it back after it ends. Two devices of one weight
 * share it: one reports refused puts all along (thrashing), one does not
 * (idle); the thrashing one must hold the larger lease throughout.
 * VTMEM_PRESSURE_TRACE=FILE writes the samples (bench/pressure-plot.sh
 * plots them).
 * Cgroup v2 for PSI; the memory limit is v2's memory.max, or on a hybrid
 * host (memory controller on v1) the v1 memory cgroup of the same path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "vtmem-line-conn.h"
#include "vtmemd-harness.h"

#define MiB             (1ULL << 20)
#define CEILING         (256 * MiB)
#define HOG_LIMIT       (64 * MiB)
#define HOG_ANON        (40 * MiB)
#define HOG_FILE        (128 * MiB)
#define HOG_MAX_S       40      /* the hog ends by itself after this */

typedef struct Cgroups {
    char *v2;           /* PSI: the cgroup vtmemd watches */
    char *v2_hog;       /* its child holding the hog */
    char *mem;          /* memory limit of the hog: v2_hog or v1's */
    char *mem_parent;   /* v1 only: the parent's memory cgroup */
    bool v1;
} Cgroups;

static bool write_file(const char *dir, const char *name, const char *val)
{
    g_autofree char *p = g_build_filename(dir, name, NULL);

    return g_file_set_contents_full(p, val, -1, G_FILE_SET_CONTENTS_NONE,
                                    0644, NULL);
}

static bool has_word(const char *path, const char *word)
{
    g_autofree char *t = NULL;
    g_auto(GStrv) words = NULL;

    if (!g_file_get_contents(path, &t, NULL, NULL)) {
        return false;
    }
    words = g_strsplit_set(g_strstrip(t), "\n ", -1);
    return g_strv_contains((const char *const *)words, word);
}

/* The cgroups of the test, or why there are none. */
static const char *cgroups_make(Cgroups *cg)
{
    const char *v2root = NULL, *v1mem = "/sys/fs/cgroup/memory";
    g_autofree char *name = g_strdup_printf("vtmem-test-%d", getpid());
    g_autofree char *limit = g_strdup_printf("%llu", HOG_LIMIT);
    g_autofree char *v2ctl = NULL;
    g_autofree char *v1file = NULL;

    if (geteuid() != 0) {
        return "needs root (creates cgroups)";
    }
    if (g_file_test("/sys/fs/cgroup/cgroup.controllers", G_FILE_TEST_EXISTS)) {
        v2root = "/sys/fs/cgroup";
    } else if (g_file_test("/sys/fs/cgroup/unified/cgroup.controllers",
                           G_FILE_TEST_EXISTS)) {
        v2root = "/sys/fs/cgroup/unified";
    } else {
        return "no cgroup v2 hierarchy";
    }
    if (!g_file_test("/proc/pressure/memory", G_FILE_TEST_EXISTS)) {
        return "no PSI (kernel without CONFIG_PSI or psi=0)";
    }
    cg->v2 = g_build_filename(v2root, name, NULL);
    cg->v2_hog = g_build_filename(cg->v2, "hog", NULL);
    v2ctl = g_build_filename(v2root, "cgroup.controllers", NULL);
    if (has_word(v2ctl, "memory")) {
        g_autofree char *sub = g_build_filename(v2root,
                                                "cgroup.subtree_control",
                                                NULL);

        if (!has_word(sub, "memory") &&
            !write_file(v2root, "cgroup.subtree_control", "+memory")) {
            return "cannot enable the v2 memory controller";
        }
        g_assert_cmpint(g_mkdir(cg->v2, 0755), ==, 0);
        g_assert_true(write_file(cg->v2, "cgroup.subtree_control",
                                 "+memory"));
        g_assert_cmpint(g_mkdir(cg->v2_hog, 0755), ==, 0);
        cg->mem = g_strdup(cg->v2_hog);
        g_assert_true(write_file(cg->mem, "memory.max", limit));
        return NULL;
    }
    v1file = g_build_filename(v1mem, "memory.limit_in_bytes", NULL);
    if (!g_file_test(v1file, G_FILE_TEST_EXISTS) ||
        strcmp(v2root, "/sys/fs/cgroup/unified") != 0) {
        return "no memory controller (neither v2 nor a hybrid v1)";
    }
    cg->v1 = true;
    g_assert_cmpint(g_mkdir(cg->v2, 0755), ==, 0);
    g_assert_cmpint(g_mkdir(cg->v2_hog, 0755), ==, 0);
    cg->mem_parent = g_build_filename(v1mem, name, NULL);
    g_assert_cmpint(g_mkdir(cg->mem_parent, 0755), ==, 0);
    cg->mem = g_build_filename(cg->mem_parent, "hog", NULL);
    g_assert_cmpint(g_mkdir(cg->mem, 0755), ==, 0);
    g_assert_true(write_file(cg->mem, "memory.limit_in_bytes", limit));
    return NULL;
}

static void cgroups_remove(Cgroups *cg)
{
    const char *dirs[] = { cg->mem != cg->v2_hog ? cg->mem : NULL,
                           cg->mem_parent, cg->v2_hog, cg->v2 };

    for (size_t i = 0; i < G_N_ELEMENTS(dirs); i++) {
        /* a cgroup is empty a moment after its last process is reaped */
        for (int t = 0; dirs[i] && t < 100 && rmdir(dirs[i]) != 0 &&
             errno == EBUSY; t++) {
            g_usleep(20000);
        }
    }
    g_free(cg->v2);
    g_free(cg->v2_hog);
    g_free(cg->mem);
    g_free(cg->mem_parent);
}

/*
 * The hog: joins the cgroups, touches anonymous memory, then reads a file
 * larger than its limit over and over (real reclaim, real stalls).
 */
static G_NORETURN void hog(const Cgroups *cg, const char *file)
{
    g_autofree char *me = g_strdup_printf("%d", getpid());
    static char buf[1 << 16];
    char *anon;
    int fd;
    gint64 end = g_get_monotonic_time() + HOG_MAX_S * G_USEC_PER_SEC;

    if (!write_file(cg->v2_hog, "cgroup.procs", me) ||
        (cg->v1 && !write_file(cg->mem, "cgroup.procs", me))) {
        _exit(2);
    }
    anon = mmap(NULL, HOG_ANON, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) {
        _exit(3);
    }
    for (size_t i = 0; i < HOG_ANON; i += 4096) {
        anon[i] = (char)i;
    }
    fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        _exit(4);
    }
    memset(buf, 0x5a, sizeof(buf));
    for (size_t i = 0; i < HOG_FILE; i += sizeof(buf)) {
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
            _exit(5);
        }
    }
    while (g_get_monotonic_time() < end) {
        ssize_t n = pread(fd, buf, sizeof(buf),
                          (off_t)(g_random_int_range(0, HOG_FILE / 4096)) *
                          4096 % (HOG_FILE - sizeof(buf)));

        if (n < 0) {
            _exit(6);
        }
        anon[g_random_int_range(0, HOG_ANON)]++;
    }
    _exit(0);
}

/*
 * A device that obeys: registers wanting the whole ceiling and
 * acknowledges every LIMIT at once (holding nothing). A thrashing one
 * also reports a growing count of refused puts every 200 ms.
 */
#define DEV_UUID "0123abcd-0000-4000-8000-000000000001"
#define IDLE_UUID "0123abcd-0000-4000-8000-000000000002"

typedef struct Device {
    int s;
    bool thrashing;
    GThread *thread;
} Device;

static gpointer obedient_device(gpointer data)
{
    Device *dev = data;
    int s = dev->s;
    GString *in = g_string_new(NULL);
    char buf[512];
    ssize_t n;
    uint64_t refusals = 0;

    for (;;) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        char *nl;

        if (dev->thrashing && poll(&p, 1, 200) == 0) {
            g_autofree char *upd = g_strdup_printf(
                "UPDATE 0 %llu %llu %" G_GUINT64_FORMAT " 0\n", CEILING,
                CEILING, refusals);

            refusals += 100;
            if (write(s, upd, strlen(upd)) < 0) {
                break;
            }
            continue;
        }
        n = read(s, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }

        g_string_append_len(in, buf, n);
        while ((nl = memchr(in->str, '\n', in->len))) {
            unsigned long long seq, bytes;
            g_autofree char *ack = NULL;

            *nl = '\0';
            if (sscanf(in->str, "LIMIT %llu %llu", &seq, &bytes) == 2) {
                ack = g_strdup_printf("ACK %llu 0\n", seq);
                if (write(s, ack, strlen(ack)) < 0) {
                    break;
                }
            }
            g_string_erase(in, 0, nl - in->str + 1);
        }
    }
    g_string_free(in, TRUE);
    return NULL;
}

static void device_start(const char *sock, const char *uuid,
                         const char *name, bool thrashing, Device *dev)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_autofree char *reg = g_strdup_printf("REGISTER 1 %s 0 0 %llu %llu"
                                           " %s\n", uuid, CEILING, CEILING,
                                           name);

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    g_assert_cmpint(connect(s, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(write(s, reg, strlen(reg)), ==, (ssize_t)strlen(reg));
    dev->s = s;
    dev->thrashing = thrashing;
    dev->thread = g_thread_new("device", obedient_device, dev);
}

static bool reply_end(const char *line)
{
    return strcmp(line, "END") == 0 || g_str_has_prefix(line, "ERR");
}

static uint64_t status_u64(const char *sock, const char *key)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) lines = vtmem_line_request(sock, "STATUS", reply_end,
                                             10000, &err);
    g_autofree char *pat = g_strdup_printf(" %s=", key);
    const char *p;

    g_assert_no_error(err);
    g_assert_true(g_str_has_prefix(lines[0], "POOL "));
    p = strstr(lines[0], pat);
    g_assert_nonnull(p);
    return g_ascii_strtoull(p + strlen(pat), NULL, 10);
}

/* A number on the VM line of uuid in STATUS lines. */
static uint64_t vm_u64(GStrv lines, const char *uuid, const char *key)
{
    g_autofree char *pre = g_strdup_printf("VM uuid=%s ", uuid);
    g_autofree char *pat = g_strdup_printf(" %s=", key);

    for (int i = 1; lines[i]; i++) {
        const char *p = strstr(lines[i], pat);

        if (g_str_has_prefix(lines[i], pre) && p) {
            return g_ascii_strtoull(p + strlen(pat), NULL, 10);
        }
    }
    g_error("no VM line for %s", uuid);
}

static uint64_t pool_u64(GStrv lines, const char *key)
{
    g_autofree char *pat = g_strdup_printf(" %s=", key);
    const char *p = strstr(lines[0], pat);

    g_assert_nonnull(p);
    return g_ascii_strtoull(p + strlen(pat), NULL, 10);
}

/* A device's limit (STATUS VM line). */
static uint64_t uuid_limit(const char *sock, const char *uuid)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) lines = vtmem_line_request(sock, "STATUS", reply_end,
                                             10000, &err);

    g_assert_no_error(err);
    return vm_u64(lines, uuid, "limit");
}

static uint64_t device_limit(const char *sock)
{
    return uuid_limit(sock, DEV_UUID);
}

/* The "some" stall total (µs) of a memory.pressure file; 0 if unreadable. */
static uint64_t psi_some_total(const char *path)
{
    g_autofree char *t = NULL;
    const char *p = NULL;

    if (g_file_get_contents(path, &t, NULL, NULL) &&
        g_str_has_prefix(t, "some ")) {
        p = strstr(t, " total=");
    }
    return p ? g_ascii_strtoull(p + 7, NULL, 10) : 0;
}

/*
 * Every 200 ms: the pool, the stall share since the last sample (from
 * the watched cgroup's memory.pressure, as vtmemd computes it) and the
 * avg10 vtmemd read, both devices' limits. The times from the hog's
 * start: the first stall (pressure onset), the pool's first shrink, the
 * first lowered device limits.
 */
typedef struct Sampler {
    const char *sock;
    char *psi_path;
    gint64 t0;              /* monotonic us */
    gint64 hog_start;       /* 0: not yet (set once, before hog_set) */
    gint hog_set;
    gint stop;
    GString *trace;
    double psi_s, pool_s, dev_s;    /* < 0: not seen */
    uint64_t last_total;
    gint64 last_t;
    /* the thrashing device's limit always above the idle one's */
    bool thrash_more;
    unsigned samples;
} Sampler;

static gpointer sampler(gpointer data)
{
    Sampler *sm = data;

    while (!g_atomic_int_get(&sm->stop)) {
        g_autoptr(GError) err = NULL;
        g_auto(GStrv) lines = vtmem_line_request(sm->sock, "STATUS",
                                                 reply_end, 10000, &err);
        gint64 now = g_get_monotonic_time();
        gint64 hog = g_atomic_int_get(&sm->hog_set) ? sm->hog_start : 0;
        double since = hog ? (double)(now - hog) / G_USEC_PER_SEC : -1;
        uint64_t pool, some, thrash, idle;
        uint64_t total = psi_some_total(sm->psi_path);
        double stall = sm->samples && now > sm->last_t
                       ? (double)(total - sm->last_total) * 100 /
                         (double)(now - sm->last_t) : 0;

        sm->last_total = total;
        sm->last_t = now;
        g_assert_no_error(err);
        pool = pool_u64(lines, "limit");
        some = pool_u64(lines, "pressure-some-avg10");
        thrash = vm_u64(lines, DEV_UUID, "limit");
        idle = vm_u64(lines, IDLE_UUID, "limit");
        g_string_append_printf(sm->trace, "%.2f %llu %.2f %.2f %llu %llu\n",
                               (double)(now - sm->t0) / G_USEC_PER_SEC,
                               pool / MiB, stall, some / 100.0,
                               thrash / MiB, idle / MiB);
        /* (a pool below two granules has no room for two shares) */
        if (pool >= 8 * MiB && thrash <= idle) {
            sm->thrash_more = false;
        }
        if (hog && sm->psi_s < 0 && stall > 0) {
            sm->psi_s = since;
        }
        if (hog && sm->pool_s < 0 && pool < CEILING) {
            sm->pool_s = since;
        }
        if (hog && sm->dev_s < 0 && thrash + idle < CEILING) {
            sm->dev_s = since;
        }
        sm->samples++;
        g_usleep(200000);
    }
    return NULL;
}

/*
 * Poll the pool limit until cond holds (up to timeout_s): the seconds
 * it took, or -1.
 */
static double wait_pool(const char *sock, bool below, uint64_t value,
                        int timeout_s)
{
    gint64 start = g_get_monotonic_time();

    while (g_get_monotonic_time() - start < timeout_s * G_USEC_PER_SEC) {
        uint64_t pool = status_u64(sock, "limit");

        if (below ? pool < value : pool >= value) {
            return (double)(g_get_monotonic_time() - start) / G_USEC_PER_SEC;
        }
        g_usleep(100000);
    }
    return -1;
}

static void test_pressure(void)
{
    Cgroups cg = { 0 };
    const char *why = cgroups_make(&cg);
    g_autofree char *dir = NULL;
    g_autofree char *sock = NULL;
    g_autofree char *log = NULL;
    g_autofree char *file = NULL;
    g_autofree char *logtext = NULL;
    g_autofree char *ceiling = g_strdup_printf("%llu", CEILING);
    pid_t vtmemd, hog_pid;
    Device dev, idle;
    Sampler sm = { .psi_s = -1, .pool_s = -1, .dev_s = -1,
                   .thrash_more = true };
    GThread *sampler_thread;
    const char *trace = g_getenv("VTMEM_PRESSURE_TRACE");
    double shrink_s, deep_s, grow_s;
    int status;

    if (why) {
        g_test_skip(why);
        return;
    }
    dir = g_dir_make_tmp("vtmem-pressure-XXXXXX", NULL);
    sock = g_build_filename(dir, "sock", NULL);
    log = g_build_filename(dir, "log", NULL);
    file = g_strdup_printf("/var/tmp/vtmem-pressure-%d.bin", getpid());
    {
        const char *args[] = {
            "--pool-limit", ceiling, "--auto-pool", "--cgroup", cg.v2,
            "--pool-reserve", "64M", "--auto-pool-interval-ms", "500",
            "--grace-ms", "0", NULL,
        };

        vtmemd = vtmemd_spawn(sock, log, 0, args, 10000);
    }
    device_start(sock, DEV_UUID, "thrashing", true, &dev);
    device_start(sock, IDLE_UUID, "idle", false, &idle);
    /*
     * no pressure, room in the host: the pool stays at the ceiling; the
     * thrashing device borrows the idle one's lease above its floor
     * (a quarter of the pool)
     */
    g_usleep(1500000);
    g_assert_cmpuint(status_u64(sock, "auto-pool"), ==, 1);
    g_assert_cmpuint(status_u64(sock, "limit"), ==, CEILING);
    g_assert_cmpuint(device_limit(sock), ==, CEILING / 4 * 3);
    g_assert_cmpuint(uuid_limit(sock, IDLE_UUID), ==, CEILING / 4);
    sm.sock = sock;
    sm.psi_path = g_build_filename(cg.v2, "memory.pressure", NULL);
    sm.t0 = g_get_monotonic_time();
    sm.trace = g_string_new("# s pool-MiB stall-% psi-some-avg10-%"
                            " thrashing-MiB idle-MiB (the hog from 1.5 s)\n");
    sampler_thread = g_thread_new("sampler", sampler, &sm);
    g_usleep(1500000);

    hog_pid = fork();
    g_assert_cmpint(hog_pid, >=, 0);
    if (hog_pid == 0) {
        hog(&cg, file);
    }
    sm.hog_start = g_get_monotonic_time();
    g_atomic_int_set(&sm.hog_set, 1);
    shrink_s = wait_pool(sock, true, CEILING, HOG_MAX_S - 5);
    g_test_message("pool below the ceiling %.1f s after the hog started"
                   " (it writes %llu MiB first)", shrink_s, HOG_FILE / MiB);
    g_assert_cmpfloat(shrink_s, >=, 0);
    /* while it lasts, the pool keeps shrinking (10% a decision) */
    deep_s = wait_pool(sock, true, CEILING / 4 * 3, HOG_MAX_S - 10);
    g_test_message("pool below 3/4 of the ceiling %.1f s later", deep_s);
    g_assert_cmpfloat(deep_s, >=, 0);
    /* the shrink reached the devices' leases (they acknowledge at once) */
    for (int i = 0; i < 50 && device_limit(sock) >= CEILING / 4 * 3; i++) {
        g_usleep(100000);
    }
    g_assert_cmpuint(device_limit(sock), <, CEILING / 4 * 3);
    g_assert_cmpuint(device_limit(sock) + uuid_limit(sock, IDLE_UUID), <=,
                     status_u64(sock, "limit"));
    kill(hog_pid, SIGKILL);
    g_assert_cmpint(waitpid(hog_pid, &status, 0), ==, hog_pid);
    g_unlink(file);
    g_test_message("pool %" G_GUINT64_FORMAT " when the hog was stopped",
                   status_u64(sock, "limit"));

    /* calm again: back to the ceiling after the hold (10 s) */
    grow_s = wait_pool(sock, false, CEILING, 40);
    g_test_message("pool back at the ceiling %.1f s after the hog ended",
                   grow_s);
    g_assert_cmpfloat(grow_s, >=, 0);
    for (int i = 0; i < 50 && device_limit(sock) < CEILING / 4 * 3; i++) {
        g_usleep(100000);
    }
    g_assert_cmpuint(device_limit(sock), ==, CEILING / 4 * 3);
    g_assert_cmpuint(uuid_limit(sock, IDLE_UUID), ==, CEILING / 4);
    g_usleep(1000000);
    g_atomic_int_set(&sm.stop, 1);
    g_thread_join(sampler_thread);
    g_test_message("from the hog's start: the first stall after %.1f s, the"
                   " pool lowered after %.1f s, the devices' limits after"
                   " %.1f s (%u samples of 200 ms)", sm.psi_s, sm.pool_s,
                   sm.dev_s, sm.samples);
    /* a thrashing VM holds more lease than an idle one, all along */
    g_assert_true(sm.thrash_more);
    g_assert_cmpfloat(sm.pool_s, >=, 0);
    g_assert_cmpfloat(sm.dev_s, >=, sm.pool_s);
    if (trace) {
        g_assert_true(g_file_set_contents(trace, sm.trace->str, -1, NULL));
    }
    g_string_free(sm.trace, TRUE);
    g_free(sm.psi_path);
    status = vtmemd_stop(vtmemd, SIGTERM);
    g_thread_join(dev.thread);   /* they end at the daemon's close */
    g_thread_join(idle.thread);
    close(dev.s);
    close(idle.s);
    /* exit 0: also no sanitizer report when it is built with them */
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_assert_true(g_file_get_contents(log, &logtext, NULL, NULL));
    g_assert_nonnull(strstr(logtext, "shrink: memory pressure"));
    g_assert_nonnull(strstr(logtext, "grow: free memory, no pressure"));
    if (g_test_verbose()) {
        g_printerr("%s", logtext);
    }
    g_unlink(log);
    g_unlink(sock);
    g_rmdir(dir);
    cgroups_remove(&cg);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/pressure/shrink-and-grow", test_pressure);
    return g_test_run();
}
