/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd's connections: the listener (with fd budget, per-peer caps and a
 * reserve for root), non-blocking line I/O, and a connection's lifetime
 * (doom, reap, ghost while its process lives).
 */
#define _GNU_SOURCE
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include "vtmemd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77         /* Linux 6.5 */
#endif

/* ---- logging ---- */

void conn_log(Conn *c, GLogLevelFlags level, const char *fmt, ...)
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

/* Devices' claims are bounded, but sums still saturate. */
uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

/*
 * Upper bound of the memory the device may hold now. A ghost is charged
 * at most its last lease: what it was last told it may hold.
 */
uint64_t conn_charge(const Conn *c)
{
    uint64_t ch = c->limit;

    if (c->has_pending && c->pending > ch) {
        ch = c->pending;
    }
    ch = c->held > ch ? c->held : ch;
    if (c->kind == CONN_GHOST) {
        uint64_t last = c->seq ? c->pending : c->limit;

        ch = ch < last ? ch : last;
    }
    return ch;
}

uint64_t total_charge(Daemon *d)
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

/* ---- output ---- */

/* Queue a line. Without an fd (the fuzzer) the output stays queued. */
void conn_send(Conn *c, const char *fmt, ...)
{
    va_list ap;

    if (c->doomed || !c->lc) {
        return;
    }
    va_start(ap, fmt);
    vtmem_line_conn_sendv(c->lc, fmt, ap);
    va_end(ap);
}

/* ---- lifetime ---- */

void conn_doom(Conn *c, const char *reason)
{
    if (c->doomed) {
        return;
    }
    c->doomed = g_strdup(reason);
    if (c->lc) {
        vtmem_line_conn_close(c->lc);
    }
    if (c->hello_src) {
        g_source_remove(c->hello_src);
        c->hello_src = 0;
    }
    if (!c->d->reap_src) {
        /* default priority: ready fds must not starve it */
        c->d->reap_src = g_idle_add_full(G_PRIORITY_DEFAULT, reap, c->d,
                                         NULL);
    }
}

/* A protocol violation: tell the peer (best effort) and close. */
void conn_fail(Conn *c, const char *why)
{
    g_autofree char *reason = g_strdup_printf("protocol error: %s", why);

    conn_send(c, VTMEM_POOL_MSG_ERROR " %s", why);
    conn_doom(c, reason);
}

static void count_adjust(GHashTable *t, guint key, int delta)
{
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(t, GUINT_TO_POINTER(key)));

    n += delta;
    if (n) {
        g_hash_table_insert(t, GUINT_TO_POINTER(key), GUINT_TO_POINTER(n));
    } else {
        g_hash_table_remove(t, GUINT_TO_POINTER(key));
    }
}

static guint count_of(GHashTable *t, guint key)
{
    return GPOINTER_TO_UINT(g_hash_table_lookup(t, GUINT_TO_POINTER(key)));
}

static void conn_free(Conn *c)
{
    vtmem_line_conn_free(c->lc);
    if (c->hello_src) {
        g_source_remove(c->hello_src);
    }
    if (c->pidfd_src) {
        g_source_remove(c->pidfd_src);
    }
    if (c->pidfd >= 0) {
        close(c->pidfd);
    }
    g_free(c->doomed);
    g_free(c->name);
    g_free(c->label);
    g_free(c);
}

/* Forget a connection counted by conn_add. */
static void conn_remove(Daemon *d, GList *link)
{
    Conn *c = link->data;

    d->conns = g_list_delete_link(d->conns, link);
    d->n_conns--;
    count_adjust(d->per_uid, c->uid, -1);
    count_adjust(d->per_pid, (guint)c->pid, -1);
    conn_free(c);
}

void conns_free(Daemon *d)
{
    while (d->conns) {
        conn_remove(d, d->conns);
    }
}

