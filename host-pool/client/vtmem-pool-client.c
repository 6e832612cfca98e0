/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define G_LOG_DOMAIN "vtmem-pool-client"
#define G_LOG_USE_STRUCTURED 1

#include "vtmem-pool-client.h"
#include "vtmem-line-conn.h"
#include "vtmem-pool-util.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct VtmemPoolClient {
    GMainContext *ctx;
    char *path;
    char *name;
    char uuid[VTMEM_POOL_UUID_LEN + 1];
    VtmemPoolClientOps ops;
    void *opaque;

    VtmemLineConn *lc;  /* NULL: not connected */
    GSource *retry_src;
    bool welcomed;      /* WELCOME received */
    guint backoff_ms;

    bool first_attempt; /* inside vtmem_pool_client_new() */
    bool has_lease;     /* the daemon decides (it was reached, or is busy) */
    bool unreachable_logged;
    uint64_t lease;     /* last lease (LIMIT) from the daemon */
    uint64_t cap;       /* device's own limit */
    uint64_t limit;     /* what the device enforces */
    uint64_t granule;

    uint64_t held;          /* last held reported by the device */
    uint64_t demand;        /* last demand computed */
    uint64_t sent_held, sent_wanted, sent_cap;
    bool has_counters;      /* the device reports counters */
    VtmemPoolCounters counters, sent_counters;
    gint64 sent_at;         /* monotonic us of the last UPDATE */
    GSource *report_src;    /* sends a grown refusal count when it fires */
};

static void client_connect(VtmemPoolClient *c);

GQuark vtmem_pool_client_error_quark(void)
{
    return g_quark_from_static_string("vtmem-pool-client-error-quark");
}

static uint64_t effective_limit(VtmemPoolClient *c)
{
    if (!c->has_lease) {
        return c->cap;
    }
    return c->lease < c->cap ? c->lease : c->cap;
}

static uint64_t auto_demand(VtmemPoolClient *c, uint64_t held)
{
    uint64_t g = c->granule;
    uint64_t r = held / g * g;
    uint64_t extra = (held % g ? g : 0) + VTMEM_POOL_HEADROOM_GRANULES * g;

    return r > UINT64_MAX - extra ? UINT64_MAX : r + extra;
}

static gboolean retry_cb(gpointer data)
{
    VtmemPoolClient *c = data;

    g_source_unref(c->retry_src);
    c->retry_src = NULL;
    client_connect(c);
    return G_SOURCE_REMOVE;
}

static void schedule_retry(VtmemPoolClient *c)
{
    if (c->retry_src) {
        return;
    }
    c->retry_src = g_timeout_source_new(c->backoff_ms);
    g_source_set_callback(c->retry_src, retry_cb, c, NULL);
    g_source_attach(c->retry_src, c->ctx);
    c->backoff_ms *= 2;
    if (c->backoff_ms > VTMEM_POOL_RECONNECT_MAX_MS) {
        c->backoff_ms = VTMEM_POOL_RECONNECT_MAX_MS;
    }
}

static void drop_source(GSource **s)
{
    if (*s) {
        g_source_destroy(*s);
        g_source_unref(*s);
        *s = NULL;
    }
}

/* Also from inside the connection's callbacks (it is refcounted). */
static void client_disconnect(VtmemPoolClient *c, const char *why)
{
    bool was = c->welcomed;

    if (!c->lc) {
        return;
    }
    g_debug("disconnected from %s: %s", c->path, why);
    g_clear_pointer(&c->lc, vtmem_line_conn_free);
    c->welcomed = false;
    schedule_retry(c);
    if (was && c->ops.connection_changed) {
        c->ops.connection_changed(c->opaque, false);
    }
}

