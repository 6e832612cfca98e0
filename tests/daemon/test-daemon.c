/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd as a real process on a temporary socket, with real client
 * library instances in this process (and forked children for the
 * credential and crash cases).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "vtmem-line-conn.h"
#include "vtmem-pool-client.h"
#include "vtmem-pool-util.h"
#include "vtmemd-harness.h"

#define MiB (1ULL << 20)
#define G VTMEM_POOL_GRANULE

typedef struct Daemon {
    char *dir;
    char *sock;
    char *log;
    GPid pid;
    uint64_t pool;
} Daemon;

typedef struct Dev {
    const char *name;
    VtmemPoolClient *c;
    uint64_t limit;
    uint64_t held;
    unsigned n_set, n_lowered, n_down, n_up;
    bool connected;
    uint64_t refusals;
} Dev;

#define MAX_DEVS 4
static Dev *devs[MAX_DEVS];
static uint64_t *cur_pool;      /* the pool limit the daemon has now */

/*
 * VTMEMD_WRAPPER="valgrind ..." runs the daemon under a tool; then
 * every wait is given VTMEMD_TIME_SCALE times longer.
 */
static int time_scale = 5;

static const char *uuid_a = "11111111-2222-3333-4444-555555555555";
static const char *uuid_b = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/* ---- daemon process ---- */

static void daemon_start_nofile(Daemon *d, const char *pool, int grace_ms,
                                const char *extra, rlim_t nofile)
{
    g_autofree char *grace = g_strdup_printf("--grace-ms=%d", grace_ms);
    const char *args[] = { "--pool-limit", pool, grace, "--verbose", extra,
                           NULL };

    g_assert_true(vtmem_pool_parse_size(pool, &d->pool));
    d->pid = vtmemd_spawn(d->sock, d->log, nofile, args, 2000 * time_scale);
}

static void daemon_start(Daemon *d, const char *pool, int grace_ms,
                         const char *extra)
{
    daemon_start_nofile(d, pool, grace_ms, extra, 0);
}

static void daemon_kill(Daemon *d, int sig)
{
    int status;

    if (d->pid > 0) {
        status = vtmemd_stop(d->pid, sig);
        if (sig == SIGTERM) {
            g_assert_true(WIFEXITED(status));
            g_assert_cmpint(WEXITSTATUS(status), ==, 0);
        }
        d->pid = 0;
    }
}

static void daemon_setup(Daemon *d)
{
    d->dir = g_dir_make_tmp("vtmemd-test-XXXXXX", NULL);
    g_assert_nonnull(d->dir);
    d->sock = g_build_filename(d->dir, "run", "vtmemd.sock", NULL);
    d->log = g_build_filename(d->dir, "vtmemd.log", NULL);
    cur_pool = &d->pool;
    memset(devs, 0, sizeof(devs));
}

static void daemon_teardown(Daemon *d)
{
    g_autofree char *run = g_build_filename(d->dir, "run", NULL);

    daemon_kill(d, SIGTERM);
    /* a clean exit removes the socket */
    g_assert_false(g_file_test(d->sock, G_FILE_TEST_EXISTS));
    if (g_test_failed() || g_getenv("VTMEMD_TEST_SHOW_LOG")) {
        g_autofree char *text = NULL;

        if (g_file_get_contents(d->log, &text, NULL, NULL)) {
            g_printerr("---- vtmemd log ----\n%s----\n", text);
        }
    }
    g_unlink(d->log);
    g_rmdir(run);
    g_rmdir(d->dir);
    g_free(d->dir);
    g_free(d->sock);
    g_free(d->log);
    cur_pool = NULL;
}

static bool log_contains(Daemon *d, const char *needle)
{
    g_autofree char *text = NULL;

    return g_file_get_contents(d->log, &text, NULL, NULL) &&
           strstr(text, needle);
}

/* ---- devices ---- */

static uint64_t charge_of(const Dev *v)
{
    return v->held > v->limit ? v->held : v->limit;
}

static uint64_t dev_set_limit(void *opaque, uint64_t limit)
{
    Dev *v = opaque;
    uint64_t sum = 0;

    v->n_set++;
    if (limit < v->limit) {
        v->n_lowered++;
    }
    if (limit > v->limit && v->connected) {
        /* A raise must fit: everything devices may hold stays <= pool. */
        v->limit = limit;
        for (int i = 0; i < MAX_DEVS; i++) {
            if (devs[i] && devs[i]->c) {
                sum += charge_of(devs[i]);
            }
        }
        if (cur_pool && sum > *cur_pool) {
            g_error("raise of %s to %" G_GUINT64_FORMAT
                    " makes %" G_GUINT64_FORMAT " > pool %" G_GUINT64_FORMAT,
                    v->name, limit, sum, *cur_pool);
        }
    }
    v->limit = limit;
    return v->held;
}

static void dev_conn(void *opaque, bool up)
{
    Dev *v = opaque;

    v->connected = up;
    if (up) {
        v->n_up++;
    } else {
        v->n_down++;
    }
}

static const VtmemPoolClientOps dev_ops = {
    .set_limit = dev_set_limit,
    .connection_changed = dev_conn,
};

static void dev_open(Dev *v, Daemon *d, const char *name, const char *uuid,
                     uint64_t cap)
{
    g_autoptr(GError) err = NULL;

    memset(v, 0, sizeof(*v));
    v->name = name;
    v->c = vtmem_pool_client_new(d->sock, name, uuid, cap, &dev_ops, v, NULL,
                                 &err);
    g_assert_no_error(err);
    g_assert_nonnull(v->c);
    v->limit = vtmem_pool_client_get_limit(v->c);
    for (int i = 0; i < MAX_DEVS; i++) {
        if (!devs[i]) {
            devs[i] = v;
            break;
        }
    }
}

static void dev_close(Dev *v)
{
    vtmem_pool_client_free(v->c);
    v->c = NULL;
    for (int i = 0; i < MAX_DEVS; i++) {
        if (devs[i] == v) {
            devs[i] = NULL;
        }
    }
}

static void dev_use(Dev *v, uint64_t held, uint64_t wanted)
{
    v->held = held;
    vtmem_pool_client_update(v->c, held, wanted);
}

/* Usage with the device's counters (refusals: puts refused, ever). */
static void dev_report(Dev *v, uint64_t held, uint64_t wanted,
                       uint64_t refusals)
{
    VtmemPoolCounters cnt = {
        .refusals = refusals, .stored_pages = held / 4096,
    };

    v->held = held;
    vtmem_pool_client_report(v->c, held, wanted, &cnt);
}

/* Run the default main context until cond holds or ms pass. */
#define WAIT_FOR(cond, ms)                                                   \
    do {                                                                     \
        gint64 deadline_ = g_get_monotonic_time() +                          \
                           (gint64)(ms) * 1000 * time_scale;                 \
        while (!(cond) && g_get_monotonic_time() < deadline_) {              \
            if (!g_main_context_iteration(NULL, FALSE)) {                    \
                g_usleep(1000);                                              \
            }                                                                \
        }                                                                    \
        if (!(cond)) {                                                       \
            g_error("timed out waiting for: %s", #cond);                    \
        }                                                                    \
    } while (0)

static void spin(int ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)ms * 1000;

    while (g_get_monotonic_time() < deadline) {
        if (!g_main_context_iteration(NULL, FALSE)) {
            g_usleep(1000);
        }
    }
}

/* ---- raw sockets and the control channel ---- */