/*
 * Is the peer process still there? With a pidfd, exactly; without one
 * (valgrind has no pidfd_open), by pid (a reused pid only delays the
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

static void conn_become_ghost(Conn *c)
{
    c->kind = CONN_GHOST;
    conn_log(c, G_LOG_LEVEL_WARNING,
             "closed: %s; process alive, keeping its lease of %"
             G_GUINT64_FORMAT " bytes until it exits or re-registers",
             c->doomed, conn_charge(c));
    g_clear_pointer(&c->doomed, g_free);
    g_clear_pointer(&c->lc, vtmem_line_conn_free);
    if (c->pidfd >= 0) {
        c->pidfd_src = g_unix_fd_add(c->pidfd, G_IO_IN, ghost_exited, c);
    } else {
        c->pidfd_src = g_timeout_add(250, ghost_poll, c);
    }
}

gboolean reap(gpointer data)
{
    Daemon *d = data;
    GList *l = d->conns;

    d->reap_src = 0;
    while (l) {
        GList *next = l->next;
        Conn *c = l->data;

        if (!c->doomed) {
            l = next;
            continue;
        }
        if (c->kind == CONN_DEVICE && !c->bye && !c->evicted &&
            peer_alive(c)) {
            /*
             * The device may still hold pages on its lease: keep
             * charging it until its process exits or it comes back.
             */
            conn_become_ghost(c);
        } else {
            if (c->kind == CONN_DEVICE || c->kind == CONN_GHOST) {
                conn_log(c, c->bye || c->evicted || c->kind == CONN_GHOST
                                ? G_LOG_LEVEL_MESSAGE : G_LOG_LEVEL_WARNING,
                         "closed: %s; returning %" G_GUINT64_FORMAT " bytes",
                         c->doomed, conn_charge(c));
            } else {
                conn_log(c, strcmp(c->doomed, "end of file") == 0
                                ? G_LOG_LEVEL_DEBUG : G_LOG_LEVEL_WARNING,
                         "closed: %s", c->doomed);
            }
            conn_remove(d, l);
        }
        l = next;
    }
    daemon_schedule_rebalance(d);
    return G_SOURCE_REMOVE;
}

/* ---- input ---- */

static void handle_line(Conn *c, const char *line)
{
    unsigned nf = 0;
    g_auto(GStrv) f = NULL;

    if (c->kind == CONN_NEW &&
        g_str_has_prefix(line, VTMEM_POOL_MSG_REGISTER " ")) {
        f = vtmem_pool_split(line, 8, &nf);
        if (!f) {
            conn_fail(c, "malformed line");
            return;
        }
        handle_register(c, f, nf);
        return;
    }
    /* UPDATE has the most fields: 6 (the last one takes the rest) */
    f = vtmem_pool_split(line, c->kind == CONN_DEVICE ? 6 : 4, &nf);
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

static void conn_line(void *opaque, const char *line)
{
    Conn *c = opaque;

    if (!c->doomed) {
        handle_line(c, line);
    }
}

static void conn_closed(void *opaque, const char *why, bool protocol)
{
    Conn *c = opaque;

    if (protocol) {
        conn_fail(c, why);
    } else {
        conn_doom(c, why);
    }
}

static const VtmemLineConnOps conn_ops = {
    .line = conn_line,
    .closed = conn_closed,
};

/* Bytes from the peer, as read() would give them (the fuzzer's entry). */
void conn_input(Conn *c, const char *data, size_t len)
{
    if (c->lc) {
        vtmem_line_conn_feed(c->lc, data, len);
    }
}

static gboolean hello_timeout(gpointer data)
{
    Conn *c = data;

    c->hello_src = 0;
    conn_doom(c, "no message in time");
    return G_SOURCE_REMOVE;
}

/* Count a new connection in. fd and pidfd may be -1 (the fuzzer). */
Conn *conn_add(Daemon *d, int fd, uid_t uid, gid_t gid, pid_t pid, int pidfd)
{
    Conn *c = g_new0(Conn, 1);

    c->d = d;
    c->id = ++d->next_id;
    c->pidfd = pidfd;
    c->uid = uid;
    c->gid = gid;
    c->pid = pid;
    c->trusted = uid == 0 || uid == geteuid();
    c->lc = vtmem_line_conn_new(fd, NULL, VTMEM_POOL_MAX_OUTBUF, &conn_ops,
                                c);
    if (fd >= 0) {
        c->hello_src = g_timeout_add(VTMEM_POOL_HELLO_TIMEOUT_MS,
                                     hello_timeout, c);
    }
    d->conns = g_list_append(d->conns, c);
    d->n_conns++;
    count_adjust(d->per_uid, uid, 1);
    count_adjust(d->per_pid, (guint)pid, 1);
    return c;
}

/* ---- accept ---- */

static bool peer_allowed(Daemon *d, int fd, const struct ucred *cr)
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

/* Connections the fd limit allows: two fds each (socket, pidfd). */
guint max_connections(void)
{
    struct rlimit rl;
    rlim_t n;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
        return 65536;
    }
    n = rl.rlim_cur > 2 * VTMEMD_FD_SLACK ? rl.rlim_cur - VTMEMD_FD_SLACK
                                            : VTMEMD_FD_SLACK;
    n /= 2;
    return n > 65536 ? 65536 : (guint)n;
}

