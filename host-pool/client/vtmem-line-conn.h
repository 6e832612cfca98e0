/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One line connection of the pool protocol (vtmem-pool-proto.h framing),
 * shared by vtmemd, the client library and vtmemctl:
 *  - VtmemLineConn: non-blocking, driven by a GMainContext: reads lines
 *    into a callback, queues output (bounded) and flushes it when the
 *    socket takes it;
 *  - vtmem_line_request(): blocking, one request and its reply lines.
 * GLib only (compiled into QEMU with the client).
 */
#ifndef VTMEM_LINE_CONN_H
#define VTMEM_LINE_CONN_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>

#include <glib.h>

#include "vtmem-pool-util.h"

typedef struct VtmemLineConn VtmemLineConn;

typedef struct VtmemLineConnOps {
    /* A complete line (NUL-terminated, without '\n'). */
    void (*line)(void *opaque, const char *line);
    /*
     * The connection ended: end of file, a read/write error, or more than
     * max_out bytes queued; or the peer broke the framing (then
     * `protocol` is true, why is the reader's reason, and a last line may
     * still be sent). Called once; no line follows. The owner closes.
     */
    void (*closed)(void *opaque, const char *why, bool protocol);
} VtmemLineConnOps;

/*
 * Watch fd (non-blocking; the connection owns it and closes it) in ctx
 * (NULL: the default context). fd may be -1: nothing is read or written,
 * output stays queued (fuzzers feed input with vtmem_line_conn_feed).
 * Callbacks may call vtmem_line_conn_close()/_send(), never _free().
 */
VtmemLineConn *vtmem_line_conn_new(int fd, GMainContext *ctx, size_t max_out,
                                   const VtmemLineConnOps *ops, void *opaque);

/*
 * Queue one line ('\n' appended) and try to send it. false if the
 * connection is closed (or closes now: the output limit).
 */
bool vtmem_line_conn_send(VtmemLineConn *lc, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);
bool vtmem_line_conn_sendv(VtmemLineConn *lc, const char *fmt, va_list ap)
    G_GNUC_PRINTF(2, 0);

/* Bytes from the peer, as a read of the fd would give them. */
void vtmem_line_conn_feed(VtmemLineConn *lc, const char *data, size_t len);

/*
 * Stop all I/O and callbacks and close the fd; queued output is dropped.
 * Safe inside a callback and more than once.
 */
void vtmem_line_conn_close(VtmemLineConn *lc);

bool vtmem_line_conn_is_open(const VtmemLineConn *lc);
/* Bytes received but not yet a complete line. */
size_t vtmem_line_conn_partial(const VtmemLineConn *lc);
/* Queued output (the fuzzers drop it). */
GString *vtmem_line_conn_output(VtmemLineConn *lc);

/* Close and free; not inside one of its own callbacks. NULL is fine. */
void vtmem_line_conn_free(VtmemLineConn *lc);

/* Errors of vtmem_line_request(). */
#define VTMEM_LINE_REQUEST_ERROR (vtmem_line_request_error_quark())
GQuark vtmem_line_request_error_quark(void);
typedef enum {
    VTMEM_LINE_REQUEST_ERROR_CONNECT,   /* no daemon there (errno told) */
    VTMEM_LINE_REQUEST_ERROR_TIMEOUT,   /* a step took longer than timeout_ms */
    VTMEM_LINE_REQUEST_ERROR_CLOSED,    /* end of file before the last line */
    VTMEM_LINE_REQUEST_ERROR_PROTOCOL,  /* a reply line breaks the framing */
    VTMEM_LINE_REQUEST_ERROR_IO,        /* another socket error */
} VtmemLineRequestError;

/*
 * Blocking: connect to the unix socket path, send request (one line,
 * without '\n'), and read reply lines until one for which is_last
 * returns true, or end of file; timeout_ms bounds every step. Returns
 * the lines (NULL-terminated, without '\n'; g_strfreev) or NULL with
 * *error (VTMEM_LINE_REQUEST_ERROR). Without is_last, reads exactly one line.
 */
char **vtmem_line_request(const char *path, const char *request,
                          bool (*is_last)(const char *line), int timeout_ms,
                          GError **error);

#endif /* VTMEM_LINE_CONN_H */