static int raw_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { .tv_sec = 3 };

    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    /* a full backlog makes connect wait: not forever */
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(s);
        return -1;
    }
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return s;
}

/* Read until EOF (or timeout); returns what came. */
static char *raw_read_all(int s, bool *eof)
{
    GString *str = g_string_new(NULL);
    char buf[512];
    ssize_t n;

    *eof = false;
    while ((n = read(s, buf, sizeof(buf))) > 0) {
        g_string_append_len(str, buf, n);
    }
    *eof = n == 0 || (n < 0 && errno == ECONNRESET);
    return g_string_free(str, FALSE);
}

/* Read one line (blocking, with the socket's timeout). */
static char *raw_read_line(int s)
{
    GString *str = g_string_new(NULL);
    char ch;

    while (read(s, &ch, 1) == 1) {
        if (ch == '\n') {
            return g_string_free(str, FALSE);
        }
        g_string_append_c(str, ch);
    }
    g_string_free(str, TRUE);
    return NULL;
}

static void raw_write(int s, const char *text)
{
    g_assert_cmpint(write(s, text, strlen(text)), ==, (ssize_t)strlen(text));
}

/*
 * A fresh connection sends input: the daemon answers with error (the
 * whole reply when whole, else its end) and closes the connection.
 */
static void assert_refused(Daemon *d, const char *input, const char *error,
                           bool whole)
{
    int s = raw_connect(d->sock);
    g_autofree char *out = NULL;
    bool eof;

    raw_write(s, input);
    out = raw_read_all(s, &eof);
    g_assert_true(eof);
    if (whole) {
        g_assert_cmpstr(out, ==, error);
    } else {
        g_assert_true(g_str_has_suffix(out, error));
    }
    close(s);
}

static bool reply_end(const char *line)
{
    return strcmp(line, "OK") == 0 || strcmp(line, "END") == 0 ||
           g_str_has_prefix(line, "ERR");
}

/*
 * One control command (through the blocking line request vtmemctl
 * uses); returns the reply lines up to OK/ERR/END, '\n' after each.
 */
static char *control(Daemon *d, const char *cmd)
{
    g_autoptr(GError) err = NULL;
    g_auto(GStrv) lines = vtmem_line_request(d->sock, cmd, reply_end,
                                             3000 * time_scale, &err);
    g_autofree char *joined = NULL;

    g_assert_no_error(err);
    joined = g_strjoinv("\n", lines);
    return g_strconcat(joined, "\n", NULL);
}

/* A key's number from the POOL line of STATUS. */
static uint64_t status_pool(Daemon *d, const char *key)
{
    g_autofree char *st = control(d, "STATUS");
    g_autofree char *pat = g_strdup_printf(" %s=", key);
    const char *p = strstr(st, pat);

    g_assert_true(g_str_has_prefix(st, "POOL "));
    g_assert_nonnull(p);
    return g_ascii_strtoull(p + strlen(pat), NULL, 10);
}

/* ---- tests ---- */

/* Leases come in granules as usage grows, and go back when it drops. */
static void test_lease(void)
{
    Daemon d = { 0 };
    Dev a;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    g_assert_true(vtmem_pool_client_is_connected(a.c) == false);
    g_assert_cmpuint(a.limit, ==, 0);    /* registered: no lease yet */
    /* one granule of headroom */
    WAIT_FOR(a.connected && a.limit == 1 * G, 2000);
    dev_use(&a, 3 * MiB, VTMEM_POOL_WANT_AUTO);
    WAIT_FOR(a.limit == 2 * G, 2000);
    dev_use(&a, 2 * G + 1, VTMEM_POOL_WANT_AUTO);
    WAIT_FOR(a.limit == 4 * G, 2000);
    g_assert_cmpuint(status_pool(&d, "charged"), ==, 4 * G);
    /* usage falls: surplus goes back */
    dev_use(&a, 0, VTMEM_POOL_WANT_AUTO);
    WAIT_FOR(a.limit == 1 * G, 2000);
    WAIT_FOR(status_pool(&d, "charged") == 1 * G, 2000);
    /* the cap (the device's own limit) bounds the lease */
    g_assert_cmpuint(vtmem_pool_client_set_cap(a.c, 6 * MiB), ==, 1 * G);
    dev_use(&a, 0, 1ULL << 30);
    spin(200);
    WAIT_FOR(a.limit == 6 * MiB, 2000);
    g_assert_cmpuint(vtmem_pool_client_get_limit(a.c), ==, 6 * MiB);
    dev_close(&a);
    WAIT_FOR(status_pool(&d, "charged") == 0, 2000);
    daemon_teardown(&d);
}

/* A second VM takes half; weights shift the split; leaving gives back. */
static void test_contention(void)
{
    Daemon d = { 0 };
    Dev a, b;
    g_autofree char *r = NULL;
    g_autofree char *cmd = NULL;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    dev_use(&a, 0, 64 * MiB);
    WAIT_FOR(a.limit == 64 * MiB, 2000);
    g_assert_cmpuint(a.n_lowered, ==, 0);

    dev_open(&b, &d, "vm-b", uuid_b, 1ULL << 30);
    dev_use(&b, 0, 64 * MiB);
    WAIT_FOR(a.limit == 32 * MiB && b.limit == 32 * MiB, 2000);
    g_assert_cmpuint(a.n_lowered, >=, 1);   /* the callback saw it drop */

    cmd = g_strdup_printf("SET-VM-WEIGHT %s 300", uuid_b);
    r = control(&d, cmd);
    g_assert_cmpstr(r, ==, "OK\n");
    WAIT_FOR(a.limit == 16 * MiB && b.limit == 48 * MiB, 2000);

    /* A's cap from the daemon side */
    g_free(r);
    g_free(cmd);
    cmd = g_strdup_printf("SET-VM-LIMIT %s 8388608", uuid_b);
    r = control(&d, cmd);
    g_assert_cmpstr(r, ==, "OK\n");
    WAIT_FOR(a.limit == 56 * MiB && b.limit == 8 * MiB, 2000);
    g_free(r);
    g_free(cmd);
    cmd = g_strdup_printf("SET-VM-LIMIT %s none", uuid_b);
    r = control(&d, cmd);
    g_assert_cmpstr(r, ==, "OK\n");
    WAIT_FOR(a.limit == 16 * MiB && b.limit == 48 * MiB, 2000);

    /* B leaves: A gets everything back */
    dev_close(&b);
    WAIT_FOR(a.limit == 64 * MiB, 2000);
    g_assert_true(log_contains(&d, "closed: device left"));

    /* the operator lowers the pool: A shrinks, nothing exceeds */
    g_free(r);
    r = control(&d, "SET-POOL-LIMIT 20971520");
    g_assert_cmpstr(r, ==, "OK\n");
    d.pool = 20 * MiB;
    WAIT_FOR(a.limit == 20 * MiB, 2000);
    g_assert_cmpuint(status_pool(&d, "charged"), ==, 20 * MiB);
    dev_close(&a);
    daemon_teardown(&d);
}

/* A key's value on the VM line of uuid in STATUS (NULL: none). */
static char *status_vm(Daemon *d, const char *uuid, const char *key)
{
    g_autofree char *st = control(d, "STATUS");
    g_autofree char *vm = g_strdup_printf("VM uuid=%s ", uuid);
    g_autofree char *pat = g_strdup_printf(" %s=", key);
    const char *line = strstr(st, vm);
    const char *p, *end;

    g_assert_nonnull(line);
    end = strchr(line, '\n');
    p = g_strstr_len(line, end - line, pat);
    if (!p) {
        return NULL;
    }
    p += strlen(pat);
    return g_strndup(p, strcspn(p, "\n "));
}

