/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd: the vtmem pool daemon. Shares one host-wide budget for
 * compressed guest pages among the virtio-tmem devices of all VMs, as
 * leases (docs/vtmemd.md). Pages never pass through here.
 * This file: options, signals, the grace period; the parts are listed in
 * vtmemd.h.
 */
#define _GNU_SOURCE
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include "vtmemd.h"

#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <glib-unix.h>

static gboolean on_signal(gpointer data)
{
    Daemon *d = data;

    g_message("signal: exiting");
    g_main_loop_quit(d->loop);
    return G_SOURCE_CONTINUE;
}

static gboolean grace_over(gpointer data)
{
    Daemon *d = data;

    d->grace_src = 0;
    g_message("grace period over: %u connections, %" G_GUINT64_FORMAT
              " bytes charged of %" G_GUINT64_FORMAT,
              d->n_conns, total_charge(d), d->pool_limit);
    daemon_schedule_rebalance(d);
    return G_SOURCE_REMOVE;
}

static bool parse_gid(const char *s, gid_t *out)
{
    uint64_t v;
    struct group *gr;

    if (vtmem_pool_parse_u64(s, &v) && v < (gid_t)-1) {
        *out = (gid_t)v;
        return true;
    }
    gr = getgrnam(s);
    if (gr) {
        *out = gr->gr_gid;
        return true;
    }
    return false;
}

/*
 * Use all the fds we may: the unit sets LimitNOFILE (its filter forbids
 * setrlimit: then the soft limit stays).
 */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * The policy's constants (docs/vtmemd.md "Automatic pool size"): shrink
 * by a tenth per second while "some" pressure is >= 5%, grow again
 * only once it is below 1% and 10 s after the last shrink, by at most
 * 64 MiB a step.
 */
static bool parse_auto_pool(VtmemAutoPoolConfig *cfg, const char *reserve,
                            const char *floor, int interval_ms)
{
    *cfg = (VtmemAutoPoolConfig) {
        .reserve = 256ULL << 20,
        .granule = VTMEM_POOL_GRANULE,
        .shrink_at = 500,
        .grow_below = 100,
        .shrink_pct = 10,
        .grow_step = 64ULL << 20,
        .grow_hold_ms = 10000,
    };
    if (reserve && !vtmem_pool_parse_size(reserve, &cfg->reserve)) {
        g_printerr("vtmemd: bad size for --pool-reserve: %s\n", reserve);
        return false;
    }
    if (floor && !vtmem_pool_parse_size(floor, &cfg->floor)) {
        g_printerr("vtmemd: bad size for --pool-floor: %s\n", floor);
        return false;
    }
    if (interval_ms < 10 || interval_ms > 3600000) {
        g_printerr("vtmemd: --auto-pool-interval-ms must be 10..3600000\n");
        return false;
    }
    /* a timer tick late by a little is still a decision */
    cfg->min_interval_ms = (uint64_t)interval_ms / 2;
    return true;
}

