/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd's control messages (vtmemctl; uid 0 or the daemon's uid only):
 * STATUS, SET-POOL-LIMIT, SET-VM-LIMIT, SET-VM-WEIGHT, EVICT.
 */
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include "vtmemd.h"

#include <string.h>

static void send_status(Conn *c)
{
    Daemon *d = c->d;
    gint64 now = g_get_monotonic_time();
    guint nvm = 0;

    for (GList *l = d->conns; l; l = l->next) {
        Conn *v = l->data;

        nvm += v->kind == CONN_DEVICE || v->kind == CONN_GHOST;
    }
    conn_send(c, VTMEM_POOL_MSG_POOL " limit=%" G_GUINT64_FORMAT " charged=%"
              G_GUINT64_FORMAT " granule=%llu vms=%u grace-ms=%" G_GINT64_FORMAT
              " version=%d connections=%u max-connections=%u rebalances=%"
              G_GUINT64_FORMAT " ceiling=%" G_GUINT64_FORMAT " auto-pool=%d"
              " pressure-some-centi=%u auto-changes=%" G_GUINT64_FORMAT
              " decisions=%" G_GUINT64_FORMAT " pressure-some-avg10=%u"
              " pressure-some-total-us=%" G_GUINT64_FORMAT
              " pressure-full-avg10=%u pressure-full-total-us=%"
              G_GUINT64_FORMAT " pressed-hold-ms=%" G_GINT64_FORMAT,
              d->pool_limit, total_charge(d),
              VTMEM_POOL_GRANULE, nvm,
              d->grace_until > now ? (d->grace_until - now) / 1000 : 0,
              VTMEM_POOL_PROTO_VERSION, d->n_conns, d->max_conns,
              d->n_rebalances, d->pool_ceiling, d->auto_pool,
              d->last_pressure, d->n_autopool_changes, d->n_decisions,
              d->last_reading.some_avg10, d->last_reading.some_total_us,
              d->last_reading.full_avg10, d->last_reading.full_total_us,
              d->pressed_hold_us / 1000);
    for (GList *l = d->conns; l; l = l->next) {
        Conn *v = l->data;
        VmSettings *s;
        char vml[24];

        if (v->kind != CONN_DEVICE && v->kind != CONN_GHOST) {
            continue;
        }
        s = settings_lookup(d, v->uuid, false);
        if (s && s->vm_limit != UINT64_MAX) {
            g_snprintf(vml, sizeof(vml), "%" G_GUINT64_FORMAT, s->vm_limit);
        } else {
            g_strlcpy(vml, VTMEM_POOL_NO_LIMIT_WORD, sizeof(vml));
        }
        conn_send(c, VTMEM_POOL_MSG_VM " uuid=%s connected=%d pid=%ld"
                  " weight=%u vm-limit=%s cap=%" G_GUINT64_FORMAT " held=%"
                  G_GUINT64_FORMAT " wanted=%" G_GUINT64_FORMAT " limit=%"
                  G_GUINT64_FORMAT " charge=%" G_GUINT64_FORMAT " target=%"
                  G_GUINT64_FORMAT " refusals=%" G_GUINT64_FORMAT
                  " stored-pages=%" G_GUINT64_FORMAT " pressed=%d reason=%s"
                  " name=%s",
                  v->uuid, v->kind == CONN_DEVICE, (long)v->pid,
                  s ? s->weight : VTMEM_POOL_DEFAULT_WEIGHT, vml, v->cap,
                  v->held, v->wanted,
                  v->has_pending && v->pending > v->limit ? v->pending
                                                          : v->limit,
                  conn_charge(v), v->target, v->refusals, v->stored_pages,
                  conn_pressed(v), vtmem_share_reason_name(v->reason),
                  v->name ? v->name : "");
    }
    conn_send(c, VTMEM_POOL_MSG_END);
}

static bool set_pool_limit(Conn *c, char **f)
{
    Daemon *d = c->d;
    uint64_t v;

    if (!vtmem_pool_parse_u64(f[1], &v) || v > VTMEM_POOL_MAX_BYTES) {
        conn_fail(c, "SET-POOL-LIMIT: bad size");
        return false;
    }
    g_message("pool limit %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
              " (charged %" G_GUINT64_FORMAT ")", d->pool_limit, v,
              total_charge(d));
    /*
     * With --auto-pool it is the ceiling; the next decision moves the
     * pool within it.
     */
    d->pool_ceiling = v;
    if (!d->auto_pool || d->pool_limit > v) {
        d->pool_limit = v;
    }
    return true;
}