static bool vm_is(Daemon *d, const char *uuid, const char *key,
                  const char *val)
{
    g_autofree char *v = status_vm(d, uuid, key);

    return v && strcmp(v, val) == 0;
}

/*
 * Leases by demand: of two VMs of one weight that both want more than
 * half the pool, the one whose puts are refused borrows what the idle one
 * has above its floor (a quarter of the pool); the idle one takes it back
 * when its own puts are refused; when nobody is refused any more the
 * split is even again. Every step keeps the pool (dev_set_limit checks).
 */
static void test_demand(void)
{
    Daemon d = { 0 };
    Dev a, b;
    gint64 deadline;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, "--pressed-hold-ms=2000");
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    dev_open(&b, &d, "vm-b", uuid_b, 1ULL << 30);
    /* the first count is only the baseline: not pressed */
    a.refusals = 7;
    dev_report(&a, 0, 64 * MiB, a.refusals);
    dev_report(&b, 0, 64 * MiB, b.refusals);
    WAIT_FOR(a.limit == 32 * MiB && b.limit == 32 * MiB, 2000);
    dev_report(&a, 32 * MiB, 64 * MiB, a.refusals);
    dev_report(&b, 32 * MiB, 64 * MiB, b.refusals);
    spin(200);
    g_assert_true(vm_is(&d, uuid_a, "pressed", "0"));
    g_assert_true(vm_is(&d, uuid_a, "refusals", "7"));
    g_assert_true(vm_is(&d, uuid_a, "stored-pages", "8192"));
    g_assert_true(vm_is(&d, uuid_a, "reason", "fair"));

    /* A's puts are refused: B lends down to its floor, 16M */
    a.refusals += 43;
    dev_report(&a, 32 * MiB, 64 * MiB, a.refusals);
    WAIT_FOR(b.limit == 16 * MiB, 2000);
    g_assert_true(vm_is(&d, uuid_a, "pressed", "1"));
    g_assert_true(vm_is(&d, uuid_b, "reason", "lent"));
    g_assert_true(vm_is(&d, uuid_a, "reason", "pressed"));
    /* B still holds 32M: A gets nothing before B's guest shrinks */
    spin(100);
    g_assert_cmpuint(a.limit, ==, 32 * MiB);
    dev_report(&b, 16 * MiB, 64 * MiB, b.refusals);
    WAIT_FOR(a.limit == 48 * MiB, 2000);
    g_assert_true(log_contains(&d, "pressed: 43 puts refused"));
    g_assert_true(log_contains(&d, "share 33554432 -> 16777216 (lent;"));
    g_assert_true(log_contains(&d, "share 33554432 -> 50331648 (pressed;"));

    /*
     * Both are refused: B takes its share back. (A grown count goes out
     * at most every VTMEM_POOL_REFUSAL_REPORT_MS after the last report.)
     */
    spin(VTMEM_POOL_REFUSAL_REPORT_MS + 20);
    dev_report(&a, 48 * MiB, 64 * MiB, ++a.refusals);
    dev_report(&b, 16 * MiB, 64 * MiB, ++b.refusals);
    WAIT_FOR(a.limit == 32 * MiB, 2000);
    g_assert_true(vm_is(&d, uuid_b, "pressed", "1"));
    dev_report(&a, 32 * MiB, 64 * MiB, a.refusals);
    WAIT_FOR(b.limit == 32 * MiB, 2000);
    g_assert_true(vm_is(&d, uuid_a, "reason", "fair"));

    /* A keeps being refused, B not: when B's hold ends A borrows again */
    deadline = g_get_monotonic_time() + 5000 * 1000 * time_scale;
    while (b.limit != 16 * MiB) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        spin(VTMEM_POOL_REFUSAL_REPORT_MS + 20);
        dev_report(&a, 32 * MiB, 64 * MiB, ++a.refusals);
    }
    dev_report(&b, 16 * MiB, 64 * MiB, b.refusals);
    WAIT_FOR(a.limit == 48 * MiB, 2000);
    /* nobody is refused any more: the holds end, B gets its half back */
    dev_report(&a, 32 * MiB, 64 * MiB, a.refusals);
    WAIT_FOR(a.limit == 32 * MiB && b.limit == 32 * MiB, 4000);
    g_assert_true(vm_is(&d, uuid_a, "pressed", "0"));
    g_assert_true(vm_is(&d, uuid_b, "pressed", "0"));
    g_assert_cmpuint(status_pool(&d, "decisions"), >=, 8);
    dev_close(&a);
    dev_close(&b);
    daemon_teardown(&d);
}

/* Counters that make no sense close the connection. */
static void test_bad_counters(void)
{
    Daemon d = { 0 };

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    assert_refused(&d,
                   "REGISTER 1 11111111-2222-3333-4444-555555555555 0 0 0 0 x\n"
                   "UPDATE 0 0 0 9 0\nUPDATE 0 0 0 8 0\n",
                   "ERROR UPDATE: the refusal count went down\n", false);
    assert_refused(&d,
                   "REGISTER 1 11111111-2222-3333-4444-555555555555 0 0 0 0 x\n"
                   "UPDATE 0 0 0 9\n",
                   "ERROR bad UPDATE\n", false);
    assert_refused(&d,
                   "REGISTER 1 11111111-2222-3333-4444-555555555555 0 0 0 0 x\n"
                   "UPDATE 0 0 0 9 1 2\n",
                   "ERROR bad UPDATE\n", false);
    daemon_teardown(&d);
}

/*
 * The daemon dies and comes back smaller; devices keep their pages and
 * leases meanwhile, re-register, and are shrunk to fit.
 */
static void test_restart(void)
{
    Daemon d = { 0 };
    Dev a, b;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    dev_open(&b, &d, "vm-b", uuid_b, 1ULL << 30);
    dev_use(&a, 0, 64 * MiB);
    dev_use(&b, 0, 64 * MiB);
    WAIT_FOR(a.limit == 32 * MiB && b.limit == 32 * MiB, 2000);
    dev_use(&a, 28 * MiB, 64 * MiB);
    dev_use(&b, 28 * MiB, 64 * MiB);
    spin(50);

    daemon_kill(&d, SIGKILL);
    WAIT_FOR(!a.connected && !b.connected, 2000);
    /* leases are kept while the daemon is away */
    spin(300);
    g_assert_cmpuint(a.limit, ==, 32 * MiB);
    g_assert_cmpuint(b.limit, ==, 32 * MiB);
    g_assert_cmpuint(vtmem_pool_client_get_limit(a.c), ==, 32 * MiB);

    daemon_start(&d, "40M", 300, NULL);
    WAIT_FOR(a.connected && b.connected, 5000);
    /* over the pool: both are lowered to their share, never raised */
    WAIT_FOR(a.limit == 20 * MiB && b.limit == 20 * MiB, 3000);
    /* they still hold 28M each: counted until they report it freed */
    g_assert_cmpuint(status_pool(&d, "charged"), ==, 56 * MiB);
    dev_use(&a, 16 * MiB, 64 * MiB);
    dev_use(&b, 16 * MiB, 64 * MiB);
    WAIT_FOR(status_pool(&d, "charged") == 40 * MiB, 2000);
    g_assert_cmpuint(a.n_up, ==, 2);
    dev_close(&a);
    dev_close(&b);
    daemon_teardown(&d);
}

