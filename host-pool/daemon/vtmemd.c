/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd: the vtmem pool daemon. Shares one host-wide budget for
 * compressed guest pages among the virtio-tmem devices of all VMs, as
 * leases (docs/vtmemd.md). Pages never pass through here.
 */
#define _GNU_SOURCE
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <gio/gio.h>
#include <glib-unix.h>

#include "vtmem-policy.h"
#include "vtmem-pool-proto.h"
#include "vtmem-pool-util.h"

#define MAX_CONNECTIONS 1024

typedef enum {
    CONN_NEW,       /* accepted, no line yet */
    CONN_DEVICE,    /* registered device */
    CONN_CONTROL,   /* vtmemctl */
    CONN_GHOST,     /* device whose connection closed but whose process lives */
} ConnKind;

typedef struct Daemon Daemon;

typedef struct Conn {
    Daemon *d;
    guint64 id;
    ConnKind kind;
    int fd;
    guint in_src, out_src, hello_src, pidfd_src;
    VtmemLineReader rd;
    GString *out;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    int pidfd;
    bool may_control;
    char *doomed;       /* set: to be closed by the reaper, with this reason */
    bool bye;           /* device said BYE: it dropped everything */

    /* devices */
    char uuid[VTMEM_POOL_UUID_LEN + 1];
    char *name;
    uint64_t held;      /* last reported memory held */
    uint64_t wanted;    /* last reported demand */
    uint64_t cap;       /* device's own limit (operator's QOM limit) */
    uint64_t limit;     /* limit the device confirmed (or reported) */
    bool has_pending;   /* a LIMIT was sent and not yet acknowledged */
    uint64_t pending;   /* its value */
    uint64_t seq;       /* last LIMIT sequence number sent */
    uint64_t target;    /* the policy's latest allocation */
} Conn;

typedef struct VmSettings {
    uint32_t weight;
    uint64_t vm_limit;  /* UINT64_MAX: none */
} VmSettings;

struct Daemon {
    GMainLoop *loop;
    char *socket_path;
    int listen_fd;
    guint listen_src;
    uint64_t pool_limit;
    gint64 grace_until;     /* monotonic us; no increases before */
    guint grace_src;
    bool have_allow_gid;
    gid_t allow_gid;
    GList *conns;           /* Conn*, in accept order */
    guint n_conns;
    guint64 next_id;
    guint reap_src;
    GHashTable *settings;   /* lower-case uuid -> VmSettings */
    char *state_file;       /* per-VM settings survive restarts here */
};

/* ---- logging ---- */

static void conn_log(Conn *c, GLogLevelFlags level, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void conn_log(Conn *c, GLogLevelFlags level, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;
    g_autofree char *full = NULL;
    char id[24], pid[24];

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_snprintf(id, sizeof(id), "%" G_GUINT64_FORMAT, c->id);
    g_snprintf(pid, sizeof(pid), "%ld", (long)c->pid);
    if (c->name) {
        full = g_strdup_printf("conn %s (vm %s %s, pid %s): %s", id, c->name,
                               c->uuid, pid, msg);
    } else {
        full = g_strdup_printf("conn %s (pid %s, uid %lu): %s", id, pid,
                               (unsigned long)c->uid, msg);
    }
    {
        const GLogField fields[] = {
            { "GLIB_DOMAIN", G_LOG_DOMAIN, -1 },
            { "MESSAGE", full, -1 },
            { "VTMEM_CONN", id, -1 },
            { "VTMEM_PEER_PID", pid, -1 },
            { "VTMEM_VM_UUID", c->uuid, -1 },
            { "VTMEM_VM_NAME", c->name ? c->name : "", -1 },
        };
        g_log_structured_array(level, fields, G_N_ELEMENTS(fields));
    }
}

/* ---- accounting ---- */

/* Upper bound of the memory the device may hold now. */
static uint64_t conn_charge(const Conn *c)
{
    uint64_t ch = c->limit;

    if (c->has_pending && c->pending > ch) {
        ch = c->pending;
    }
    return c->held > ch ? c->held : ch;
}

/* Devices report any 64-bit value (UINT64_MAX: "no limit"): sums saturate. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t total_charge(Daemon *d)
{
    uint64_t sum = 0;

    for (GList *l = d->conns; l; l = l->next) {
        Conn *c = l->data;

        if (c->kind == CONN_DEVICE || c->kind == CONN_GHOST) {
            sum = sat_add(sum, conn_charge(c));
        }
    }
    return sum;
}

static VmSettings *settings_lookup(Daemon *d, const char *uuid, bool create)
{
    g_autofree char *key = g_ascii_strdown(uuid, -1);
    VmSettings *s = g_hash_table_lookup(d->settings, key);

    if (!s && create) {
        s = g_new0(VmSettings, 1);
        s->weight = VTMEM_POOL_DEFAULT_WEIGHT;
        s->vm_limit = UINT64_MAX;
        g_hash_table_insert(d->settings, g_steal_pointer(&key), s);
    }
    return s;
}

/*
 * State file: one line per VM with settings, "<uuid> <weight> <vm-limit|none>",
 * written atomically (temp file + rename) on every change.
 */
static void settings_save(Daemon *d)
{
    GString *text = g_string_new(NULL);
    GHashTableIter it;
    gpointer k, v;
    g_autoptr(GError) error = NULL;

    if (!d->state_file) {
        g_string_free(text, TRUE);
        return;
    }
    g_hash_table_iter_init(&it, d->settings);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        VmSettings *s = v;

        if (s->vm_limit == UINT64_MAX) {
            g_string_append_printf(text, "%s %u " VTMEM_POOL_NO_LIMIT_WORD "\n",
                                   (char *)k, s->weight);
        } else {
            g_string_append_printf(text, "%s %u %" G_GUINT64_FORMAT "\n", (char *)k,
                                   s->weight, s->vm_limit);
        }
    }
    if (!g_file_set_contents_full(d->state_file, text->str, (gssize)text->len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error)) {
        g_warning("saving settings to %s: %s", d->state_file, error->message);
    }
    g_string_free(text, TRUE);
}

