/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vtmem-line-conn.h"

#include <errno.h>
#include <sys/time.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

struct VtmemLineConn {
    int fd;
    GMainContext *ctx;
    size_t max_out;
    VtmemLineConnOps ops;
    void *opaque;
    GSource *in_src, *out_src;
    VtmemLineReader rd;
    GString *out;
    bool open;          /* I/O and callbacks allowed */
    bool reading;       /* lines are read (not after a framing error) */
    unsigned refs;      /* held while a callback runs */
};

static void lc_unref(VtmemLineConn *lc);

static void drop_source(GSource **s)
{
    if (*s) {
        g_source_destroy(*s);
        g_source_unref(*s);
        *s = NULL;
    }
}

/*
 * End it from inside: tell the owner once. After a framing error the
 * owner may still send (an error line) before it closes.
 */
static void lc_fail(VtmemLineConn *lc, const char *why, bool protocol)
{
    if (!lc->open || !lc->reading) {
        return;
    }
    lc->reading = false;
    drop_source(&lc->in_src);
    if (!protocol) {
        lc->open = false;
        drop_source(&lc->out_src);
    }
    lc->ops.closed(lc->opaque, why, protocol);
}

static gboolean lc_out_ready(gint fd, GIOCondition cond, gpointer data);

static void lc_flush(VtmemLineConn *lc)
{
    while (lc->open && lc->fd >= 0 && lc->out->len > 0) {
        ssize_t n = send(lc->fd, lc->out->str, lc->out->len,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            g_string_erase(lc->out, 0, n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!lc->out_src) {
                lc->out_src = g_unix_fd_source_new(lc->fd, G_IO_OUT);
                g_source_set_callback(lc->out_src, G_SOURCE_FUNC(lc_out_ready),
                                      lc, NULL);
                g_source_attach(lc->out_src, lc->ctx);
            }
            return;
        } else {
            lc_fail(lc, n < 0 ? g_strerror(errno) : "send failed", false);
            return;
        }
    }
    drop_source(&lc->out_src);
}

static gboolean lc_out_ready(gint fd, GIOCondition cond, gpointer data)
{
    VtmemLineConn *lc = data;

    (void)fd;
    (void)cond;
    lc->refs++;
    lc_flush(lc);
    lc_unref(lc);
    return G_SOURCE_CONTINUE;   /* lc_flush destroyed it when done */
}

bool vtmem_line_conn_sendv(VtmemLineConn *lc, const char *fmt, va_list ap)
{
    if (!lc->open) {
        return false;
    }
    g_string_append_vprintf(lc->out, fmt, ap);
    g_string_append_c(lc->out, '\n');
    if (lc->out->len > lc->max_out) {
        if (lc->reading) {
            lc_fail(lc, "peer does not read its replies", false);
        } else {
            vtmem_line_conn_close(lc);
        }
        return false;
    }
    lc_flush(lc);
    return lc->open;
}

bool vtmem_line_conn_send(VtmemLineConn *lc, const char *fmt, ...)
{
    va_list ap;
    bool ok;

    va_start(ap, fmt);
    ok = vtmem_line_conn_sendv(lc, fmt, ap);
    va_end(ap);
    return ok;
}

/* Hand out the complete lines buffered. */
static void lc_lines(VtmemLineConn *lc)
{
    char line[VTMEM_POOL_MAX_LINE];
    const char *why = NULL;

    while (lc->reading) {
        VtmemLineResult r = vtmem_line_reader_next(&lc->rd, line, &why);

        if (r == VTMEM_LINE_NONE) {
            break;
        }
        if (r == VTMEM_LINE_ERROR) {
            lc_fail(lc, why, true);
            break;
        }
        lc->ops.line(lc->opaque, line);
    }
}

void vtmem_line_conn_feed(VtmemLineConn *lc, const char *data, size_t len)
{
    lc->refs++;
    while (len > 0 && lc->reading) {
        size_t room = sizeof(lc->rd.buf) - lc->rd.len;
        size_t n = len < room ? len : room;

        memcpy(lc->rd.buf + lc->rd.len, data, n);
        lc->rd.len += n;
        data += n;
        len -= n;
        lc_lines(lc);   /* a full buffer without a line fails it */
    }
    lc_unref(lc);
}

static gboolean lc_in_ready(gint fd, GIOCondition cond, gpointer data)
{
    VtmemLineConn *lc = data;
    ssize_t n;

    (void)cond;
    lc->refs++;
    n = vtmem_line_reader_fill(&lc->rd, fd);
    if (n == 0) {
        lc_fail(lc, lc->rd.len ? "end of file inside a line" : "end of file",
                false);
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        lc_fail(lc, g_strerror(errno), false);
    } else if (n > 0) {
        lc_lines(lc);
    }
    lc_unref(lc);
    /* a closed connection destroyed this source already */
    return G_SOURCE_CONTINUE;
}

VtmemLineConn *vtmem_line_conn_new(int fd, GMainContext *ctx, size_t max_out,
                                   const VtmemLineConnOps *ops, void *opaque)
{
    VtmemLineConn *lc = g_new0(VtmemLineConn, 1);

    lc->fd = fd;
    lc->ctx = g_main_context_ref(ctx ? ctx : g_main_context_default());
    lc->max_out = max_out;
    lc->ops = *ops;
    lc->opaque = opaque;
    lc->out = g_string_new(NULL);
    lc->open = true;
    lc->reading = true;
    lc->refs = 1;
    if (fd >= 0) {
        lc->in_src = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
        g_source_set_callback(lc->in_src, G_SOURCE_FUNC(lc_in_ready), lc,
                              NULL);
        g_source_attach(lc->in_src, lc->ctx);
    }
    return lc;
}