/*
 * A device that starts while the daemon is down runs on its own limit
 * and registers when the daemon appears (in the daemon's grace period,
 * where what a registering device holds is believed up to its cap and
 * the pool).
 */
static void test_standalone(void)
{
    Daemon d = { 0 };
    Dev a;

    daemon_setup(&d);
    dev_open(&a, &d, "vm-a", uuid_a, 12 * MiB);
    g_assert_cmpuint(a.limit, ==, 12 * MiB);
    dev_use(&a, 10 * MiB, VTMEM_POOL_WANT_AUTO);
    spin(150);
    g_assert_false(a.connected);
    daemon_start(&d, "8M", 2000, NULL);
    WAIT_FOR(a.connected, 5000);
    WAIT_FOR(a.limit == 8 * MiB, 2000);
    g_assert_cmpuint(status_pool(&d, "charged"), ==, 10 * MiB);
    dev_use(&a, 4 * MiB, 4 * MiB);
    WAIT_FOR(status_pool(&d, "charged") <= 8 * MiB, 2000);
    dev_close(&a);
    daemon_teardown(&d);
}

/* Garbage, oversized and partial input closes only that connection. */
static void test_garbage(void)
{
    Daemon d = { 0 };
    Dev a;
    char big[2000];
    bool eof;
    int s, partial;
    char *out;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    WAIT_FOR(a.connected && a.limit == G, 2000);

    /* a partial line is held without blocking anyone */
    partial = raw_connect(d.sock);
    raw_write(partial, "REGIS");

    s = raw_connect(d.sock);
    raw_write(s, "HELLO\001\n");
    out = raw_read_all(s, &eof);
    g_assert_true(eof);
    g_assert_true(g_str_has_prefix(out, "ERROR non-printable"));
    g_free(out);
    close(s);

    s = raw_connect(d.sock);
    memset(big, 'A', sizeof(big));
    g_assert_cmpint(write(s, big, sizeof(big)), ==, (ssize_t)sizeof(big));
    out = raw_read_all(s, &eof);
    g_assert_true(eof);
    g_free(out);
    close(s);

    assert_refused(&d, "REGISTER 1 not-a-uuid 0 0 0 0 x\n",
                   "ERROR REGISTER: bad uuid\n", true);

    assert_refused(&d, "REGISTER 1 11111111-2222-3333-4444-555555555555 "
                   "99999999999999999999999 0 0 0 x\n",
                   "ERROR REGISTER: bad number\n", true);

    assert_refused(&d, "STATUS  " "\n",
                   "ERROR malformed line\n", true);

    /* everybody else is fine, the partial one too */
    dev_use(&a, 0, 12 * MiB);
    WAIT_FOR(a.limit == 12 * MiB, 2000);
    g_assert_cmpuint(a.n_down, ==, 0);
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 1);
    raw_write(partial,
              "TER 1 aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee 0 0 0 0 late\n");
    out = raw_read_line(partial);
    g_assert_nonnull(out);
    g_assert_true(g_str_has_prefix(out, "WELCOME 1 4194304 "));
    g_free(out);
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 2);
    raw_write(partial, "BYE\n");
    out = raw_read_all(partial, &eof);
    g_assert_true(eof);
    g_free(out);
    close(partial);

    g_assert_true(log_contains(&d,
                               "protocol error: non-printable byte in line"));
    g_assert_true(log_contains(&d, "protocol error: line too long"));
    g_assert_true(log_contains(&d, "protocol error: REGISTER: bad uuid"));
    dev_close(&a);
    daemon_teardown(&d);
}

/*
 * A device whose process dies without BYE gives its budget back; one
 * whose connection breaks while its process lives keeps it (its pages
 * are still there) until it re-registers.
 */
static void test_crash(void)
{
    Daemon d = { 0 };
    int p[2], status;
    pid_t pid;
    char c;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    g_assert_cmpint(pipe(p), ==, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        int s = raw_connect(d.sock);
        char *l1, *l2;

        raw_write(s, "REGISTER 1 11111111-2222-3333-4444-555555555555 "
                     "0 0 1073741824 8388608 crashy\n");
        l1 = raw_read_line(s);
        l2 = raw_read_line(s);
        if (!l1 || !l2 || strcmp(l2, "LIMIT 1 8388608") != 0) {
            _exit(2);
        }
        raw_write(s, "ACK 1 0\n");
        if (write(p[1], "x", 1) != 1) {
            _exit(3);
        }
        pause();
        _exit(0);
    }
    close(p[1]);
    g_assert_cmpint(read(p[0], &c, 1), ==, 1);
    close(p[0]);
    WAIT_FOR(status_pool(&d, "charged") == 8 * MiB, 2000);
    kill(pid, SIGKILL);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    WAIT_FOR(status_pool(&d, "charged") == 0, 2000);
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 0);

    /* connection lost, process alive: the lease stays as a ghost */
    {
        int s = raw_connect(d.sock);
        char *l;

        raw_write(s, "REGISTER 1 aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee "
                     "0 0 1073741824 8388608 alive\n");
        g_free(raw_read_line(s));
        l = raw_read_line(s);
        g_assert_cmpstr(l, ==, "LIMIT 1 8388608");
        g_free(l);
        close(s);
        WAIT_FOR(log_contains(&d, "keeping its lease"), 2000);
        g_assert_cmpuint(status_pool(&d, "charged"), ==, 8 * MiB);
        g_assert_cmpuint(status_pool(&d, "vms"), ==, 1);
        /* the same process re-registers: the ghost is replaced */
        s = raw_connect(d.sock);
        raw_write(s, "REGISTER 1 aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee "
                     "4194304 8388608 1073741824 8388608 alive\n");
        l = raw_read_line(s);
        g_assert_true(g_str_has_prefix(l, "WELCOME"));
        g_free(l);
        WAIT_FOR(status_pool(&d, "vms") == 1, 2000);
        g_assert_cmpuint(status_pool(&d, "charged"), ==, 8 * MiB);
        raw_write(s, "BYE\n");
        close(s);
        WAIT_FOR(status_pool(&d, "charged") == 0, 2000);
    }
    daemon_teardown(&d);
}

/* Connect, send line, and map the daemon's first answer to a code. */
static int register_once(const char *sock, const char *line)
{
    static const struct { const char *reply; int code; } codes[] = {
        { "ERROR not allowed", 20 },
        { "WELCOME", 21 },
        { "ERROR control", 22 },
        { "ERROR REGISTER: uuid is not the peer's -uuid", 23 },
        { "ERROR REGISTER: uuid registered by another process", 24 },
    };
    int s = raw_connect(sock);
    g_autofree char *l = NULL;

    if (s < 0) {
        return errno == EACCES ? 11 : 12;
    }
    /* the daemon may have closed already: the answer is still there */
    (void)!write(s, line, strlen(line));
    l = raw_read_line(s);
    close(s);
    if (!l) {
        return 13;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(codes); i++) {
        if (g_str_has_prefix(l, codes[i].reply)) {
            return codes[i].code;
        }
    }
    return 14;
}

static void become_nobody(void)
{
    if (setresgid(65534, 65534, 65534) < 0 || setgroups(0, NULL) < 0 ||
        setresuid(65534, 65534, 65534) < 0) {
        _exit(10);
    }
}

static char *self_exe;