static bool settings_load(Daemon *d, GError **error)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    g_autoptr(GError) err = NULL;
    guint n = 0;

    if (!g_file_get_contents(d->state_file, &text, NULL, &err)) {
        if (g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            return true;
        }
        g_propagate_error(error, g_steal_pointer(&err));
        return false;
    }
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) f = NULL;
        unsigned nf = 0;
        uint64_t w, lim = UINT64_MAX;
        VmSettings *s;

        if (!*lines[i]) {
            continue;
        }
        f = vtmem_pool_split(lines[i], 3, &nf);
        if (!f || nf != 3 || !vtmem_pool_uuid_valid(f[0]) ||
            !vtmem_pool_parse_u64(f[1], &w) || w < 1 || w > VTMEM_POOL_MAX_WEIGHT ||
            (strcmp(f[2], VTMEM_POOL_NO_LIMIT_WORD) != 0 &&
             (!vtmem_pool_parse_u64(f[2], &lim) || lim > VTMEM_POOL_MAX_BYTES))) {
            g_warning("%s:%u: ignoring malformed line", d->state_file, i + 1);
            continue;
        }
        s = settings_lookup(d, f[0], true);
        s->weight = (uint32_t)w;
        s->vm_limit = lim;
        n++;
    }
    g_message("loaded settings of %u VMs from %s", n, d->state_file);
    return true;
}

static uint64_t conn_cap(Daemon *d, Conn *c)
{
    VmSettings *s = settings_lookup(d, c->uuid, false);
    uint64_t cap = c->cap;

    if (s && s->vm_limit < cap) {
        cap = s->vm_limit;
    }
    return cap;
}

static uint32_t conn_weight(Daemon *d, Conn *c)
{
    VmSettings *s = settings_lookup(d, c->uuid, false);

    return s ? s->weight : VTMEM_POOL_DEFAULT_WEIGHT;
}

/* ---- output ---- */

static void conn_doom(Conn *c, const char *reason);

static gboolean conn_out_ready(gint fd, GIOCondition cond, gpointer data);

static void conn_flush(Conn *c)
{
    while (c->out->len > 0 && !c->doomed) {
        ssize_t n = send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            g_string_erase(c->out, 0, n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->out_src) {
                c->out_src = g_unix_fd_add(c->fd, G_IO_OUT, conn_out_ready, c);
            }
            return;
        } else {
            conn_doom(c, n < 0 ? g_strerror(errno) : "send failed");
            return;
        }
    }
    if (c->out_src && c->out->len == 0) {
        g_source_remove(c->out_src);
        c->out_src = 0;
    }
}

