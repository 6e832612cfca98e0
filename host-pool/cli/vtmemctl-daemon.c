/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl's requests to vtmemd: one blocking connection per command
 * (docs/vtmemd.md, "Control"). Kept in one function so that it can move
 * to the shared line-connection module.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vtmem-pool-util.h"
#include "vtmemctl.h"

/* A STATUS reply has a line per VM; far more is a broken daemon. */
#define VTMEMCTL_MAX_REPLY_LINES 100000
/* Each send and receive may take this long. */
#define VTMEMCTL_DAEMON_TIMEOUT_S 5

/* What one reply line means: 0 (more to come), 1 (done), or an exit code. */
static int reply_line(const char *line, GPtrArray *lines, char **err)
{
    if (strcmp(line, VTMEM_POOL_MSG_OK) == 0 ||
        strcmp(line, VTMEM_POOL_MSG_END) == 0) {
        return 1;
    }
    if (g_str_has_prefix(line, VTMEM_POOL_MSG_ERR " ") ||
        g_str_has_prefix(line, VTMEM_POOL_MSG_ERROR " ")) {
        /* the line reader let only printable ASCII through */
        *err = g_strdup_printf("vtmemd refused: %s", strchr(line, ' ') + 1);
        return VTMEMCTL_EXIT_REFUSED;
    }
    if (lines->len >= VTMEMCTL_MAX_REPLY_LINES) {
        *err = g_strdup("bad reply from vtmemd: too many lines");
        return VTMEMCTL_EXIT_DAEMON;
    }
    g_ptr_array_add(lines, g_strdup(line));
    return 0;
}

int vtmemctl_daemon_request(const Vtmemctl *ctl, const char *cmd,
                            GPtrArray *lines, char **err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = VTMEMCTL_DAEMON_TIMEOUT_S };
    VtmemLineReader rd = { .len = 0 };
    char line[VTMEM_POOL_MAX_LINE];
    g_autofree char *msg = g_strdup_printf("%s\n", cmd);
    int rc = 0;
    int s;

    if (strlen(ctl->socket_path) >= sizeof(sa.sun_path)) {
        *err = g_strdup("socket path too long");
        return VTMEMCTL_EXIT_DAEMON;
    }
    g_strlcpy(sa.sun_path, ctl->socket_path, sizeof(sa.sun_path));
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        *err = g_strdup_printf("vtmemd is not running: "
                               "cannot connect to %s: %s",
                               ctl->socket_path, g_strerror(errno));
        if (s >= 0) {
            close(s);
        }
        return VTMEMCTL_EXIT_DAEMON;
    }
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (send(s, msg, strlen(msg), MSG_NOSIGNAL) != (ssize_t)strlen(msg)) {
        *err = g_strdup_printf("writing to vtmemd: %s", g_strerror(errno));
        close(s);
        return VTMEMCTL_EXIT_DAEMON;
    }
    while (!rc) {
        const char *why = NULL;
        VtmemLineResult r = vtmem_line_reader_next(&rd, line, &why);
        ssize_t n;

        if (r == VTMEM_LINE_ERROR) {
            *err = g_strdup_printf("bad reply from vtmemd: %s", why);
            rc = VTMEMCTL_EXIT_DAEMON;
        } else if (r == VTMEM_LINE_OK) {
            rc = reply_line(line, lines, err);
        } else {
            n = vtmem_line_reader_fill(&rd, s);
            if (n <= 0) {
                *err = g_strdup_printf("vtmemd closed the connection%s%s",
                                       n < 0 ? ": " : "",
                                       n < 0 ? g_strerror(errno) : "");
                rc = VTMEMCTL_EXIT_DAEMON;
            }
        }
    }
    close(s);
    return rc == 1 ? 0 : rc;
}

int vtmemctl_daemon_command(const Vtmemctl *ctl, const char *cmd)
{
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *err = NULL;
    int rc = vtmemctl_daemon_request(ctl, cmd, lines, &err);

    if (rc) {
        vtmemctl_fail(rc, "%s", err);
    }
    return rc;
}