/*
 * As nobody, in a child: connect and try to register. Returns what the
 * daemon answered (first line) through the exit code. With uuid, the
 * child is this program again with "-uuid UUID" on its command line, as
 * a QEMU has.
 */
static int child_as_nobody_uuid(const char *sock, const char *line,
                                const char *uuid)
{
    pid_t pid = fork();
    int status;

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        become_nobody();
        if (uuid) {
            execl(self_exe, self_exe, "--register-child", sock, line, "-uuid",
                  uuid, NULL);
            _exit(15);
        }
        _exit(register_once(sock, line));
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int child_as_nobody(const char *sock, const char *line)
{
    return child_as_nobody_uuid(sock, line, NULL);
}

static void test_permissions(void)
{
    Daemon d = { 0 };
    g_autofree char *run = NULL;
    struct stat st;
    const char *reg = "REGISTER 1 11111111-2222-3333-4444-555555555555 "
                      "0 0 1 1 nobody\n";

    if (geteuid() != 0) {
        g_test_skip("needs root to switch to nobody");
        return;
    }
    daemon_setup(&d);
    g_assert_cmpint(chmod(d.dir, 0755), ==, 0);
    run = g_path_get_dirname(d.sock);
    daemon_start(&d, "64M", 0, NULL);
    g_assert_cmpint(stat(run, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0750);
    g_assert_cmpint(lstat(d.sock, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpint(st.st_mode & 07777, ==, 0660);
    /* the file system keeps nobody out */
    g_assert_cmpint(child_as_nobody(d.sock, reg), ==, 11);
    /* open it up: the credential check still refuses */
    g_assert_cmpint(chmod(run, 0755), ==, 0);
    g_assert_cmpint(chmod(d.sock, 0666), ==, 0);
    g_assert_cmpint(child_as_nobody(d.sock, reg), ==, 20);
    g_assert_true(log_contains(&d,
                               "rejected: uid 65534 gid 65534 not allowed"));
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 0);
    daemon_kill(&d, SIGTERM);

    /*
     * --allow-gid: the group's devices may register (their own UUID:
     * the child has no -uuid, so the null one), not control
     */
    daemon_start(&d, "64M", 0, "--allow-gid=65534");
    g_assert_cmpint(chmod(run, 0755), ==, 0);
    g_assert_cmpint(chmod(d.sock, 0666), ==, 0);
    g_assert_cmpint(child_as_nobody(d.sock, "REGISTER 1 00000000-0000-0000-"
                                    "0000-000000000000 0 0 1 1 nobody\n"),
                    ==, 21);
    g_assert_cmpint(child_as_nobody(d.sock, "SET-POOL-LIMIT 1\n"), ==, 22);
    g_assert_cmpuint(status_pool(&d, "limit"), ==, 64 * MiB);
    daemon_teardown(&d);
}

/* A client that stops reading does not block the daemon. */
static void test_slow_reader(void)
{
    Daemon d = { 0 };
    Dev a;
    int s;
    GString *many = g_string_new(NULL);

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    WAIT_FOR(a.connected, 2000);
    s = raw_connect(d.sock);
    {
        int fl = fcntl(s, F_GETFL);

        fcntl(s, F_SETFL, fl | O_NONBLOCK);
    }
    for (int i = 0; i < 4000; i++) {
        g_string_append(many, "STATUS\n");
    }
    /* write what fits; never read the replies */
    {
        size_t off = 0;
        gint64 end = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;

        while (off < many->len && g_get_monotonic_time() < end) {
            ssize_t n = write(s, many->str + off, many->len - off);

            if (n > 0) {
                off += (size_t)n;
            } else {
                spin(5);
            }
        }
    }
    dev_use(&a, 0, 20 * MiB);
    WAIT_FOR(a.limit == 20 * MiB, 3000);
    WAIT_FOR(log_contains(&d, "peer does not read its replies"), 3000);
    close(s);
    g_string_free(many, TRUE);
    dev_close(&a);
    daemon_teardown(&d);
}

/*
 * A lowered limit frees budget only when the device acknowledges it;
 * absurd claims (a device claiming a limit it was never granted) are cut
 * to what it was granted plus the baseline.
 */
static void test_ack_frees(void)
{
    Daemon d = { 0 };
    Dev a;
    int s;
    char *l;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    dev_use(&a, 0, 16 * MiB);
    WAIT_FOR(a.limit == 16 * MiB, 2000);

    s = raw_connect(d.sock);
    raw_write(s, "REGISTER 1 aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee "
                 "0 18446744073709551615 "
                 "18446744073709551615 50331648 unlimited\n");
    l = raw_read_line(s);
    g_assert_true(g_str_has_prefix(l, "WELCOME "));
    g_free(l);
    /* counted as the baseline, not 2^64-1, and lowered to its grant */
    l = raw_read_line(s);
    g_assert_cmpstr(l, ==, "LIMIT 1 0");
    g_free(l);
    g_assert_cmpuint(status_pool(&d, "charged"), ==, 20 * MiB);
    raw_write(s, "ACK 1 0\n");
    /* then raised to its want */
    l = raw_read_line(s);
    g_assert_cmpstr(l, ==, "LIMIT 2 50331648");
    g_free(l);
    raw_write(s, "ACK 2 0\n");
    WAIT_FOR(status_pool(&d, "charged") == 64 * MiB, 2000);
    /* A wants more: B is lowered, and A gets nothing until B confirms */
    dev_use(&a, 0, 64 * MiB);
    l = raw_read_line(s);
    g_assert_cmpstr(l, ==, "LIMIT 3 33554432");
    g_free(l);
    spin(300);
    g_assert_cmpuint(a.limit, ==, 16 * MiB);
    raw_write(s, "ACK 3 0\n");
    WAIT_FOR(a.limit == 32 * MiB, 2000);
    /* an ACK nobody asked for is a protocol error */
    raw_write(s, "ACK 7 0\n");
    {
        bool eof;
        char *out = raw_read_all(s, &eof);

        g_assert_true(eof);
        g_assert_cmpstr(out, ==, "ERROR ACK of a LIMIT that was not sent\n");
        g_free(out);
    }
    close(s);
    dev_close(&a);
    daemon_teardown(&d);
}

/*
 * Register on a raw connection; returns it after WELCOME (and reads the
 * first LIMIT if want_limit).
 */
static int raw_register(Daemon *d, const char *uuid, const char *nums,
                        bool want_limit)
{
    int s = raw_connect(d->sock);
    g_autofree char *line = g_strdup_printf("REGISTER 1 %s %s raw\n", uuid,
                                            nums);
    char *l;

    g_assert_cmpint(s, >=, 0);
    raw_write(s, line);
    l = raw_read_line(s);
    g_assert_nonnull(l);
    g_assert_true(g_str_has_prefix(l, "WELCOME "));
    g_free(l);
    if (want_limit) {
        l = raw_read_line(s);
        g_assert_true(g_str_has_prefix(l, "LIMIT "));
        g_free(l);
    }
    return s;
}

/*
 * E4: a peer claims to hold 2^64-1, breaks its connection and stays
 * alive as a ghost. Others must not starve: a claim is bounded by its
 * grants, a ghost is charged at most its last lease; root evicts it.
 */
static void test_ghost_starvation(void)
{
    Daemon d = { 0 };
    g_autofree char *r = NULL;
    g_autofree char *cmd = NULL;
    Dev a;
    int s;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    dev_use(&a, 0, 32 * MiB);
    WAIT_FOR(a.limit == 32 * MiB, 2000);

    s = raw_register(&d, uuid_b, "18446744073709551615 18446744073709551615 "
                     "18446744073709551615 0", false);
    /* a live device cannot claim more either */
    raw_write(s, "UPDATE 18446744073709551615 0 18446744073709551615\n");
    spin(100);
    g_assert_cmpuint(status_pool(&d, "charged"), <=,
                     32 * MiB + VTMEM_POOL_GRANULE);
    raw_write(s, "garbage\n");
    g_free(raw_read_line(s));
    close(s);
    WAIT_FOR(log_contains(&d, "keeping its lease"), 2000);
    g_assert_true(log_contains(&d, "above its leases"));
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 2);
    g_assert_cmpuint(status_pool(&d, "charged"), <=,
                     32 * MiB + VTMEM_POOL_GRANULE);
    /* A was never lowered, and can still grow to (nearly) the pool */
    dev_use(&a, 0, 60 * MiB);
    WAIT_FOR(a.limit == 60 * MiB, 2000);
    g_assert_cmpuint(a.n_lowered, ==, 0);

    /* root drops the ghost */
    cmd = g_strdup_printf("EVICT %s", uuid_b);
    r = control(&d, cmd);
    g_assert_cmpstr(r, ==, "OK\n");
    WAIT_FOR(status_pool(&d, "vms") == 1, 2000);
    g_assert_true(log_contains(&d, "evicted by uid"));
    dev_close(&a);
    daemon_teardown(&d);
}

/*
 * EVICT drops a live device (no ghost is left; its client comes back by
 * itself), refuses an unknown UUID, and is root's only.
 */
static void test_evict(void)
{
    Daemon d = { 0 };
    g_autofree char *cmd = NULL;
    char *r;
    Dev a;

    daemon_setup(&d);
    daemon_start(&d, "64M", 0, NULL);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    dev_use(&a, 0, 16 * MiB);
    WAIT_FOR(a.connected && a.limit == 16 * MiB, 2000);
    cmd = g_strdup_printf("EVICT %s", uuid_a);
    r = control(&d, cmd);
    g_assert_cmpstr(r, ==, "OK\n");
    g_free(r);
    WAIT_FOR(a.n_down == 1, 2000);
    WAIT_FOR(log_contains(&d, "closed: evicted; returning"), 2000);
    g_assert_false(log_contains(&d, "keeping its lease"));
    /* the device's client registers again (backoff 100 ms) */
    WAIT_FOR(a.n_up == 2, 3000);
    r = control(&d, "EVICT 99999999-2222-3333-4444-555555555555");
    g_assert_cmpstr(r, ==, "ERROR EVICT: no such VM\n");
    g_free(r);
    r = control(&d, "EVICT not-a-uuid");
    g_assert_cmpstr(r, ==, "ERROR EVICT: bad uuid\n");
    g_free(r);
    dev_close(&a);
    daemon_teardown(&d);
}

/* Open the socket of a daemon started by root to nobody. */
static void open_to_nobody(Daemon *d)
{
    g_autofree char *run = g_path_get_dirname(d->sock);

    g_assert_cmpint(chmod(d->dir, 0755), ==, 0);
    g_assert_cmpint(chmod(run, 0755), ==, 0);
    g_assert_cmpint(chmod(d->sock, 0666), ==, 0);
}

/*
 * A device registers as its own VM only: the UUID must be the peer's
 * -uuid, and one UUID has one live registering process.
 */
static void test_impersonation(void)
{
    Daemon d = { 0 };
    g_autofree char *reg_a = g_strdup_printf("REGISTER 1 %s 0 0 1 1 x\n",
                                             uuid_a);
    g_autofree char *reg_b = g_strdup_printf("REGISTER 1 %s 0 0 1 1 x\n",
                                             uuid_b);
    Dev a;

    if (geteuid() != 0) {
        g_test_skip("needs root to switch to nobody");
        return;
    }
    daemon_setup(&d);
    daemon_start(&d, "64M", 0, "--allow-gid=65534");
    open_to_nobody(&d);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    WAIT_FOR(a.connected, 2000);
    /* its own -uuid: accepted */
    g_assert_cmpint(child_as_nobody_uuid(d.sock, reg_b, uuid_b), ==, 21);
    /* another UUID than its -uuid, or none: refused */
    g_assert_cmpint(child_as_nobody_uuid(d.sock, reg_b, uuid_a), ==, 23);
    g_assert_cmpint(child_as_nobody(d.sock, reg_b), ==, 23);
    /* a VM's UUID registered by another live process: refused */
    g_assert_cmpint(child_as_nobody_uuid(d.sock, reg_a, uuid_a), ==, 24);
    g_assert_true(log_contains(&d, "protocol error: REGISTER: uuid is not"));
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 1);
    dev_close(&a);
    daemon_teardown(&d);
}

/* CPU seconds the process used so far. */
static double proc_cpu(pid_t pid)
{
    g_autofree char *path = g_strdup_printf("/proc/%ld/stat", (long)pid);
    g_autofree char *text = NULL;
    g_auto(GStrv) f = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    f = g_strsplit(strrchr(text, ')') + 2, " ", -1);
    return (double)(g_ascii_strtoull(f[11], NULL, 10) +
                    g_ascii_strtoull(f[12], NULL, 10)) / sysconf(_SC_CLK_TCK);
}

/* A nobody child that opens n connections and keeps them. */
static pid_t nobody_holder(const char *sock, int n)
{
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        become_nobody();    /* clears the death signal: set it after */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (int i = 0; i < n; i++) {
            struct sockaddr_un sa = { .sun_family = AF_UNIX };
            /*
             * Blocking: a full listen backlog (a daemon slow to accept on
             * a loaded machine) makes connect() wait, not fail, so every
             * attempt reaches the daemon's accept and its cap.
             */
            int s = socket(AF_UNIX, SOCK_STREAM, 0);

            g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
            (void)!connect(s, (struct sockaddr *)&sa, sizeof(sa));
        }
        pause();
        _exit(0);
    }
    return pid;
}

