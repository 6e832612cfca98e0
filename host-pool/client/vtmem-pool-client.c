/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define G_LOG_DOMAIN "vtmem-pool-client"
#define G_LOG_USE_STRUCTURED 1

#include "vtmem-pool-client.h"
#include "vtmem-pool-util.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

struct VtmemPoolClient {
    GMainContext *ctx;
    char *path;
    char *name;
    char uuid[VTMEM_POOL_UUID_LEN + 1];
    VtmemPoolClientOps ops;
    void *opaque;

    int fd;
    GSource *in_src, *out_src, *retry_src;
    VtmemLineReader rd;
    GString *out;
    bool registered;    /* socket connected and REGISTER sent */
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

static void client_disconnect(VtmemPoolClient *c, const char *why)
{
    bool was = c->welcomed;

    if (c->fd < 0) {
        return;
    }
    g_debug("disconnected from %s: %s", c->path, why);
    drop_source(&c->in_src);
    drop_source(&c->out_src);
    close(c->fd);
    c->fd = -1;
    c->rd.len = 0;
    g_string_truncate(c->out, 0);
    c->registered = false;
    c->welcomed = false;
    schedule_retry(c);
    if (was && c->ops.connection_changed) {
        c->ops.connection_changed(c->opaque, false);
    }
}

static gboolean out_ready(gint fd, GIOCondition cond, gpointer data);

static bool client_flush(VtmemPoolClient *c)
{
    while (c->out->len > 0) {
        ssize_t n = send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            g_string_erase(c->out, 0, n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->out_src) {
                c->out_src = g_unix_fd_source_new(c->fd, G_IO_OUT);
                g_source_set_callback(c->out_src, G_SOURCE_FUNC(out_ready), c, NULL);
                g_source_attach(c->out_src, c->ctx);
            }
            return true;
        } else {
            client_disconnect(c, n < 0 ? g_strerror(errno) : "send failed");
            return false;
        }
    }
    drop_source(&c->out_src);
    return true;
}

static gboolean out_ready(gint fd, GIOCondition cond, gpointer data)
{
    VtmemPoolClient *c = data;

    (void)fd;
    (void)cond;
    g_source_ref(c->out_src);   /* client_flush may destroy it */
    {
        GSource *s = c->out_src;

        client_flush(c);
        g_source_unref(s);
    }
    return G_SOURCE_CONTINUE;
}