/* Why a peer may not have one more connection, or NULL. */
static const char *over_cap(Daemon *d, const struct ucred *cr, bool trusted)
{
    guint shared = d->max_conns > VTMEMD_CONTROL_RESERVE
                   ? d->max_conns - VTMEMD_CONTROL_RESERVE : 0;

    if (d->n_conns >= d->max_conns) {
        return "too many connections";
    }
    if (trusted) {
        return NULL;
    }
    if (d->n_conns >= shared) {
        return "too many connections (the rest is kept for root)";
    }
    if (count_of(d->per_pid, (guint)cr->pid) >= VTMEMD_MAX_PER_PID) {
        return "too many connections from this process";
    }
    /*
     * One uid gets at most half of the shared slots (QEMUs all run as
     * one uid: the others keep the other half).
     */
    if (count_of(d->per_uid, cr->uid) >= shared / 2) {
        return "too many connections from this user";
    }
    return NULL;
}

/* The real uid/gid of /proc/PID, or false. */
static bool proc_ids(pid_t pid, uid_t *uid, gid_t *gid)
{
    g_autofree char *path = g_strdup_printf("/proc/%ld/status", (long)pid);
    g_autofree char *text = NULL;
    const char *u, *g;
    unsigned long ru, eu, rg, eg;

    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return false;
    }
    u = strstr(text, "\nUid:");
    g = strstr(text, "\nGid:");
    if (!u || !g || sscanf(u + 5, "%lu %lu", &ru, &eu) != 2 ||
        sscanf(g + 5, "%lu %lu", &rg, &eg) != 2) {
        return false;
    }
    *uid = (uid_t)eu;
    *gid = (gid_t)eg;
    return true;
}

static bool pidfd_exited(int pidfd)
{
    struct pollfd p = { .fd = pidfd, .events = POLLIN };

    return poll(&p, 1, 0) != 0;
}

/*
 * A pidfd of the process that connected. Kernels >= 6.5 give it with the
 * socket (SO_PEERPIDFD: no race). Before, SO_PEERCRED's pid is opened
 * with pidfd_open, and then the process it names must still be alive and
 * have the peer's uid/gid: a pid reused in between by another user's
 * process is refused. (A pid reused by the same user's process in the
 * microseconds between connect and accept is not detected; it gains
 * nothing its own connection would not give.) -1 with *why if refused;
 * -1 without *why where pidfds are not available (valgrind).
 */
static int peer_pidfd(int fd, const struct ucred *cr, const char **why)
{
    int pidfd = -1;
    socklen_t len = sizeof(pidfd);
    uid_t uid;
    gid_t gid;

    *why = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 &&
        pidfd >= 0) {
        return pidfd;
    }
#ifdef SYS_pidfd_open
    pidfd = (int)syscall(SYS_pidfd_open, cr->pid, 0);
#endif
    if (pidfd < 0) {
        if (errno == ESRCH) {
            *why = "peer process exited";
        }
        return -1;
    }
    (void)fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    if (!proc_ids(cr->pid, &uid, &gid) || pidfd_exited(pidfd) ||
        uid != cr->uid) {
        close(pidfd);
        *why = "peer process exited or changed";
        return -1;
    }
    return pidfd;
}

static char *peer_label(int fd)
{
    char buf[256];
    socklen_t len = sizeof(buf) - 1;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERSEC, buf, &len) < 0 || len == 0) {
        return NULL;
    }
    buf[len] = '\0';
    return g_strdup(buf);
}

/*
 * Out of fds: pause the listener instead of spinning on a ready socket
 * whose connection cannot be accepted; say so at most every 10 s.
 */
static gboolean accept_resume(gpointer data)
{
    Daemon *d = data;

    d->accept_src = 0;
    listener_start(d);
    return G_SOURCE_REMOVE;
}