int main(int argc, char **argv)
{
    g_autofree char *socket_path = NULL;
    g_autofree char *pool_limit = NULL;
    g_autofree char *allow_gid = NULL;
    g_autofree char *state_file = NULL;
    g_autofree char *cgroup = NULL;
    g_autofree char *reserve = NULL;
    g_autofree char *floor = NULL;
    g_autofree char *metrics = NULL;
    gboolean verbose = FALSE;
    gboolean auto_pool = FALSE;
    gint interval_ms = 1000;
    gint pressed_hold_ms = VTMEMD_PRESSED_HOLD_MS;
    gint grace_ms = VTMEM_POOL_DEFAULT_GRACE_MS;
    GOptionEntry entries[] = {
        { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
          "Listen on PATH (default " VTMEM_POOL_DEFAULT_SOCKET ")", "PATH" },
        { "pool-limit", 'l', 0, G_OPTION_ARG_STRING, &pool_limit,
          "Host-wide budget for compressed pages, e.g. 4G (required)",
          "SIZE" },
        { "allow-gid", 'g', 0, G_OPTION_ARG_STRING, &allow_gid,
          "Also accept devices of processes in this group (name or number)",
          "GROUP" },
        { "state-file", 0, 0, G_OPTION_ARG_FILENAME, &state_file,
          "Keep per-VM weights and limits in FILE across restarts", "FILE" },
        { "grace-ms", 0, 0, G_OPTION_ARG_INT, &grace_ms,
          "After start, grant no increase for this long (default 5000)",
          "MS" },
        { "auto-pool", 0, 0, G_OPTION_ARG_NONE, &auto_pool,
          "Size the pool by memory pressure, --pool-limit the ceiling",
          NULL },
        { "cgroup", 0, 0, G_OPTION_ARG_FILENAME, &cgroup,
          "Cgroup v2 directory of the VMs (default: machine.slice if any,"
          " else the host)", "PATH" },
        { "pool-reserve", 0, 0, G_OPTION_ARG_STRING, &reserve,
          "Memory --auto-pool leaves free (default 256M)", "SIZE" },
        { "pool-floor", 0, 0, G_OPTION_ARG_STRING, &floor,
          "--auto-pool never shrinks below (default 0)", "SIZE" },
        { "auto-pool-interval-ms", 0, 0, G_OPTION_ARG_INT, &interval_ms,
          "--auto-pool decides this often (default 1000)", "MS" },
        { "pressed-hold-ms", 0, 0, G_OPTION_ARG_INT, &pressed_hold_ms,
          "A VM whose puts were refused borrows lease for this long"
          " (default 10000; 0: leases by weight only)", "MS" },
        { "metrics-listen", 0, 0, G_OPTION_ARG_STRING, &metrics,
          "Serve Prometheus metrics on http://ADDR:PORT/metrics (IPv4;"
          " :PORT is loopback)", "ADDR:PORT" },
        { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose,
          "Log debug messages", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- vtmem pool daemon");
    g_autoptr(GError) error = NULL;
    Daemon d = { .listen_fd = -1 };
    uint64_t limit;
    gid_t gid = 0;

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_summary(ctx, "Shares one host-wide budget for"
                                 " compressed guest pages among the"
                                 " virtio-tmem devices of all VMs.");
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        g_printerr("vtmemd: %s\n", error->message);
        return 1;
    }
    if (argc > 1) {
        g_printerr("vtmemd: unexpected argument: %s\n", argv[1]);
        return 1;
    }
    if (!pool_limit) {
        g_printerr("vtmemd: --pool-limit SIZE is required\n");
        return 1;
    }
    if (!vtmem_pool_parse_size(pool_limit, &limit) ||
        limit > VTMEM_POOL_MAX_BYTES) {
        g_printerr("vtmemd: bad size for --pool-limit: %s\n", pool_limit);
        return 1;
    }
    if (allow_gid && !parse_gid(allow_gid, &gid)) {
        g_printerr("vtmemd: unknown group: %s\n", allow_gid);
        return 1;
    }
    if (grace_ms < 0) {
        g_printerr("vtmemd: --grace-ms must not be negative\n");
        return 1;
    }
    if (pressed_hold_ms < 0) {
        g_printerr("vtmemd: --pressed-hold-ms must not be negative\n");
        return 1;
    }
    if (!parse_auto_pool(&d.autopool_cfg, reserve, floor, interval_ms)) {
        return 1;
    }
    if (verbose) {
        g_log_set_debug_enabled(TRUE);
    }
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    daemon_init(&d, limit, grace_ms);
    d.pressed_hold_us = (gint64)pressed_hold_ms * 1000;
    d.have_allow_gid = allow_gid != NULL;
    d.allow_gid = gid;
    d.socket_path = socket_path ? g_steal_pointer(&socket_path)
                                : g_strdup(VTMEM_POOL_DEFAULT_SOCKET);
    d.state_file = g_steal_pointer(&state_file);
    d.auto_pool = auto_pool;
    d.listen_fd = make_listener(d.socket_path, &error);
    if (d.listen_fd < 0 ||
        (d.state_file && !settings_load(&d, &error)) ||
        (auto_pool && !vtmemd_cgroup_resolve(cgroup, &d.cgroup, &error)) ||
        (metrics && !metrics_start(&d, metrics, &error))) {
        g_printerr("vtmemd: %s\n", error->message);
        daemon_fini(&d);
        return 1;
    }
    d.loop = g_main_loop_new(NULL, FALSE);
    if (grace_ms > 0) {
        d.grace_src = g_timeout_add((guint)grace_ms, grace_over, &d);
    }
    listener_start(&d);
    if (auto_pool) {
        g_message("auto pool: every %d ms, PSI from %s, memory of %s,"
                  " reserve %" G_GUINT64_FORMAT ", floor %" G_GUINT64_FORMAT,
                  interval_ms, d.cgroup.psi_dir ? d.cgroup.psi_dir : "the host",
                  d.cgroup.mem_dir ? d.cgroup.mem_dir : "no cgroup",
                  d.autopool_cfg.reserve, d.autopool_cfg.floor);
        autopool_start(&d, (guint)interval_ms);
    }
    g_unix_signal_add(SIGTERM, on_signal, &d);
    g_unix_signal_add(SIGINT, on_signal, &d);
    g_message("listening on %s, pool limit %" G_GUINT64_FORMAT " bytes,"
              " granule %llu, grace %d ms, at most %u connections",
              d.socket_path, d.pool_limit, VTMEM_POOL_GRANULE, grace_ms,
              d.max_conns);

    g_main_loop_run(d.loop);

    daemon_fini(&d);
    return 0;
}