static bool client_send(VtmemPoolClient *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static bool client_send(VtmemPoolClient *c, const char *fmt, ...)
{
    va_list ap;

    if (c->fd < 0) {
        return false;
    }
    va_start(ap, fmt);
    g_string_append_vprintf(c->out, fmt, ap);
    va_end(ap);
    g_string_append_c(c->out, '\n');
    if (c->out->len > VTMEM_POOL_MAX_OUTBUF) {
        client_disconnect(c, "daemon does not read");
        return false;
    }
    return client_flush(c);
}

static void send_update(VtmemPoolClient *c)
{
    c->sent_held = c->held;
    c->sent_wanted = c->demand;
    c->sent_cap = c->cap;
    client_send(c, VTMEM_POOL_MSG_UPDATE " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                " %" G_GUINT64_FORMAT, c->held, c->demand, c->cap);
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

        if (!vtmem_pool_parse_u64(f[1], &v[0]) || v[0] != VTMEM_POOL_PROTO_VERSION ||
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
    } else if (strcmp(f[0], VTMEM_POOL_MSG_LIMIT) == 0 && nf == 3 && c->welcomed) {
        uint64_t held;

        if (!vtmem_pool_parse_u64(f[1], &v[0]) || !vtmem_pool_parse_u64(f[2], &v[1])) {
            client_disconnect(c, "bad LIMIT");
            return;
        }
        c->has_lease = true;
        c->lease = v[1];
        c->limit = effective_limit(c);
        held = c->ops.set_limit(c->opaque, c->limit);
        if (c->fd < 0) {
            return;     /* the callback freed nothing, but may have disconnected */
        }
        c->held = held;
        c->sent_held = held;
        client_send(c, VTMEM_POOL_MSG_ACK " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                    v[0], held);
    } else if (strcmp(f[0], VTMEM_POOL_MSG_ERROR) == 0) {
        g_autofree char *msg = g_strjoinv(" ", f + 1);

        g_message("vtmemd at %s closed the connection: %s", c->path, msg);
        client_disconnect(c, "error from daemon");
    } else {
        client_disconnect(c, "unexpected message from daemon");
    }
}

static gboolean in_ready(gint fd, GIOCondition cond, gpointer data)
{
    VtmemPoolClient *c = data;
    char line[VTMEM_POOL_MAX_LINE];
    const char *why;
    ssize_t n;

    (void)cond;
    n = vtmem_line_reader_fill(&c->rd, fd);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        client_disconnect(c, n == 0 ? "end of file" : g_strerror(errno));
        return G_SOURCE_REMOVE;   /* already destroyed */
    }
    while (c->fd == fd) {
        VtmemLineResult r = vtmem_line_reader_next(&c->rd, line, &why);

        if (r == VTMEM_LINE_NONE) {
            break;
        }
        if (r == VTMEM_LINE_ERROR) {
            client_disconnect(c, why);
            break;
        }
        handle_line(c, line);
    }
    return c->fd == fd ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

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
    c->fd = fd;
    c->registered = true;
    c->in_src = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(c->in_src, G_SOURCE_FUNC(in_ready), c, NULL);
    g_source_attach(c->in_src, c->ctx);
    if (c->first_attempt) {
        /* The device has not applied any limit yet: from now on the
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
}

VtmemPoolClient *vtmem_pool_client_new(const char *socket_path, const char *name,
                                       const char *uuid, uint64_t cap,
                                       const VtmemPoolClientOps *ops, void *opaque,
                                       GMainContext *context, GError **error)
{
    struct sockaddr_un sa;
    VtmemPoolClient *c;
    char *p;

    if (!socket_path || !*socket_path || strlen(socket_path) >= sizeof(sa.sun_path)) {
        g_set_error(error, VTMEM_POOL_CLIENT_ERROR, 0,
                    "vtmem pool socket path is empty or too long");
        return NULL;
    }
    if (!uuid || !vtmem_pool_uuid_valid(uuid)) {
        g_set_error(error, VTMEM_POOL_CLIENT_ERROR, 0,
                    "bad VM UUID for the vtmem pool: %s", uuid ? uuid : "(null)");
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
    c->fd = -1;
    c->out = g_string_new(NULL);
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

void vtmem_pool_client_update(VtmemPoolClient *c, uint64_t held, uint64_t wanted)
{
    uint64_t g = c->granule;
    uint64_t dh;

    c->held = held;
    c->demand = wanted != VTMEM_POOL_WANT_AUTO ? wanted : auto_demand(c, held);
    if (c->fd < 0) {
        return;     /* sent with the next REGISTER */
    }
    dh = held > c->sent_held ? held - c->sent_held : c->sent_held - held;
    if (c->demand > c->sent_wanted ||
        c->demand + VTMEM_POOL_RELEASE_GRANULES * g <= c->sent_wanted ||
        dh >= g || c->cap != c->sent_cap) {
        send_update(c);
    }
}

uint64_t vtmem_pool_client_set_cap(VtmemPoolClient *c, uint64_t cap)
{
    c->cap = cap;
    c->limit = effective_limit(c);
    if (c->fd >= 0 && cap != c->sent_cap) {
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
    if (c->fd >= 0) {
        /* Best effort: the daemon also notices the process exit. */
        g_string_append(c->out, VTMEM_POOL_MSG_BYE "\n");
        (void)!send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        drop_source(&c->in_src);
        drop_source(&c->out_src);
        close(c->fd);
    }
    drop_source(&c->retry_src);
    g_string_free(c->out, TRUE);
    g_main_context_unref(c->ctx);
    g_free(c->path);
    g_free(c->name);
    g_free(c);
}