static void holders_stop(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int status;

        kill(pids[i], SIGKILL);
        waitpid(pids[i], &status, 0);
    }
}

static guint log_count(Daemon *d, const char *needle)
{
    g_autofree char *text = NULL;
    guint n = 0;

    if (!g_file_get_contents(d->log, &text, NULL, NULL)) {
        return 0;
    }
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/*
 * E5: peers of the allowed group open connections by the hundred: root's
 * control connection and root's devices are still served.
 */
static void test_flood(void)
{
    Daemon d = { 0 };
    pid_t pids[8];
    Dev a;

    if (geteuid() != 0) {
        g_test_skip("needs root to switch to nobody");
        return;
    }
    daemon_setup(&d);
    /* 256 fds: (256 - 32) / 2 = 112 connections, 104 shared, 52 per uid */
    daemon_start_nofile(&d, "64M", 0, "--allow-gid=65534", 256);
    open_to_nobody(&d);
    for (int i = 0; i < 8; i++) {
        pids[i] = nobody_holder(d.sock, 30);
    }
    WAIT_FOR(log_count(&d, "rejected: too many connections") >= 100, 15000);
    g_assert_cmpuint(status_pool(&d, "max-connections"), ==, 112);
    /* nobody's 52, and root's few control connections */
    g_assert_cmpuint(status_pool(&d, "connections"), <=, 52 + 4);
    g_assert_true(log_contains(&d, "from this process"));
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    WAIT_FOR(a.connected && a.limit == G, 2000);
    holders_stop(pids, 8);
    dev_close(&a);
    daemon_teardown(&d);
}

/*
 * E3: out of file descriptors, the listener pauses (no busy loop, no log
 * flood) and serves again once fds are free.
 */
static void test_fd_exhaustion(void)
{
    Daemon d = { 0 };
    struct rlimit low = { 8, 64 }, back = { 64, 64 };
    pid_t pids[4];
    int s[20];
    double cpu;

    if (geteuid() != 0) {
        g_test_skip("needs root to switch to nobody");
        return;
    }
    daemon_setup(&d);
    daemon_start_nofile(&d, "64M", 0, "--allow-gid=65534", 64);
    open_to_nobody(&d);
    for (int i = 0; i < 4; i++) {
        pids[i] = nobody_holder(d.sock, 40);
    }
    spin(300);
    /* the caps keep it within its fds: root is served */
    g_assert_cmpuint(status_pool(&d, "max-connections"), ==, 16);
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 0);
    cpu = proc_cpu(d.pid);
    spin(1000);
    g_assert_cmpfloat(proc_cpu(d.pid) - cpu, <, 0.25);

    /* fewer fds than it holds: every accept fails */
    g_assert_cmpint(prlimit(d.pid, RLIMIT_NOFILE, &low, NULL), ==, 0);
    for (int i = 0; i < 20; i++) {
        s[i] = raw_connect(d.sock);
        g_assert_cmpint(s[i], >=, 0);
    }
    cpu = proc_cpu(d.pid);
    spin(1000);
    g_assert_cmpfloat(proc_cpu(d.pid) - cpu, <, 0.25);
    g_assert_cmpuint(log_count(&d, "accept: Too many open files"), ==, 1);
    for (int i = 0; i < 20; i++) {
        close(s[i]);
    }
    g_assert_cmpint(prlimit(d.pid, RLIMIT_NOFILE, &back, NULL), ==, 0);
    /*
     * serving again: the closed connections waiting are accepted (and
     * closed) within the pause, then root's STATUS is answered
     */
    spin(500);
    g_assert_cmpuint(status_pool(&d, "vms"), ==, 0);
    holders_stop(pids, 4);
    daemon_teardown(&d);
}