static gboolean conn_out_ready(gint fd, GIOCondition cond, gpointer data)
{
    Conn *c = data;

    (void)fd;
    (void)cond;
    c->out_src = 0;         /* this source ends here */
    conn_flush(c);
    if (c->out->len > 0 && !c->doomed && !c->out_src) {
        c->out_src = g_unix_fd_add(c->fd, G_IO_OUT, conn_out_ready, c);
    }
    return G_SOURCE_REMOVE;
}

static void conn_send(Conn *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static void conn_send(Conn *c, const char *fmt, ...)
{
    va_list ap;

    if (c->doomed || c->fd < 0) {
        return;
    }
    va_start(ap, fmt);
    g_string_append_vprintf(c->out, fmt, ap);
    va_end(ap);
    g_string_append_c(c->out, '\n');
    if (c->out->len > VTMEM_POOL_MAX_OUTBUF) {
        conn_doom(c, "peer does not read its replies");
        return;
    }
    conn_flush(c);
}

/* ---- policy application ---- */

static void send_limit(Conn *c, uint64_t limit)
{
    c->has_pending = true;
    c->pending = limit;
    c->seq++;
    conn_log(c, G_LOG_LEVEL_DEBUG, "limit %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
             " (seq %" G_GUINT64_FORMAT ", held %" G_GUINT64_FORMAT ")",
             c->limit, limit, c->seq, c->held);
    conn_send(c, VTMEM_POOL_MSG_LIMIT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
              c->seq, limit);
}

static bool in_grace(Daemon *d)
{
    return g_get_monotonic_time() < d->grace_until;
}

/*
 * Recompute every device's share and move the devices toward it.
 * Invariant: the daemon never raises a limit unless the sum of charges
 * stays <= pool_limit afterwards. Lowering is always allowed; a lowered
 * limit counts as freed only when the device acknowledges it.
 */
static void rebalance(Daemon *d)
{
    g_autofree VtmemShare *shares = NULL;
    g_autofree Conn **devs = NULL;
    uint64_t ghost = 0, avail, charged, headroom;
    size_t n = 0, i;
    const uint64_t G = VTMEM_POOL_GRANULE;

    shares = g_new0(VtmemShare, d->n_conns + 1);
    devs = g_new0(Conn *, d->n_conns + 1);
    for (GList *l = d->conns; l; l = l->next) {
        Conn *c = l->data;

        if (c->kind == CONN_GHOST) {
            ghost = sat_add(ghost, conn_charge(c));
        } else if (c->kind == CONN_DEVICE && !c->doomed) {
            uint64_t cap = conn_cap(d, c);

            devs[n] = c;
            shares[n].demand = c->wanted / G + (c->wanted % G != 0);
            shares[n].cap = cap == UINT64_MAX ? UINT64_MAX : cap / G + (cap % G != 0);
            shares[n].weight = conn_weight(d, c);
            n++;
        }
    }
    avail = d->pool_limit > ghost ? d->pool_limit - ghost : 0;
    vtmem_policy_allocate(shares, n, avail / G);
    for (i = 0; i < n; i++) {
        uint64_t t = shares[i].alloc * G;
        uint64_t cap = conn_cap(d, devs[i]);

        devs[i]->target = t < cap ? t : cap;
    }

    /* Decreases first: always safe. */
    for (i = 0; i < n; i++) {
        Conn *c = devs[i];

        if (!c->has_pending && c->target < c->limit) {
            send_limit(c, c->target);
        }
    }
    if (in_grace(d)) {
        return;
    }
    charged = total_charge(d);
    headroom = d->pool_limit > charged ? d->pool_limit - charged : 0;
    for (i = 0; i < n && headroom > 0; i++) {
        Conn *c = devs[i];
        uint64_t before, after, nl;

        if (c->has_pending || c->doomed || c->target <= c->limit) {
            continue;
        }
        before = conn_charge(c);
        /* highest limit whose charge fits in the headroom */
        nl = c->target;
        if ((nl > c->held ? nl : c->held) - before > headroom) {
            nl = before + headroom;
        }
        if (nl <= c->limit) {
            continue;
        }
        after = nl > c->held ? nl : c->held;
        headroom -= after - before;
        send_limit(c, nl);
    }
}

/* ---- connection lifetime ---- */

static gboolean reap(gpointer data);

static void conn_doom(Conn *c, const char *reason)
{
    if (c->doomed) {
        return;
    }
    c->doomed = g_strdup(reason);
    if (c->in_src) {
        g_source_remove(c->in_src);
        c->in_src = 0;
    }
    if (c->out_src) {
        g_source_remove(c->out_src);
        c->out_src = 0;
    }
    if (c->hello_src) {
        g_source_remove(c->hello_src);
        c->hello_src = 0;
    }
    if (!c->d->reap_src) {
        c->d->reap_src = g_idle_add(reap, c->d);
    }
}

/* A protocol violation: tell the peer (best effort) and close. */
static void conn_fail(Conn *c, const char *why)
{
    g_autofree char *reason = g_strdup_printf("protocol error: %s", why);

    conn_send(c, VTMEM_POOL_MSG_ERROR " %s", why);
    conn_doom(c, reason);
}

static void conn_free(Conn *c)
{
    if (c->in_src) {
        g_source_remove(c->in_src);
    }
    if (c->out_src) {
        g_source_remove(c->out_src);
    }
    if (c->hello_src) {
        g_source_remove(c->hello_src);
    }
    if (c->pidfd_src) {
        g_source_remove(c->pidfd_src);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    if (c->pidfd >= 0) {
        close(c->pidfd);
    }
    if (c->out) {
        g_string_free(c->out, TRUE);
    }
    g_free(c->doomed);
    g_free(c->name);
    g_free(c);
}

/* Is the peer process still there? With a pidfd, exactly; without one
 * (kernels before 5.3, valgrind), by pid (a reused pid only delays the
 * return of that budget).
 */
static bool peer_alive(Conn *c)
{
    if (c->pidfd >= 0) {
        struct pollfd p = { .fd = c->pidfd, .events = POLLIN };

        return poll(&p, 1, 0) == 0;
    }
    return c->pid > 0 && (kill(c->pid, 0) == 0 || errno == EPERM);
}

static gboolean ghost_poll(gpointer data)
{
    Conn *c = data;

    if (peer_alive(c)) {
        return G_SOURCE_CONTINUE;
    }
    c->pidfd_src = 0;
    conn_doom(c, "process exited");
    return G_SOURCE_REMOVE;
}

static gboolean ghost_exited(gint fd, GIOCondition cond, gpointer data)
{
    Conn *c = data;

    (void)fd;
    (void)cond;
    c->pidfd_src = 0;
    conn_doom(c, "process exited");
    return G_SOURCE_REMOVE;
}

static gboolean reap(gpointer data)
{
    Daemon *d = data;
    GList *l = d->conns;

    d->reap_src = 0;
    while (l) {
        GList *next = l->next;
        Conn *c = l->data;

        if (c->doomed) {
            if (c->kind == CONN_DEVICE && !c->bye && peer_alive(c)) {
                /* The device may still hold pages on its lease: keep
                 * charging it until its process exits or it comes back.
                 */
                conn_log(c, G_LOG_LEVEL_WARNING,
                         "closed: %s; process alive, keeping its lease of %"
                         G_GUINT64_FORMAT " bytes until it exits or re-registers",
                         c->doomed, conn_charge(c));
                c->kind = CONN_GHOST;
                g_clear_pointer(&c->doomed, g_free);
                close(c->fd);
                c->fd = -1;
                c->rd.len = 0;
                g_string_truncate(c->out, 0);
                if (c->pidfd >= 0) {
                    c->pidfd_src = g_unix_fd_add(c->pidfd, G_IO_IN, ghost_exited, c);
                } else {
                    c->pidfd_src = g_timeout_add(250, ghost_poll, c);
                }
            } else {
                if (c->kind == CONN_DEVICE || c->kind == CONN_GHOST) {
                    conn_log(c, c->bye || c->kind == CONN_GHOST ? G_LOG_LEVEL_MESSAGE
                                                                : G_LOG_LEVEL_WARNING,
                             "closed: %s; returning %" G_GUINT64_FORMAT " bytes",
                             c->doomed, conn_charge(c));
                } else {
                    conn_log(c, strcmp(c->doomed, "end of file") == 0
                                    ? G_LOG_LEVEL_DEBUG : G_LOG_LEVEL_WARNING,
                             "closed: %s", c->doomed);
                }
                d->conns = g_list_delete_link(d->conns, l);
                d->n_conns--;
                conn_free(c);
            }
        }
        l = next;
    }
    rebalance(d);
    return G_SOURCE_REMOVE;
}

/* ---- device messages ---- */

static bool parse_fields_u64(char **f, unsigned n, uint64_t *out)
{
    for (unsigned i = 0; i < n; i++) {
        if (!vtmem_pool_parse_u64(f[i], &out[i])) {
            return false;
        }
    }
    return true;
}

static void handle_register(Conn *c, char **f, unsigned nf)
{
    Daemon *d = c->d;
    uint64_t v[5];   /* version, held, limit, cap, wanted */

    if (nf != 8) {
        conn_fail(c, "REGISTER needs 7 fields");
        return;
    }
    if (!vtmem_pool_parse_u64(f[1], &v[0]) || !parse_fields_u64(f + 3, 4, v + 1)) {
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
    /* The same process coming back replaces its ghost. */
    for (GList *l = d->conns; l; l = l->next) {
        Conn *g = l->data;

        if (g->kind == CONN_GHOST && !g->doomed && g->pid == c->pid &&
            g_ascii_strcasecmp(g->uuid, f[2]) == 0) {
            conn_doom(g, "process re-registered");
            g->kind = CONN_CONTROL;   /* nothing to return twice */
        }
    }
    c->kind = CONN_DEVICE;
    g_strlcpy(c->uuid, f[2], sizeof(c->uuid));
    c->name = g_strdup(f[7]);
    c->held = v[1];
    c->limit = v[2];
    c->cap = v[3];
    c->wanted = v[4];
    c->may_control = false;
    if (c->hello_src) {
        g_source_remove(c->hello_src);
        c->hello_src = 0;
    }
    conn_log(c, G_LOG_LEVEL_MESSAGE,
             "registered: held %" G_GUINT64_FORMAT " limit %" G_GUINT64_FORMAT
             " cap %" G_GUINT64_FORMAT " wanted %" G_GUINT64_FORMAT,
             c->held, c->limit, c->cap, c->wanted);
    {
        gint64 now = g_get_monotonic_time();
        uint64_t grace = d->grace_until > now ? (uint64_t)(d->grace_until - now) / 1000 : 0;

        conn_send(c, VTMEM_POOL_MSG_WELCOME " %d %llu %" G_GUINT64_FORMAT,
                  VTMEM_POOL_PROTO_VERSION, VTMEM_POOL_GRANULE, grace);
    }
    if (total_charge(d) > d->pool_limit) {
        conn_log(c, G_LOG_LEVEL_WARNING,
                 "devices hold leases of %" G_GUINT64_FORMAT " bytes, above the pool"
                 " limit %" G_GUINT64_FORMAT ": shrinking", total_charge(d), d->pool_limit);
    }
    rebalance(d);
}

static void handle_device_line(Conn *c, char **f, unsigned nf)
{
    uint64_t v[3];

    if (strcmp(f[0], VTMEM_POOL_MSG_UPDATE) == 0) {
        if (nf != 4 || !parse_fields_u64(f + 1, 3, v)) {
            conn_fail(c, "bad UPDATE");
            return;
        }
        c->held = v[0];
        c->wanted = v[1];
        c->cap = v[2];
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
        c->held = v[1];
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
    rebalance(c->d);
}

/* ---- control messages ---- */

static void send_status(Conn *c)
{
    Daemon *d = c->d;
    gint64 now = g_get_monotonic_time();
    guint nvm = 0;

    for (GList *l = d->conns; l; l = l->next) {
        Conn *v = l->data;

        nvm += v->kind == CONN_DEVICE || v->kind == CONN_GHOST;
    }
    conn_send(c, VTMEM_POOL_MSG_POOL " limit=%" G_GUINT64_FORMAT " charged=%" G_GUINT64_FORMAT
              " granule=%llu vms=%u grace-ms=%" G_GINT64_FORMAT " version=%d",
              d->pool_limit, total_charge(d), VTMEM_POOL_GRANULE, nvm,
              d->grace_until > now ? (d->grace_until - now) / 1000 : 0,
              VTMEM_POOL_PROTO_VERSION);
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
        conn_send(c, VTMEM_POOL_MSG_VM " uuid=%s connected=%d pid=%ld weight=%u vm-limit=%s"
                  " cap=%" G_GUINT64_FORMAT " held=%" G_GUINT64_FORMAT
                  " wanted=%" G_GUINT64_FORMAT " limit=%" G_GUINT64_FORMAT
                  " charge=%" G_GUINT64_FORMAT " target=%" G_GUINT64_FORMAT " name=%s",
                  v->uuid, v->kind == CONN_DEVICE, (long)v->pid,
                  s ? s->weight : VTMEM_POOL_DEFAULT_WEIGHT, vml, v->cap, v->held,
                  v->wanted, v->has_pending && v->pending > v->limit ? v->pending : v->limit,
                  conn_charge(v), v->target, v->name ? v->name : "");
    }
    conn_send(c, VTMEM_POOL_MSG_END);
}

static void handle_control_line(Conn *c, char **f, unsigned nf)
{
    Daemon *d = c->d;
    uint64_t v;

    if (!c->may_control) {
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
    } else if (strcmp(f[0], VTMEM_POOL_MSG_SET_POOL_LIMIT) == 0 && nf == 2) {
        if (!vtmem_pool_parse_u64(f[1], &v) || v > VTMEM_POOL_MAX_BYTES) {
            conn_fail(c, "SET-POOL-LIMIT: bad size");
            return;
        }
        g_message("pool limit %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT " (charged %"
                  G_GUINT64_FORMAT ")", d->pool_limit, v, total_charge(d));
        d->pool_limit = v;
        conn_send(c, VTMEM_POOL_MSG_OK);
        rebalance(d);
    } else if (strcmp(f[0], VTMEM_POOL_MSG_SET_VM_LIMIT) == 0 && nf == 3) {
        if (!vtmem_pool_uuid_valid(f[1])) {
            conn_fail(c, "SET-VM-LIMIT: bad uuid");
            return;
        }
        if (strcmp(f[2], VTMEM_POOL_NO_LIMIT_WORD) == 0) {
            v = UINT64_MAX;
        } else if (!vtmem_pool_parse_u64(f[2], &v) || v > VTMEM_POOL_MAX_BYTES) {
            conn_fail(c, "SET-VM-LIMIT: bad size");
            return;
        }
        settings_lookup(d, f[1], true)->vm_limit = v;
        settings_save(d);
        g_message("vm %s: limit %s", f[1], f[2]);
        conn_send(c, VTMEM_POOL_MSG_OK);
        rebalance(d);
    } else if (strcmp(f[0], VTMEM_POOL_MSG_SET_VM_WEIGHT) == 0 && nf == 3) {
        if (!vtmem_pool_uuid_valid(f[1])) {
            conn_fail(c, "SET-VM-WEIGHT: bad uuid");
            return;
        }
        if (!vtmem_pool_parse_u64(f[2], &v) || v < 1 || v > VTMEM_POOL_MAX_WEIGHT) {
            conn_fail(c, "SET-VM-WEIGHT: weight must be 1..10000");
            return;
        }
        settings_lookup(d, f[1], true)->weight = (uint32_t)v;
        settings_save(d);
        g_message("vm %s: weight %s", f[1], f[2]);
        conn_send(c, VTMEM_POOL_MSG_OK);
        rebalance(d);
    } else {
        conn_fail(c, "unknown command");
    }
}

static void handle_line(Conn *c, const char *line)
{
    unsigned nf = 0;
    g_auto(GStrv) f = NULL;

    if (c->kind == CONN_NEW && g_str_has_prefix(line, VTMEM_POOL_MSG_REGISTER " ")) {
        f = vtmem_pool_split(line, 8, &nf);
        if (!f) {
            conn_fail(c, "malformed line");
            return;
        }
        handle_register(c, f, nf);
        return;
    }
    f = vtmem_pool_split(line, 4, &nf);
    if (!f) {
        conn_fail(c, "malformed line");
        return;
    }
    if (c->kind == CONN_DEVICE) {
        handle_device_line(c, f, nf);
    } else {
        handle_control_line(c, f, nf);
    }
}

static gboolean conn_in_ready(gint fd, GIOCondition cond, gpointer data)
{
    Conn *c = data;
    char line[VTMEM_POOL_MAX_LINE];
    const char *why = NULL;
    ssize_t n;

    (void)cond;
    n = vtmem_line_reader_fill(&c->rd, fd);
    if (n == 0) {
        c->in_src = 0;
        conn_doom(c, c->rd.len ? "end of file inside a line" : "end of file");
        return G_SOURCE_REMOVE;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return G_SOURCE_CONTINUE;
        }
        c->in_src = 0;
        conn_doom(c, g_strerror(errno));
        return G_SOURCE_REMOVE;
    }
    while (!c->doomed) {
        VtmemLineResult r = vtmem_line_reader_next(&c->rd, line, &why);

        if (r == VTMEM_LINE_NONE) {
            break;
        }
        if (r == VTMEM_LINE_ERROR) {
            conn_fail(c, why);
            break;
        }
        handle_line(c, line);
    }
    if (c->doomed) {
        c->in_src = 0;   /* conn_doom removed it already: it is gone */
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean hello_timeout(gpointer data)
{
    Conn *c = data;

    c->hello_src = 0;
    conn_doom(c, "no message in time");
    return G_SOURCE_REMOVE;
}

static bool peer_allowed(Daemon *d, int fd, struct ucred *cr)
{
    if (cr->uid == 0 || cr->uid == geteuid()) {
        return true;
    }
    if (!d->have_allow_gid) {
        return false;
    }
    if (cr->gid == d->allow_gid) {
        return true;
    }
#ifdef SO_PEERGROUPS
    {
        gid_t groups[256];
        socklen_t len = sizeof(groups);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
            for (size_t i = 0; i < len / sizeof(gid_t); i++) {
                if (groups[i] == d->allow_gid) {
                    return true;
                }
            }
        }
    }
#endif
    return false;
}

static gboolean listen_ready(gint lfd, GIOCondition cond, gpointer data)
{
    Daemon *d = data;

    (void)cond;
    for (;;) {
        struct ucred cr;
        socklen_t len = sizeof(cr);
        Conn *c;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                g_warning("accept: %s", g_strerror(errno));
            }
            return G_SOURCE_CONTINUE;
        }
        c = g_new0(Conn, 1);
        c->d = d;
        c->id = ++d->next_id;
        c->fd = fd;
        c->pidfd = -1;
        c->out = g_string_new(NULL);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
            g_warning("conn %" G_GUINT64_FORMAT ": SO_PEERCRED: %s", c->id, g_strerror(errno));
            conn_free(c);
            continue;
        }
        c->uid = cr.uid;
        c->gid = cr.gid;
        c->pid = cr.pid;
        if (!peer_allowed(d, fd, &cr)) {
            conn_log(c, G_LOG_LEVEL_WARNING, "rejected: uid %lu gid %lu not allowed",
                     (unsigned long)cr.uid, (unsigned long)cr.gid);
            (void)!send(fd, VTMEM_POOL_MSG_ERROR " not allowed\n",
                        sizeof(VTMEM_POOL_MSG_ERROR " not allowed\n") - 1,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
            conn_free(c);
            continue;
        }
        if (d->n_conns >= MAX_CONNECTIONS) {
            conn_log(c, G_LOG_LEVEL_WARNING, "rejected: too many connections");
            conn_free(c);
            continue;
        }
        c->may_control = cr.uid == 0 || cr.uid == geteuid();
#ifdef SYS_pidfd_open
        c->pidfd = (int)syscall(SYS_pidfd_open, cr.pid, 0);
        if (c->pidfd >= 0) {
            (void)fcntl(c->pidfd, F_SETFD, FD_CLOEXEC);
        }
#endif
        c->in_src = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, conn_in_ready, c);
        c->hello_src = g_timeout_add(VTMEM_POOL_HELLO_TIMEOUT_MS, hello_timeout, c);
        d->conns = g_list_append(d->conns, c);
        d->n_conns++;
        conn_log(c, G_LOG_LEVEL_DEBUG, "accepted");
    }
}

/* ---- socket setup ---- */

static int make_listener(const char *path, GError **error)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_autofree char *dir = g_path_get_dirname(path);
    struct stat st;
    mode_t old;
    int fd, probe;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "socket path too long: %s", path);
        return -1;
    }
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    if (stat(dir, &st) < 0) {
        if (g_mkdir_with_parents(dir, 0750) < 0) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                        "creating %s: %s", dir, g_strerror(errno));
            return -1;
        }
    } else if (st.st_mode & S_IWOTH) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "%s is world-writable: refusing to put the socket there", dir);
        return -1;
    }
    /* A stale socket from a crashed daemon: remove it, unless alive. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                        "%s exists and is not a socket", path);
            return -1;
        }
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(probe);
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                        "another vtmemd is listening on %s", path);
            return -1;
        }
        if (probe >= 0) {
            close(probe);
        }
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "socket: %s", g_strerror(errno));
        return -1;
    }
    old = umask(0117);      /* socket created 0660 */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;

        umask(old);
        close(fd);
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                    "bind %s: %s", path, g_strerror(e));
        return -1;
    }
    umask(old);
    if (chmod(path, 0660) < 0 || listen(fd, 64) < 0) {
        int e = errno;

        close(fd);
        unlink(path);
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                    "listen %s: %s", path, g_strerror(e));
        return -1;
    }
    return fd;
}

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
    rebalance(d);
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