static bool client_send(VtmemPoolClient *c, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static bool client_send(VtmemPoolClient *c, const char *fmt, ...)
{
    va_list ap;
    bool ok;

    if (!c->lc) {
        return false;
    }
    va_start(ap, fmt);
    ok = vtmem_line_conn_sendv(c->lc, fmt, ap);
    va_end(ap);
    return ok;
}

static void send_update(VtmemPoolClient *c)
{
    c->sent_held = c->held;
    c->sent_wanted = c->demand;
    c->sent_cap = c->cap;
    c->sent_at = g_get_monotonic_time();
    if (!c->has_counters) {
        client_send(c, VTMEM_POOL_MSG_UPDATE " %" G_GUINT64_FORMAT
                    " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                    c->held, c->demand, c->cap);
        return;
    }
    c->sent_counters = c->counters;
    client_send(c, VTMEM_POOL_MSG_UPDATE " %" G_GUINT64_FORMAT
                " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %"
                G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                c->held, c->demand, c->cap, c->counters.refusals,
                c->counters.stored_pages);
}

static void handle_line(VtmemPoolClient *c, const char *line)
{
    g_auto(GStrv) f = NULL;
    unsigned nf = 0;
    uint64_t v[3];

    f = vtmem_pool_split(line, 3, &nf);
    if (!f) {
        client_disconnect(c, "malformed line from daemon");
        return;
    }
    if (strcmp(f[0], VTMEM_POOL_MSG_WELCOME) == 0 && nf == 3 && !c->welcomed) {
        g_auto(GStrv) g = g_strsplit(f[2], " ", 2);

        if (!vtmem_pool_parse_u64(f[1], &v[0]) ||
            v[0] != VTMEM_POOL_PROTO_VERSION ||
            g_strv_length(g) != 2 || !vtmem_pool_parse_u64(g[0], &v[1]) ||
            v[1] < 4096 || v[1] > VTMEM_POOL_MAX_BYTES ||
            !vtmem_pool_parse_u64(g[1], &v[2])) {
            client_disconnect(c, "bad WELCOME");
            return;
        }
        c->granule = v[1];
        c->welcomed = true;
        c->unreachable_logged = false;
        c->backoff_ms = VTMEM_POOL_RECONNECT_MIN_MS;
        g_debug("registered with %s", c->path);
        if (c->ops.connection_changed) {
            c->ops.connection_changed(c->opaque, true);
        }
    } else if (strcmp(f[0], VTMEM_POOL_MSG_LIMIT) == 0 && nf == 3 &&
               c->welcomed) {
        uint64_t held;

        if (!vtmem_pool_parse_u64(f[1], &v[0]) ||
            !vtmem_pool_parse_u64(f[2], &v[1])) {
            client_disconnect(c, "bad LIMIT");
            return;
        }
        c->has_lease = true;
        c->lease = v[1];
        c->limit = effective_limit(c);
        held = c->ops.set_limit(c->opaque, c->limit);
        if (!c->lc) {
            /* the callback freed nothing, but may have disconnected */
            return;
        }
        c->held = held;
        c->sent_held = held;
        client_send(c, VTMEM_POOL_MSG_ACK " %" G_GUINT64_FORMAT
                    " %" G_GUINT64_FORMAT, v[0], held);
    } else if (strcmp(f[0], VTMEM_POOL_MSG_ERROR) == 0) {
        g_autofree char *msg = g_strjoinv(" ", f + 1);

        g_message("vtmemd at %s closed the connection: %s", c->path, msg);
        client_disconnect(c, "error from daemon");
    } else {
        client_disconnect(c, "unexpected message from daemon");
    }
}

static void conn_line(void *opaque, const char *line)
{
    handle_line(opaque, line);
}

static void conn_closed(void *opaque, const char *why, bool protocol)
{
    (void)protocol;
    client_disconnect(opaque, why);
}

static const VtmemLineConnOps conn_ops = {
    .line = conn_line,
    .closed = conn_closed,
};

/*
 * The daemon exists but cannot take us now (its backlog is full): from
 * now on it decides, not the device's own cap. Until its first lease the
 * device keeps what it holds and stores nothing new.
 */
static void daemon_decides(VtmemPoolClient *c)
{
    if (c->has_lease) {
        return;
    }
    c->has_lease = true;
    c->lease = c->held < c->cap ? c->held : c->cap;
    c->limit = effective_limit(c);
    if (!c->first_attempt) {
        c->held = c->ops.set_limit(c->opaque, c->limit);
    }
}

static void client_connect(VtmemPoolClient *c)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, e;

    g_strlcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
    if (c->ops.get_held) {
        c->held = c->ops.get_held(c->opaque);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        schedule_retry(c);
        return;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        e = errno;
        close(fd);
        if (!c->unreachable_logged) {
            g_message("vtmemd at %s: %s; %s; retrying", c->path, g_strerror(e),
                      c->has_lease ? "keeping the last lease"
                      : e == EAGAIN ? "storing nothing new until it answers"
                      : "running on the device's own limit until it answers");
            c->unreachable_logged = true;
        }
        if (e == EAGAIN || e == EWOULDBLOCK) {
            daemon_decides(c);
        }
        schedule_retry(c);
        return;
    }
    c->lc = vtmem_line_conn_new(fd, c->ctx, VTMEM_POOL_MAX_OUTBUF, &conn_ops,
                                c);
    if (c->first_attempt) {
        /*
         * The device has not applied any limit yet: from now on the
         * daemon decides. (A device that ran standalone keeps its limit
         * and reports it: the daemon lowers it.)
         */
        daemon_decides(c);
    }
    c->sent_held = c->held;
    c->sent_wanted = c->demand;
    c->sent_cap = c->cap;
    client_send(c, VTMEM_POOL_MSG_REGISTER " %d %s %" G_GUINT64_FORMAT
                " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %"
                G_GUINT64_FORMAT " %s",
                VTMEM_POOL_PROTO_VERSION, c->uuid, c->held, c->limit, c->cap,
                c->demand, c->name);
    if (c->has_counters) {
        /* REGISTER has no room for them */
        send_update(c);
    }
}

VtmemPoolClient *vtmem_pool_client_new(const char *socket_path,
                                       const char *name,
                                       const char *uuid, uint64_t cap,
                                       const VtmemPoolClientOps *ops,
                                       void *opaque,
                                       GMainContext *context, GError **error)
{
    struct sockaddr_un sa;
    VtmemPoolClient *c;
    char *p;

    if (!socket_path || !*socket_path ||
        strlen(socket_path) >= sizeof(sa.sun_path)) {
        g_set_error(error, VTMEM_POOL_CLIENT_ERROR, 0,
                    "vtmem pool socket path is empty or too long");
        return NULL;
    }
    if (!uuid || !vtmem_pool_uuid_valid(uuid)) {
        g_set_error(error, VTMEM_POOL_CLIENT_ERROR, 0,
                    "bad VM UUID for the vtmem pool: %s",
                    uuid ? uuid : "(null)");
        return NULL;
    }
    if (!ops || !ops->set_limit) {
        g_set_error(error, VTMEM_POOL_CLIENT_ERROR, 0,
                    "vtmem pool client needs a set_limit callback");
        return NULL;
    }
    c = g_new0(VtmemPoolClient, 1);
    c->ctx = g_main_context_ref(context ? context : g_main_context_default());
    c->path = g_strdup(socket_path);
    c->name = g_strndup(name && *name ? name : "unnamed", VTMEM_POOL_MAX_NAME);
    for (p = c->name; *p; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            *p = '?';
        }
    }
    g_strlcpy(c->uuid, uuid, sizeof(c->uuid));
    c->ops = *ops;
    c->opaque = opaque;
    c->backoff_ms = VTMEM_POOL_RECONNECT_MIN_MS;
    c->granule = VTMEM_POOL_GRANULE;
    c->cap = cap;
    c->limit = cap;
    c->demand = auto_demand(c, 0);
    c->first_attempt = true;
    client_connect(c);
    c->first_attempt = false;
    return c;
}