/* Milliseconds one STATUS takes, to its END line. */
static double status_ms(Daemon *d)
{
    gint64 t0 = g_get_monotonic_time();
    int s = raw_connect(d->sock);
    GString *st = g_string_new(NULL);
    char buf[65536];
    ssize_t n;

    g_assert_cmpint(s, >=, 0);
    raw_write(s, "STATUS\n");
    while (!g_str_has_suffix(st->str, "END\n") &&
           (n = read(s, buf, sizeof(buf))) > 0) {
        g_string_append_len(st, buf, n);
    }
    close(s);
    g_assert_true(g_str_has_prefix(st->str, "POOL "));
    g_assert_true(g_str_has_suffix(st->str, "END\n"));
    g_string_free(st, TRUE);
    return (double)(g_get_monotonic_time() - t0) / 1000.0;
}

/*
 * E7: one peer floods UPDATEs beside 300 devices: rebalancing is
 * coalesced (at most one pass per 10 ms) and STATUS stays prompt.
 */
static void test_update_flood(void)
{
    Daemon d = { 0 };
    int socks[300];
    pid_t flooder;
    uint64_t r0, r1;
    gint64 t0, t1;
    double worst = 0;

    daemon_setup(&d);
    daemon_start(&d, "4G", 0, NULL);
    for (int i = 0; i < 300; i++) {
        g_autofree char *uuid = g_strdup_printf("%08x-0000-0000-0000-"
                                                "000000000001", i);

        socks[i] = raw_register(&d, uuid, "0 0 1073741824 8388608", false);
    }
    for (int i = 0; i < 5; i++) {
        worst = MAX(worst, status_ms(&d));
    }
    g_test_message("STATUS without a flood: worst %.1f ms", worst);
    worst = 0;
    flooder = fork();
    g_assert_cmpint(flooder, >=, 0);
    if (flooder == 0) {
        int s = raw_register(&d, "ffffffff-0000-0000-0000-000000000001",
                             "0 0 1073741824 8388608", false);
        gint64 end = g_get_monotonic_time() + 4 * G_USEC_PER_SEC;
        GString *burst = g_string_new(NULL);

        prctl(PR_SET_PDEATHSIG, SIGKILL);

        for (int i = 0; i < 100; i++) {
            g_string_append_printf(burst, "UPDATE %d 8388608 1073741824\n",
                                   i * 4096);
        }
        while (g_get_monotonic_time() < end) {
            if (write(s, burst->str, burst->len) < 0) {
                _exit(1);
            }
        }
        _exit(0);
    }
    spin(300);
    r0 = status_pool(&d, "rebalances");
    t0 = g_get_monotonic_time();
    for (int i = 0; i < 10; i++) {
        worst = MAX(worst, status_ms(&d));
        spin(100);
    }
    r1 = status_pool(&d, "rebalances");
    t1 = g_get_monotonic_time();
    g_test_message("STATUS under the flood: worst %.1f ms; %" G_GUINT64_FORMAT
                   " passes in %" G_GINT64_FORMAT " ms", worst, r1 - r0,
                   (t1 - t0) / 1000);
    g_assert_cmpfloat(worst, <, 1000.0);
    g_assert_cmpuint(r1 - r0, <=, (uint64_t)((t1 - t0) / 1000 / 10 + 10));
    kill(flooder, SIGKILL);
    waitpid(flooder, NULL, 0);
    for (int i = 0; i < 300; i++) {
        close(socks[i]);
    }
    daemon_teardown(&d);
}

/* The socket's directory must not be writable by others, nor a symlink. */
static void test_socket_dir(void)
{
    g_autofree char *dir = g_dir_make_tmp("vtmemd-dir-XXXXXX", NULL);
    g_autofree char *open_dir = g_build_filename(dir, "open", NULL);
    g_autofree char *link = g_build_filename(dir, "link", NULL);
    g_autofree char *real = g_build_filename(dir, "real", NULL);
    const struct { const char *dir; const char *why; } cases[] = {
        { open_dir, "writable by group or others" },
        { link, "is not a directory (or is a symlink)" },
    };

    g_assert_cmpint(g_mkdir(open_dir, 0770), ==, 0);
    g_assert_cmpint(chmod(open_dir, 0770), ==, 0);
    g_assert_cmpint(g_mkdir(real, 0750), ==, 0);
    g_assert_cmpint(symlink(real, link), ==, 0);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *sock = g_build_filename(cases[i].dir, "s", NULL);
        g_autofree char *log = g_build_filename(dir, "log", NULL);
        g_autofree char *err = NULL;
        int status = 0;
        pid_t pid = fork();

        g_assert_cmpint(pid, >=, 0);
        if (pid == 0) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

            prctl(PR_SET_PDEATHSIG, SIGKILL);
            dup2(fd, 2);
            execl(g_getenv("VTMEMD"), "vtmemd", "--socket", sock,
                  "--pool-limit", "1G", NULL);
            _exit(127);
        }
        /* it must refuse at once, not serve */
        for (int t = 0; t < 400 * time_scale; t++) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                pid = 0;
                break;
            }
            g_usleep(5000);
        }
        if (pid) {
            vtmemd_stop(pid, SIGKILL);
            g_error("vtmemd accepted %s", cases[i].dir);
        }
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        g_assert_true(g_file_get_contents(log, &err, NULL, NULL));
        g_assert_nonnull(strstr(err, cases[i].why));
        g_assert_false(g_file_test(sock, G_FILE_TEST_EXISTS));
        g_unlink(log);
    }
    g_unlink(link);
    g_rmdir(real);
    g_rmdir(open_dir);
    g_rmdir(dir);
}

