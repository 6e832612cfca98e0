/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd --auto-pool under real memory pressure: a cgroup made for the
 * test, a memory hog inside it under a memory limit (anonymous memory
 * touched, and a file read over and over through a page cache that does
 * not fit), real PSI from the kernel. vtmemd must lower the pool while
 * the hog runs and grow it back after it ends.
 * Cgroup v2 for PSI; the memory limit is v2's memory.max, or on a hybrid
 * host (memory controller on v1) the v1 memory cgroup of the same path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
 * acknowledges every LIMIT at once (holding nothing).
 */
#define DEV_UUID "0123abcd-0000-4000-8000-000000000001"

static gpointer obedient_device(gpointer data)
{
    int s = GPOINTER_TO_INT(data);
    GString *in = g_string_new(NULL);
    char buf[512];
    ssize_t n;

    while ((n = read(s, buf, sizeof(buf))) > 0) {
        char *nl;

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

static int device_start(const char *sock, GThread **thread)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_autofree char *reg = g_strdup_printf("REGISTER 1 " DEV_UUID
                                           " 0 0 %llu %llu obedient\n",
                                           CEILING, CEILING);

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    g_assert_cmpint(connect(s, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(write(s, reg, strlen(reg)), ==, (ssize_t)strlen(reg));
    *thread = g_thread_new("device", obedient_device, GINT_TO_POINTER(s));
    return s;
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

/* The device's limit (STATUS VM line). */
static uint64_t device_limit(const char *sock)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) lines = vtmem_line_request(sock, "STATUS", reply_end,
                                             10000, &err);

    g_assert_no_error(err);
    for (int i = 1; lines[i]; i++) {
        const char *p = strstr(lines[i], " limit=");

        if (g_str_has_prefix(lines[i], "VM uuid=" DEV_UUID) && p) {
            return g_ascii_strtoull(p + 7, NULL, 10);
        }
    }
    g_error("no VM line for the device");
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
    GThread *dev_thread;
    int dev;
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
    dev = device_start(sock, &dev_thread);
    /*
     * no pressure, room in the host: the pool stays at the ceiling, all
     * of it the device's
     */
    g_usleep(1500000);
    g_assert_cmpuint(status_u64(sock, "auto-pool"), ==, 1);
    g_assert_cmpuint(status_u64(sock, "limit"), ==, CEILING);
    g_assert_cmpuint(device_limit(sock), ==, CEILING);

    hog_pid = fork();
    g_assert_cmpint(hog_pid, >=, 0);
    if (hog_pid == 0) {
        hog(&cg, file);
    }
    shrink_s = wait_pool(sock, true, CEILING, HOG_MAX_S - 5);
    g_test_message("pool below the ceiling %.1f s after the hog started"
                   " (it writes %llu MiB first)", shrink_s, HOG_FILE / MiB);
    g_assert_cmpfloat(shrink_s, >=, 0);
    /* while it lasts, the pool keeps shrinking (10% a decision) */
    deep_s = wait_pool(sock, true, CEILING / 4 * 3, HOG_MAX_S - 10);
    g_test_message("pool below 3/4 of the ceiling %.1f s later", deep_s);
    g_assert_cmpfloat(deep_s, >=, 0);
    /* the shrink reached the device's lease (it acknowledges at once) */
    for (int i = 0; i < 50 && device_limit(sock) >= CEILING / 4 * 3; i++) {
        g_usleep(100000);
    }
    g_assert_cmpuint(device_limit(sock), <, CEILING / 4 * 3);
    g_assert_cmpuint(device_limit(sock), <=, status_u64(sock, "limit"));
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
    for (int i = 0; i < 50 && device_limit(sock) < CEILING; i++) {
        g_usleep(100000);
    }
    g_assert_cmpuint(device_limit(sock), ==, CEILING);
    status = vtmemd_stop(vtmemd, SIGTERM);
    g_thread_join(dev_thread);   /* ends at the daemon's close */
    close(dev);
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
