/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd's device messages (REGISTER, UPDATE, ACK, BYE), the bounds on
 * what a device may claim, and the check that a registration's UUID is
 * the peer process's own.
 */
#define _GNU_SOURCE
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include "vtmemd.h"

#include <poll.h>
#include <string.h>

#define NULL_UUID "00000000-0000-0000-0000-000000000000"

static uint64_t clamp_bytes(uint64_t v)
{
    return v > VTMEM_POOL_MAX_BYTES ? VTMEM_POOL_MAX_BYTES : v;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/*
 * A device may claim to hold (and to enforce a limit of) at most what its
 * leases allowed, plus the baseline. Above that the claim is cut to the
 * bound (logged once per connection): a lying peer cannot make others
 * starve, and an honest one is never above it.
 */
static uint64_t bounded(Conn *c, const char *what, uint64_t v)
{
    uint64_t b = sat_add(c->granted, VTMEMD_BASELINE_BYTES);

    if (v <= b) {
        return v;
    }
    if (!c->claim_warned) {
        conn_log(c, G_LOG_LEVEL_WARNING, "claims %s %" G_GUINT64_FORMAT
                 " above its leases (%" G_GUINT64_FORMAT " + baseline):"
                 " counted as %" G_GUINT64_FORMAT, what, v, c->granted, b);
        c->claim_warned = true;
    }
    return b;
}

/*
 * After a report of held: the device can only grow up to its lease, so
 * the bound follows the lease and what it still holds above it.
 */
static void regrant(Conn *c)
{
    uint64_t lease = c->has_pending ? max_u64(c->limit, c->pending)
                                    : c->limit;

    c->granted = max_u64(lease, min_u64(c->held, c->granted));
}

void send_limit(Conn *c, uint64_t limit)
{
    c->has_pending = true;
    c->pending = limit;
    c->seq++;
    c->granted = max_u64(c->granted, limit);
    conn_log(c, G_LOG_LEVEL_DEBUG, "limit %" G_GUINT64_FORMAT " -> %"
             G_GUINT64_FORMAT " (seq %" G_GUINT64_FORMAT ", held %"
             G_GUINT64_FORMAT ")", c->limit, limit, c->seq, c->held);
    conn_send(c, VTMEM_POOL_MSG_LIMIT " %" G_GUINT64_FORMAT " %"
              G_GUINT64_FORMAT, c->seq, limit);
}

static bool parse_fields_u64(char **f, unsigned n, uint64_t *out)
{
    for (unsigned i = 0; i < n; i++) {
        if (!vtmem_pool_parse_u64(f[i], &out[i])) {
            return false;
        }
    }
    return true;
}

/* The value of -uuid (or --uuid) on a NUL-separated command line. */
static const char *cmdline_uuid(const char *cmd, size_t len)
{
    const char *end = cmd + len;

    for (const char *a = cmd; a < end; a += strlen(a) + 1) {
        const char *next = a + strlen(a) + 1;

        if ((strcmp(a, "-uuid") == 0 || strcmp(a, "--uuid") == 0) &&
            next < end) {
            return next;
        }
    }
    return NULL;
}

static bool peer_exited(Conn *c)
{
    struct pollfd p = { .fd = c->pidfd, .events = POLLIN };

    return c->pidfd >= 0 && poll(&p, 1, 0) != 0;
}

/*
 * Is uuid the peer's own? Trusted peers (root, the daemon's uid) are
 * believed. Others: an AppArmor label "libvirt-<uuid>" (libvirt's
 * per-VM profile) must name it, and the process's command line must
 * carry it as -uuid (a QEMU without -uuid registers the null UUID).
 * /proc is read while the pidfd holds the process: if it exited in
 * between, the pid may name another process and the check fails.
 */
static const char *identity_error(Conn *c, const char *uuid)
{
    g_autofree char *path = NULL;
    g_autofree char *cmd = NULL;
    const char *own;
    gsize len = 0;

    if (c->trusted) {
        return NULL;
    }
    if (c->label && g_str_has_prefix(c->label, "libvirt-") &&
        g_ascii_strncasecmp(c->label + 8, uuid, VTMEM_POOL_UUID_LEN) != 0) {
        return "REGISTER: uuid is not the one of the peer's label";
    }
    path = g_strdup_printf("/proc/%ld/cmdline", (long)c->pid);
    if (!g_file_get_contents(path, &cmd, &len, NULL) || peer_exited(c)) {
        return "REGISTER: cannot read the peer's command line";
    }
    if (len == 0 || cmd[len - 1] != '\0') {
        return "REGISTER: cannot read the peer's command line";
    }
    own = cmdline_uuid(cmd, len);
    if (g_ascii_strcasecmp(own ? own : NULL_UUID, uuid) != 0) {
        return "REGISTER: uuid is not the peer's -uuid";
    }
    return NULL;
}

static void register_reply(Conn *c)
{
    Daemon *d = c->d;
    gint64 now = g_get_monotonic_time();
    uint64_t grace = d->grace_until > now
                     ? (uint64_t)(d->grace_until - now) / 1000 : 0;

    conn_send(c, VTMEM_POOL_MSG_WELCOME " %d %llu %" G_GUINT64_FORMAT,
              VTMEM_POOL_PROTO_VERSION, VTMEM_POOL_GRANULE, grace);
}

void handle_register(Conn *c, char **f, unsigned nf)
{
    Daemon *d = c->d;
    uint64_t v[5];   /* version, held, limit, cap, wanted */
    const char *why;
    bool ghost = false;

    if (nf != 8) {
        conn_fail(c, "REGISTER needs 7 fields");
        return;
    }
    if (!vtmem_pool_parse_u64(f[1], &v[0]) ||
        !parse_fields_u64(f + 3, 4, v + 1)) {
        conn_fail(c, "REGISTER: bad number");
        return;
    }
    if (v[0] != VTMEM_POOL_PROTO_VERSION) {
        conn_fail(c, "REGISTER: unsupported protocol version");
        return;
    }
    if (!vtmem_pool_uuid_valid(f[2])) {
        conn_fail(c, "REGISTER: bad uuid");
        return;
    }
    if (strlen(f[7]) > VTMEM_POOL_MAX_NAME) {
        conn_fail(c, "REGISTER: name too long");
        return;
    }
    why = identity_error(c, f[2]);
    if (why) {
        conn_fail(c, why);
        return;
    }
    for (GList *l = d->conns; l; l = l->next) {
        Conn *o = l->data;

        if ((o->kind != CONN_DEVICE && o->kind != CONN_GHOST) || o->doomed ||
            g_ascii_strcasecmp(o->uuid, f[2]) != 0) {
            continue;
        }
        if (o->pid != c->pid) {
            conn_fail(c, "REGISTER: uuid registered by another process");
            return;
        }
    }
    /*
     * The same process coming back replaces its ghost and keeps what
     * its leases allowed.
     */
    for (GList *l = d->conns; l; l = l->next) {
        Conn *g = l->data;

        if (g->kind == CONN_GHOST && !g->doomed && g->pid == c->pid &&
            g_ascii_strcasecmp(g->uuid, f[2]) == 0) {
            c->granted = max_u64(c->granted, g->granted);
            ghost = true;
            conn_doom(g, "process re-registered");
            g->kind = CONN_CONTROL;   /* nothing to return twice */
        }
    }
    c->kind = CONN_DEVICE;
    g_strlcpy(c->uuid, f[2], sizeof(c->uuid));
    c->name = g_strdup(f[7]);
    c->cap = clamp_bytes(v[3]);
    c->wanted = clamp_bytes(v[4]);
    if (!ghost && in_grace(d)) {
        /*
         * Devices of the previous daemon come back with its leases: the
         * daemon cannot know them, and believes what fits the device's
         * cap and the pool.
         */
        c->granted = min_u64(min_u64(max_u64(v[1], v[2]), c->cap),
                             d->pool_limit);
    }
    c->held = bounded(c, "held", v[1]);
    c->limit = bounded(c, "limit", v[2]);
    if (c->hello_src) {
        g_source_remove(c->hello_src);
        c->hello_src = 0;
    }
    conn_log(c, G_LOG_LEVEL_MESSAGE,
             "registered: held %" G_GUINT64_FORMAT " limit %" G_GUINT64_FORMAT
             " cap %" G_GUINT64_FORMAT " wanted %" G_GUINT64_FORMAT,
             c->held, c->limit, c->cap, c->wanted);
    register_reply(c);
    if (c->limit < v[2]) {
        /*
         * It enforces more than it may: lower it to what its leases
         * allowed (the baseline is slack, not a lease).
         */
        send_limit(c, c->granted);
    }
    if (total_charge(d) > d->pool_limit) {
        conn_log(c, G_LOG_LEVEL_WARNING,
                 "devices hold leases of %" G_GUINT64_FORMAT " bytes, above"
                 " the pool limit %" G_GUINT64_FORMAT ": shrinking",
                 total_charge(d), d->pool_limit);
    }
    daemon_schedule_rebalance(d);
}

/*
 * The counters of an UPDATE: a grown refusal count presses the device
 * (its first report is only the baseline: a device re-registering after
 * a daemon restart brings its old count).
 */
static void update_counters(Conn *c, uint64_t refusals, uint64_t stored)
{
    Daemon *d = c->d;

    if (c->has_counters && refusals > c->refusals) {
        if (!conn_pressed(c)) {
            conn_log(c, G_LOG_LEVEL_MESSAGE, "pressed: %" G_GUINT64_FORMAT
                     " puts refused since its last report",
                     refusals - c->refusals);
        }
        c->pressed_until = g_get_monotonic_time() + d->pressed_hold_us;
    }
    c->has_counters = true;
    c->refusals = refusals;
    c->stored_pages = stored;
}

void handle_device_line(Conn *c, char **f, unsigned nf)
{
    uint64_t v[5];

    if (strcmp(f[0], VTMEM_POOL_MSG_UPDATE) == 0) {
        /* the counters are optional (devices before them send 3 fields) */
        if ((nf != 4 && nf != 6) || !parse_fields_u64(f + 1, nf - 1, v)) {
            conn_fail(c, "bad UPDATE");
            return;
        }
        if (nf == 6 && c->has_counters && v[3] < c->refusals) {
            conn_fail(c, "UPDATE: the refusal count went down");
            return;
        }
        c->held = bounded(c, "held", v[0]);
        c->wanted = clamp_bytes(v[1]);
        c->cap = clamp_bytes(v[2]);
        if (nf == 6) {
            update_counters(c, v[3], v[4]);
        }
        regrant(c);
    } else if (strcmp(f[0], VTMEM_POOL_MSG_ACK) == 0) {
        if (nf != 3 || !parse_fields_u64(f + 1, 2, v)) {
            conn_fail(c, "bad ACK");
            return;
        }
        if (!c->has_pending || v[0] != c->seq) {
            conn_fail(c, "ACK of a LIMIT that was not sent");
            return;
        }
        c->has_pending = false;
        c->limit = c->pending;
        c->held = bounded(c, "held", v[1]);
        regrant(c);
    } else if (strcmp(f[0], VTMEM_POOL_MSG_BYE) == 0) {
        if (nf != 1) {
            conn_fail(c, "bad BYE");
            return;
        }
        c->bye = true;
        conn_doom(c, "device left");
        return;
    } else {
        conn_fail(c, "unknown device message");
        return;
    }
    daemon_schedule_rebalance(c->d);
}