/*
 * A daemon whose backlog is full (E3): the device does not run on its
 * own cap as if there were no pool; it stores nothing new and retries.
 */
static void test_backlog_full(void)
{
    g_autofree char *dir = g_dir_make_tmp("vtmemd-backlog-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "s", NULL);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    GPtrArray *fill = g_ptr_array_new();
    Dev a;

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(lfd, 0), ==, 0);
    for (int i = 0; i < 64; i++) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            g_assert_cmpint(errno, ==, EAGAIN);
            close(s);
            break;
        }
        g_ptr_array_add(fill, GINT_TO_POINTER(s));
    }
    {
        Daemon d = { .sock = sock };

        dev_open(&a, &d, "vm-a", uuid_a, 12 * MiB);
    }
    g_assert_cmpuint(a.limit, ==, 0);
    g_assert_false(vtmem_pool_client_is_connected(a.c));
    spin(300);
    g_assert_cmpuint(vtmem_pool_client_get_limit(a.c), ==, 0);
    dev_close(&a);
    for (guint i = 0; i < fill->len; i++) {
        close(GPOINTER_TO_INT(fill->pdata[i]));
    }
    g_ptr_array_free(fill, TRUE);
    close(lfd);
    g_unlink(sock);
    g_rmdir(dir);
}

/*
 * Answers two requests badly: a non-printable byte, then end of file
 * before the reply's last line.
 */
static gpointer bad_server(gpointer data)
{
    int lfd = GPOINTER_TO_INT(data);

    for (int i = 0; i < 2; i++) {
        int peer = accept(lfd, NULL, NULL);
        const char *reply = i ? "POOL x\n" : "POOL x\nVM \001\n";

        g_assert_cmpint(write(peer, reply, strlen(reply)), >, 0);
        g_usleep(100000);
        close(peer);
    }
    return NULL;
}

/* The blocking request: its errors are told apart. */
static void test_line_request(void)
{
    GThread *server;
    g_autofree char *dir = g_dir_make_tmp("vtmemd-req-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "s", NULL);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_autoptr(GError) err = NULL;
    char **lines;
    int lfd;

    lines = vtmem_line_request(sock, "STATUS", reply_end, 200, &err);
    g_assert_null(lines);
    g_assert_error(err, VTMEM_LINE_REQUEST_ERROR,
                   VTMEM_LINE_REQUEST_ERROR_CONNECT);
    g_clear_error(&err);

    /* a listener that never answers: a timeout, not a hang */
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    g_assert_cmpint(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(lfd, 4), ==, 0);
    lines = vtmem_line_request(sock, "STATUS", reply_end, 200, &err);
    g_assert_null(lines);
    g_assert_error(err, VTMEM_LINE_REQUEST_ERROR,
                   VTMEM_LINE_REQUEST_ERROR_TIMEOUT);
    g_clear_error(&err);
    close(accept(lfd, NULL, NULL));

    /* answers, then garbage / end of file before the last line */
    server = g_thread_new("server", bad_server, GINT_TO_POINTER(lfd));
    lines = vtmem_line_request(sock, "STATUS", reply_end, 2000, &err);
    g_assert_error(err, VTMEM_LINE_REQUEST_ERROR,
                   VTMEM_LINE_REQUEST_ERROR_PROTOCOL);
    g_clear_error(&err);
    lines = vtmem_line_request(sock, "STATUS", reply_end, 2000, &err);
    g_assert_null(lines);
    g_assert_error(err, VTMEM_LINE_REQUEST_ERROR,
                   VTMEM_LINE_REQUEST_ERROR_CLOSED);
    g_thread_join(server);
    close(lfd);
    g_unlink(sock);
    g_rmdir(dir);
}

/* Weights and VM limits survive a daemon restart with --state-file. */
static void test_state_file(void)
{
    Daemon d = { 0 };
    Dev a, b;
    g_autofree char *state = NULL;
    g_autofree char *opt = NULL;
    g_autofree char *cmd = NULL;
    g_autofree char *r = NULL;
    g_autofree char *text = NULL;

    daemon_setup(&d);
    state = g_build_filename(d.dir, "state", NULL);
    opt = g_strdup_printf("--state-file=%s", state);
    daemon_start(&d, "64M", 0, opt);
    cmd = g_strdup_printf("SET-VM-WEIGHT %s 300", uuid_b);
    r = control(&d, cmd);
    g_assert_cmpstr(r, ==, "OK\n");
    g_assert_true(g_file_get_contents(state, &text, NULL, NULL));
    g_assert_cmpstr(text, ==,
                    "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee 300 none\n");
    daemon_kill(&d, SIGKILL);
    /* plus a line the daemon must ignore */
    g_assert_true(g_file_set_contents(state,
                                      "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee "
                                      "300 none\n"
                                      "garbage line\n", -1, NULL));

    daemon_start(&d, "64M", 0, opt);
    dev_open(&a, &d, "vm-a", uuid_a, 1ULL << 30);
    dev_open(&b, &d, "vm-b", uuid_b, 1ULL << 30);
    dev_use(&a, 0, 64 * MiB);
    dev_use(&b, 0, 64 * MiB);
    WAIT_FOR(a.limit == 16 * MiB && b.limit == 48 * MiB, 2000);
    g_assert_true(log_contains(&d, "ignoring malformed line"));
    dev_close(&a);
    dev_close(&b);
    g_unlink(state);
    daemon_teardown(&d);
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--register-child") == 0) {
        return register_once(argv[2], argv[3]);
    }
    self_exe = g_canonicalize_filename(argv[0], NULL);
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (g_getenv("VTMEMD_TIME_SCALE")) {
        time_scale = MAX(5, atoi(g_getenv("VTMEMD_TIME_SCALE")));
    }
    g_test_add_func("/daemon/lease", test_lease);
    g_test_add_func("/daemon/contention", test_contention);
    g_test_add_func("/daemon/demand", test_demand);
    g_test_add_func("/daemon/bad-counters", test_bad_counters);
    g_test_add_func("/daemon/restart", test_restart);
    g_test_add_func("/daemon/standalone", test_standalone);
    g_test_add_func("/daemon/garbage", test_garbage);
    g_test_add_func("/daemon/crash", test_crash);
    g_test_add_func("/daemon/permissions", test_permissions);
    g_test_add_func("/daemon/slow-reader", test_slow_reader);
    g_test_add_func("/daemon/ack-frees", test_ack_frees);
    g_test_add_func("/daemon/state-file", test_state_file);
    g_test_add_func("/daemon/ghost-starvation", test_ghost_starvation);
    g_test_add_func("/daemon/evict", test_evict);
    g_test_add_func("/daemon/impersonation", test_impersonation);
    g_test_add_func("/daemon/flood", test_flood);
    g_test_add_func("/daemon/fd-exhaustion", test_fd_exhaustion);
    g_test_add_func("/daemon/update-flood", test_update_flood);
    g_test_add_func("/daemon/socket-dir", test_socket_dir);
    g_test_add_func("/daemon/backlog-full", test_backlog_full);
    g_test_add_func("/daemon/line-request", test_line_request);
    return g_test_run();
}
