/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd's pool: the daemon's state, and coalesced rebalancing that moves
 * every device toward its share (the arithmetic is vtmem-policy.c's).
 */
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include "vtmemd.h"

#include <unistd.h>


bool in_grace(Daemon *d)
{
    return g_get_monotonic_time() < d->grace_until;
}

/* A ghost is never pressed: it cannot store anything. */
bool conn_pressed(const Conn *c)
{
    return c->kind == CONN_DEVICE &&
           g_get_monotonic_time() < c->pressed_until;
}

static gboolean pressed_over(gpointer data)
{
    Daemon *d = data;

    d->pressed_src = 0;
    daemon_schedule_rebalance(d);
    return G_SOURCE_REMOVE;
}

/* A pass when the first pressed device's hold ends (it may lend again). */
static void schedule_pressed_end(Daemon *d, gint64 until)
{
    gint64 now = g_get_monotonic_time();

    if (d->pressed_src) {
        g_source_remove(d->pressed_src);
        d->pressed_src = 0;
    }
    if (until > now) {
        d->pressed_src = g_timeout_add((guint)((until - now) / 1000) + 1,
                                       pressed_over, d);
    }
}

/*
 * A new target is a decision: logged with its reason (a lowered share or
 * a new reason at message level, raises for the same reason at info).
 */
static void log_decision(Daemon *d, Conn *c, uint64_t old_target,
                         VtmemShareReason old_reason)
{
    bool loud = c->target < old_target || c->reason != old_reason;

    d->n_decisions++;
    conn_log(c, loud ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_INFO,
             "share %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
             " (%s; pool %" G_GUINT64_FORMAT ", held %" G_GUINT64_FORMAT
             ", wanted %" G_GUINT64_FORMAT ", weight %u%s)", old_target,
             c->target, vtmem_share_reason_name(c->reason), d->pool_limit,
             c->held, c->wanted, conn_weight(d, c),
             conn_pressed(c) ? ", pressed" : "");
}

/*
 * Recompute every device's share and move the devices toward it
 * (vtmem_lease_plan: never raise a limit unless the sum of charges stays
 * <= pool_limit afterwards; a lowered limit counts as freed only when the
 * device acknowledges it). Ghosts are charged, not moved.
 */
void rebalance(Daemon *d)
{
    g_autofree VtmemShare *shares = g_new0(VtmemShare, d->n_conns + 1);
    g_autofree VtmemLease *leases = g_new0(VtmemLease, d->n_conns + 1);
    g_autofree Conn **devs = g_new0(Conn *, d->n_conns + 1);
    const uint64_t G = VTMEM_POOL_GRANULE;
    uint64_t ghost = 0, avail;
    gint64 pressed_end = 0;
    size_t n = 0, i;

    d->n_rebalances++;
    d->last_rebalance = g_get_monotonic_time();
    for (GList *l = d->conns; l; l = l->next) {
        Conn *c = l->data;

        if (c->kind == CONN_GHOST) {
            ghost = sat_add(ghost, conn_charge(c));
        } else if (c->kind == CONN_DEVICE && !c->doomed) {
            uint64_t cap = conn_cap(d, c);

            devs[n] = c;
            shares[n].demand = c->wanted / G + (c->wanted % G != 0);
            shares[n].cap = cap == UINT64_MAX ? UINT64_MAX
                                              : cap / G + (cap % G != 0);
            shares[n].weight = conn_weight(d, c);
            shares[n].pressed = conn_pressed(c);
            if (shares[n].pressed &&
                (!pressed_end || c->pressed_until < pressed_end)) {
                pressed_end = c->pressed_until;
            }
            n++;
        }
    }
    avail = d->pool_limit > ghost ? d->pool_limit - ghost : 0;
    vtmem_policy_allocate(shares, n, avail / G);
    for (i = 0; i < n; i++) {
        Conn *c = devs[i];
        uint64_t t = shares[i].alloc * G;
        uint64_t cap = conn_cap(d, c);
        uint64_t old_target = c->target;
        VtmemShareReason old_reason = c->reason;

        c->target = t < cap ? t : cap;
        c->reason = shares[i].reason;
        if (c->target != old_target || c->reason != old_reason) {
            log_decision(d, c, old_target, old_reason);
        }
        leases[i] = (VtmemLease) {
            .held = c->held, .limit = c->limit,
            .has_pending = c->has_pending, .pending = c->pending,
            .target = c->target,
        };
    }
    schedule_pressed_end(d, pressed_end);
    vtmem_lease_plan(leases, n, d->pool_limit, ghost, !in_grace(d));
    for (i = 0; i < n; i++) {
        if (leases[i].send) {
            send_limit(devs[i], leases[i].pending);
        }
    }
    if (d->metrics) {
        metrics_refresh(d);
    }
}

static gboolean rebalance_cb(gpointer data)
{
    Daemon *d = data;

    d->rebalance_src = 0;
    rebalance(d);
    return G_SOURCE_REMOVE;
}

/*
 * Coalesce: every event only asks for a pass; at most one runs per
 * VTMEMD_REBALANCE_MIN_MS, after the lines already read are handled, so
 * a peer flooding UPDATEs costs parsing, not a pass per line.
 */
void daemon_schedule_rebalance(Daemon *d)
{
    gint64 next = d->last_rebalance + VTMEMD_REBALANCE_MIN_MS * 1000;
    gint64 now = g_get_monotonic_time();

    if (d->rebalance_src) {
        return;
    }
    if (now >= next) {
        /* default priority: ready fds must not starve it */
        d->rebalance_src = g_idle_add_full(G_PRIORITY_DEFAULT, rebalance_cb,
                                           d, NULL);
    } else {
        d->rebalance_src = g_timeout_add((guint)((next - now) / 1000) + 1,
                                         rebalance_cb, d);
    }
}

/* The state without a socket (the fuzzer uses it as is). */
void daemon_init(Daemon *d, uint64_t pool_limit, int grace_ms)
{
    d->listen_fd = -1;
    d->pool_limit = pool_limit;
    d->pool_ceiling = pool_limit;
    d->max_conns = max_connections();
    d->per_uid = g_hash_table_new(NULL, NULL);
    d->per_pid = g_hash_table_new(NULL, NULL);
    d->settings = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        g_free);
    d->grace_until = g_get_monotonic_time() + (gint64)grace_ms * 1000;
    d->pressed_hold_us = (gint64)VTMEMD_PRESSED_HOLD_MS * 1000;
}

void daemon_fini(Daemon *d)
{
    guint *srcs[] = { &d->listen_src, &d->grace_src, &d->reap_src,
                      &d->rebalance_src, &d->accept_src,
                      &d->autopool_src, &d->pressed_src };

    for (size_t i = 0; i < G_N_ELEMENTS(srcs); i++) {
        if (*srcs[i]) {
            g_source_remove(*srcs[i]);
            *srcs[i] = 0;
        }
    }
    metrics_stop(d);
    conns_free(d);
    if (d->listen_fd >= 0) {
        close(d->listen_fd);
        unlink(d->socket_path);
    }
    g_hash_table_destroy(d->per_uid);
    g_hash_table_destroy(d->per_pid);
    g_hash_table_destroy(d->settings);
    vtmemd_cgroup_clear(&d->cgroup);
    g_free(d->state_file);
    g_free(d->socket_path);
    if (d->loop) {
        g_main_loop_unref(d->loop);
    }
}