static void accept_backoff(Daemon *d, int err)
{
    gint64 now = g_get_monotonic_time();

    d->accept_failures++;
    if (now - d->accept_warned >= VTMEMD_LOG_INTERVAL_S * G_USEC_PER_SEC ||
        d->accept_warned == 0) {
        g_warning("accept: %s (%" G_GUINT64_FORMAT " times so far): pausing"
                  " the listener for %d ms; %u connections, limit %u",
                  g_strerror(err), d->accept_failures,
                  VTMEMD_ACCEPT_BACKOFF_MS, d->n_conns, d->max_conns);
        d->accept_warned = now;
    }
    if (d->listen_src) {
        g_source_remove(d->listen_src);
        d->listen_src = 0;
    }
    if (!d->accept_src) {
        d->accept_src = g_timeout_add(VTMEMD_ACCEPT_BACKOFF_MS,
                                      accept_resume, d);
    }
}

static void reject(int fd, const char *why)
{
    g_autofree char *line = g_strdup_printf(VTMEM_POOL_MSG_ERROR " %s\n", why);

    (void)!send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void accept_one(Daemon *d, int fd)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    const char *why;
    bool trusted;
    int pidfd;
    Conn *c;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
        g_warning("SO_PEERCRED: %s", g_strerror(errno));
        close(fd);
        return;
    }
    if (!peer_allowed(d, fd, &cr)) {
        g_warning("pid %ld: rejected: uid %lu gid %lu not allowed",
                  (long)cr.pid, (unsigned long)cr.uid, (unsigned long)cr.gid);
        reject(fd, "not allowed");
        return;
    }
    trusted = cr.uid == 0 || cr.uid == geteuid();
    why = over_cap(d, &cr, trusted);
    if (why) {
        g_debug("pid %ld uid %lu: rejected: %s", (long)cr.pid,
                (unsigned long)cr.uid, why);
        reject(fd, why);
        return;
    }
    pidfd = peer_pidfd(fd, &cr, &why);
    if (why) {
        g_warning("pid %ld uid %lu: rejected: %s", (long)cr.pid,
                  (unsigned long)cr.uid, why);
        reject(fd, why);
        return;
    }
    c = conn_add(d, fd, cr.uid, cr.gid, cr.pid, pidfd);
    c->label = peer_label(fd);
    conn_log(c, G_LOG_LEVEL_DEBUG, "accepted%s%s", c->label ? ", label " : "",
             c->label ? c->label : "");
}

static gboolean listen_ready(gint lfd, GIOCondition cond, gpointer data)
{
    Daemon *d = data;

    (void)cond;
    /* A bounded batch: other peers' lines are served in between. */
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0) {
            accept_one(d, fd);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM) {
            accept_backoff(d, errno);
            return G_SOURCE_REMOVE;     /* accept_backoff removed it */
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
            errno != ECONNABORTED) {
            g_warning("accept: %s", g_strerror(errno));
        }
        break;
    }
    return G_SOURCE_CONTINUE;
}

void listener_start(Daemon *d)
{
    if (!d->listen_src && d->listen_fd >= 0) {
        d->listen_src = g_unix_fd_add(d->listen_fd, G_IO_IN, listen_ready, d);
    }
}

/* ---- socket setup ---- */

/*
 * The socket's directory: created 0750 if missing; else it must be ours
 * (or root's) and writable by nobody else, so that nobody can swap the
 * socket for something else between our calls.
 */
static bool check_dir(const char *dir, GError **error)
{
    struct stat st;

    if (lstat(dir, &st) < 0) {
        /* 0750 whatever the umask (the unit's 0117 would drop x) */
        mode_t old = umask(0027);
        int r = errno == ENOENT ? g_mkdir_with_parents(dir, 0750) : -1;

        umask(old);
        if (r < 0 || lstat(dir, &st) < 0) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                        "creating %s: %s", dir, g_strerror(errno));
            return false;
        }
    }
    if (!S_ISDIR(st.st_mode)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY,
                    "%s is not a directory (or is a symlink)", dir);
        return false;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "%s belongs to uid %lu: refusing to put the socket there",
                    dir, (unsigned long)st.st_uid);
        return false;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "%s is writable by group or others: refusing to put the"
                    " socket there", dir);
        return false;
    }
    return true;
}

int make_listener(const char *path, GError **error)
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
    if (!check_dir(dir, error)) {
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
        if (probe >= 0 &&
            connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
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
    /* The socket is created 0660 by bind itself: no chmod by path. */
    old = umask(0117);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;

        umask(old);
        close(fd);
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                    "bind %s: %s", path, g_strerror(e));
        return -1;
    }
    umask(old);
    if (listen(fd, 128) < 0) {
        int e = errno;

        close(fd);
        unlink(path);
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                    "listen %s: %s", path, g_strerror(e));
        return -1;
    }
    return fd;
}