static gboolean report_cb(gpointer data)
{
    VtmemPoolClient *c = data;

    g_source_unref(c->report_src);
    c->report_src = NULL;
    if (c->lc && c->counters.refusals != c->sent_counters.refusals) {
        send_update(c);
    }
    return G_SOURCE_REMOVE;
}

/*
 * A grown refusal count goes out at most every REFUSAL_REPORT_MS: now,
 * or from a timer when the last UPDATE is more recent (the guest may put
 * nothing more for a while).
 */
static bool refusals_due(VtmemPoolClient *c)
{
    gint64 wait = c->sent_at + VTMEM_POOL_REFUSAL_REPORT_MS * 1000 -
                  g_get_monotonic_time();

    if (!c->has_counters ||
        c->counters.refusals == c->sent_counters.refusals) {
        return false;
    }
    if (wait <= 0) {
        return true;
    }
    if (!c->report_src) {
        c->report_src = g_timeout_source_new((guint)(wait / 1000) + 1);
        g_source_set_callback(c->report_src, report_cb, c, NULL);
        g_source_attach(c->report_src, c->ctx);
    }
    return false;
}

void vtmem_pool_client_report(VtmemPoolClient *c, uint64_t held,
                              uint64_t wanted,
                              const VtmemPoolCounters *counters)
{
    uint64_t g = c->granule;
    uint64_t dh;
    bool refused;

    c->held = held;
    c->demand = wanted != VTMEM_POOL_WANT_AUTO ? wanted : auto_demand(c, held);
    if (counters) {
        c->has_counters = true;
        c->counters = *counters;
    }
    if (!c->lc) {
        return;     /* sent with the next REGISTER */
    }
    dh = held > c->sent_held ? held - c->sent_held : c->sent_held - held;
    refused = refusals_due(c);
    if (c->demand > c->sent_wanted ||
        c->demand + VTMEM_POOL_RELEASE_GRANULES * g <= c->sent_wanted ||
        dh >= g || c->cap != c->sent_cap || refused) {
        send_update(c);
    }
}

void vtmem_pool_client_update(VtmemPoolClient *c, uint64_t held,
                              uint64_t wanted)
{
    vtmem_pool_client_report(c, held, wanted, NULL);
}

uint64_t vtmem_pool_client_set_cap(VtmemPoolClient *c, uint64_t cap)
{
    c->cap = cap;
    c->limit = effective_limit(c);
    if (c->lc && cap != c->sent_cap) {
        send_update(c);
    }
    return c->limit;
}

uint64_t vtmem_pool_client_get_limit(VtmemPoolClient *c)
{
    return c->limit;
}

bool vtmem_pool_client_is_connected(VtmemPoolClient *c)
{
    return c->welcomed;
}

void vtmem_pool_client_free(VtmemPoolClient *c)
{
    if (!c) {
        return;
    }
    /* Best effort: the daemon also notices the process exit. */
    client_send(c, VTMEM_POOL_MSG_BYE);
    vtmem_line_conn_free(c->lc);
    drop_source(&c->retry_src);
    drop_source(&c->report_src);
    g_main_context_unref(c->ctx);
    g_free(c->path);
    g_free(c->name);
    g_free(c);
}