static bool set_vm_limit(Conn *c, char **f)
{
    uint64_t v;

    if (!vtmem_pool_uuid_valid(f[1])) {
        conn_fail(c, "SET-VM-LIMIT: bad uuid");
        return false;
    }
    if (strcmp(f[2], VTMEM_POOL_NO_LIMIT_WORD) == 0) {
        v = UINT64_MAX;
    } else if (!vtmem_pool_parse_u64(f[2], &v) || v > VTMEM_POOL_MAX_BYTES) {
        conn_fail(c, "SET-VM-LIMIT: bad size");
        return false;
    }
    settings_lookup(c->d, f[1], true)->vm_limit = v;
    settings_save(c->d);
    g_message("vm %s: limit %s", f[1], f[2]);
    return true;
}

static bool set_vm_weight(Conn *c, char **f)
{
    uint64_t v;

    if (!vtmem_pool_uuid_valid(f[1])) {
        conn_fail(c, "SET-VM-WEIGHT: bad uuid");
        return false;
    }
    if (!vtmem_pool_parse_u64(f[2], &v) || v < 1 ||
        v > VTMEM_POOL_MAX_WEIGHT) {
        conn_fail(c, "SET-VM-WEIGHT: weight must be 1..10000");
        return false;
    }
    settings_lookup(c->d, f[1], true)->weight = (uint32_t)v;
    settings_save(c->d);
    g_message("vm %s: weight %s", f[1], f[2]);
    return true;
}

/*
 * Drop every device connection and ghost of a VM: no ghost is left, its
 * charge returns to the pool at once.
 */
static bool evict(Conn *c, char **f)
{
    guint n = 0;

    if (!vtmem_pool_uuid_valid(f[1])) {
        conn_fail(c, "EVICT: bad uuid");
        return false;
    }
    for (GList *l = c->d->conns; l; l = l->next) {
        Conn *v = l->data;

        if ((v->kind != CONN_DEVICE && v->kind != CONN_GHOST) || v->doomed ||
            g_ascii_strcasecmp(v->uuid, f[1]) != 0) {
            continue;
        }
        conn_log(v, G_LOG_LEVEL_MESSAGE, "evicted by uid %lu (pid %ld)",
                 (unsigned long)c->uid, (long)c->pid);
        conn_send(v, VTMEM_POOL_MSG_ERROR " evicted");
        v->evicted = true;
        conn_doom(v, "evicted");
        n++;
    }
    if (n == 0) {
        conn_fail(c, "EVICT: no such VM");
        return false;
    }
    return true;
}

typedef struct ControlCommand {
    const char *name;
    unsigned n_fields;      /* command word included */
    bool (*run)(Conn *c, char **f);     /* false: it failed the conn */
} ControlCommand;

static const ControlCommand commands[] = {
    { VTMEM_POOL_MSG_SET_POOL_LIMIT, 2, set_pool_limit },
    { VTMEM_POOL_MSG_SET_VM_LIMIT, 3, set_vm_limit },
    { VTMEM_POOL_MSG_SET_VM_WEIGHT, 3, set_vm_weight },
    { VTMEM_POOL_MSG_EVICT, 2, evict },
};

void handle_control_line(Conn *c, char **f, unsigned nf)
{
    if (!c->trusted) {
        conn_fail(c, "control commands need uid 0 or the daemon's uid");
        return;
    }
    c->kind = CONN_CONTROL;
    if (c->hello_src) {
        g_source_remove(c->hello_src);
        c->hello_src = 0;
    }
    if (strcmp(f[0], VTMEM_POOL_MSG_STATUS) == 0 && nf == 1) {
        send_status(c);
        return;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(f[0], commands[i].name) == 0 &&
            nf == commands[i].n_fields) {
            if (commands[i].run(c, f)) {
                conn_send(c, VTMEM_POOL_MSG_OK);
                daemon_schedule_rebalance(c->d);
            }
            return;
        }
    }
    conn_fail(c, "unknown command");
}