int main(int argc, char **argv)
{
    g_autofree char *socket_path = NULL;
    g_autofree char *pool_limit = NULL;
    g_autofree char *allow_gid = NULL;
    g_autofree char *state_file = NULL;
    gboolean verbose = FALSE;
    gint grace_ms = VTMEM_POOL_DEFAULT_GRACE_MS;
    GOptionEntry entries[] = {
        { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path,
          "Listen on PATH (default " VTMEM_POOL_DEFAULT_SOCKET ")", "PATH" },
        { "pool-limit", 'l', 0, G_OPTION_ARG_STRING, &pool_limit,
          "Host-wide budget for compressed pages, e.g. 4G (required)", "SIZE" },
        { "allow-gid", 'g', 0, G_OPTION_ARG_STRING, &allow_gid,
          "Also accept devices of processes in this group (name or number)", "GROUP" },
        { "state-file", 0, 0, G_OPTION_ARG_FILENAME, &state_file,
          "Keep per-VM weights and limits in FILE across restarts", "FILE" },
        { "grace-ms", 0, 0, G_OPTION_ARG_INT, &grace_ms,
          "After start, grant no increase for this long (default 5000)", "MS" },
        { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log debug messages", NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- vtmem pool daemon");
    g_autoptr(GError) error = NULL;
    Daemon d = { .listen_fd = -1 };
    gint64 start;

    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_summary(ctx, "Shares one host-wide budget for compressed guest "
                                 "pages among the virtio-tmem devices of all VMs.");
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
    if (!vtmem_pool_parse_size(pool_limit, &d.pool_limit) ||
        d.pool_limit > VTMEM_POOL_MAX_BYTES) {
        g_printerr("vtmemd: bad size for --pool-limit: %s\n", pool_limit);
        return 1;
    }
    if (allow_gid) {
        if (!parse_gid(allow_gid, &d.allow_gid)) {
            g_printerr("vtmemd: unknown group: %s\n", allow_gid);
            return 1;
        }
        d.have_allow_gid = true;
    }
    if (grace_ms < 0) {
        g_printerr("vtmemd: --grace-ms must not be negative\n");
        return 1;
    }
    if (verbose) {
        g_log_set_debug_enabled(TRUE);
    }
    signal(SIGPIPE, SIG_IGN);

    d.socket_path = socket_path ? g_strdup(socket_path) : g_strdup(VTMEM_POOL_DEFAULT_SOCKET);
    d.listen_fd = make_listener(d.socket_path, &error);
    if (d.listen_fd < 0) {
        g_printerr("vtmemd: %s\n", error->message);
        g_free(d.socket_path);
        return 1;
    }
    d.settings = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    d.state_file = g_steal_pointer(&state_file);
    if (d.state_file && !settings_load(&d, &error)) {
        g_printerr("vtmemd: %s\n", error->message);
        close(d.listen_fd);
        unlink(d.socket_path);
        g_hash_table_destroy(d.settings);
        g_free(d.state_file);
        g_free(d.socket_path);
        return 1;
    }
    d.loop = g_main_loop_new(NULL, FALSE);
    start = g_get_monotonic_time();
    d.grace_until = start + (gint64)grace_ms * 1000;
    if (grace_ms > 0) {
        d.grace_src = g_timeout_add((guint)grace_ms, grace_over, &d);
    }
    d.listen_src = g_unix_fd_add(d.listen_fd, G_IO_IN, listen_ready, &d);
    g_unix_signal_add(SIGTERM, on_signal, &d);
    g_unix_signal_add(SIGINT, on_signal, &d);
    g_message("listening on %s, pool limit %" G_GUINT64_FORMAT " bytes, granule %llu,"
              " grace %d ms", d.socket_path, d.pool_limit, VTMEM_POOL_GRANULE, grace_ms);

    g_main_loop_run(d.loop);

    g_source_remove(d.listen_src);
    if (d.grace_src) {
        g_source_remove(d.grace_src);
    }
    if (d.reap_src) {
        g_source_remove(d.reap_src);
    }
    g_list_free_full(d.conns, (GDestroyNotify)conn_free);
    close(d.listen_fd);
    unlink(d.socket_path);
    g_hash_table_destroy(d.settings);
    g_free(d.state_file);
    g_main_loop_unref(d.loop);
    g_free(d.socket_path);
    return 0;
}