void vtmem_line_conn_close(VtmemLineConn *lc)
{
    lc->open = false;
    lc->reading = false;
    drop_source(&lc->in_src);
    drop_source(&lc->out_src);
    if (lc->fd >= 0) {
        close(lc->fd);
        lc->fd = -1;
    }
    lc->rd.len = 0;
    g_string_truncate(lc->out, 0);
}

bool vtmem_line_conn_is_open(const VtmemLineConn *lc)
{
    return lc->open;
}

size_t vtmem_line_conn_partial(const VtmemLineConn *lc)
{
    return lc->rd.len;
}

GString *vtmem_line_conn_output(VtmemLineConn *lc)
{
    return lc->out;
}

static void lc_unref(VtmemLineConn *lc)
{
    if (--lc->refs > 0) {
        return;
    }
    vtmem_line_conn_close(lc);
    g_string_free(lc->out, TRUE);
    g_main_context_unref(lc->ctx);
    g_free(lc);
}

void vtmem_line_conn_free(VtmemLineConn *lc)
{
    if (lc) {
        vtmem_line_conn_close(lc);
        lc_unref(lc);
    }
}

/* ---- blocking ---- */

GQuark vtmem_line_request_error_quark(void)
{
    return g_quark_from_static_string("vtmem-line-request-error-quark");
}

static void set_io_error(GError **error, const char *what, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINPROGRESS) {
        g_set_error(error, VTMEM_LINE_REQUEST_ERROR,
                    VTMEM_LINE_REQUEST_ERROR_TIMEOUT,
                    "%s: no answer in time", what);
    } else {
        g_set_error(error, VTMEM_LINE_REQUEST_ERROR,
                    VTMEM_LINE_REQUEST_ERROR_IO, "%s: %s",
                    what, g_strerror(err));
    }
}

/*
 * A blocking socket whose every step (a connect waiting for room in the
 * backlog, a send, a read) gives up after timeout_ms.
 */
static int request_connect(const char *path, int timeout_ms, GError **error)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = timeout_ms / 1000,
                          .tv_usec = (timeout_ms % 1000) * 1000 };
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        g_set_error(error, VTMEM_LINE_REQUEST_ERROR,
                    VTMEM_LINE_REQUEST_ERROR_CONNECT,
                    "socket path too long: %s", path);
        return -1;
    }
    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_io_error(error, "socket", errno);
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
        set_io_error(error, "setsockopt", errno);
        close(fd);
        return -1;
    }
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;

        if (e == EINTR) {
            continue;
        }
        if (e == EAGAIN || e == EINPROGRESS) {
            set_io_error(error, path, e);
        } else {
            g_set_error(error, VTMEM_LINE_REQUEST_ERROR,
                        VTMEM_LINE_REQUEST_ERROR_CONNECT,
                        "%s: %s", path, g_strerror(e));
        }
        close(fd);
        return -1;
    }
    return fd;
}

static bool request_write(int fd, const char *text, size_t len,
                          GError **error)
{
    while (len > 0) {
        ssize_t n = send(fd, text, len, MSG_NOSIGNAL);

        if (n > 0) {
            text += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            set_io_error(error, "send", n < 0 ? errno : EIO);
            return false;
        }
    }
    return true;
}

/* The reply lines up to the last one. */
static bool request_read(int fd, GPtrArray *lines,
                         bool (*is_last)(const char *line), GError **error)
{
    VtmemLineReader rd = { .len = 0 };
    char line[VTMEM_POOL_MAX_LINE];

    for (;;) {
        const char *why = NULL;
        VtmemLineResult r = vtmem_line_reader_next(&rd, line, &why);
        ssize_t n;

        if (r == VTMEM_LINE_OK) {
            g_ptr_array_add(lines, g_strdup(line));
            if (!is_last || is_last(line)) {
                return true;
            }
            continue;
        }
        if (r == VTMEM_LINE_ERROR) {
            g_set_error(error, VTMEM_LINE_REQUEST_ERROR,
                        VTMEM_LINE_REQUEST_ERROR_PROTOCOL,
                        "bad reply: %s", why);
            return false;
        }
        n = vtmem_line_reader_fill(&rd, fd);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            g_set_error(error, VTMEM_LINE_REQUEST_ERROR,
                        VTMEM_LINE_REQUEST_ERROR_CLOSED,
                        "connection closed before the reply ended");
            return false;
        }
        if (n < 0) {
            set_io_error(error, "read", errno);
            return false;
        }
    }
}

char **vtmem_line_request(const char *path, const char *request,
                          bool (*is_last)(const char *line), int timeout_ms,
                          GError **error)
{
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *text = g_strdup_printf("%s\n", request);
    int fd = request_connect(path, timeout_ms, error);
    bool ok;

    if (fd < 0) {
        return NULL;
    }
    ok = request_write(fd, text, strlen(text), error) &&
         request_read(fd, lines, is_last, error);
    close(fd);
    if (!ok) {
        return NULL;
    }
    g_ptr_array_set_free_func(lines, NULL);
    g_ptr_array_add(lines, NULL);
    return (char **)g_ptr_array_free(g_steal_pointer(&lines), FALSE);
}
