/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness: vtmemd's line parser and state machine, fed as
 * peers would feed it, without sockets. The input is a script of
 * records; each starts with one op byte:
 *   op & 7 = 0..3  bytes (up to and including the next '\n') from
 *                  connection (op >> 3) & 7
 *   4              that connection hangs up (end of file)
 *   5              the main loop runs its ready sources (reap, rebalance)
 *   6              a rebalancing pass now
 *   7              the processes of that connection exit
 * A connection is made at its first use: bit 6 of its first op byte
 * makes it untrusted (uid 65534: its UUID is checked against this
 * process's command line), bit 7 makes its process one that has exited.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "fuzz.h"
#include "vtmemd.h"

#define N_CONNS 8
#define DEAD_PID 0x3ffffff0     /* above pid_max: no such process */

static GLogWriterOutput discard(GLogLevelFlags level, const GLogField *f,
                                gsize n, gpointer data)
{
    (void)level;
    (void)f;
    (void)n;
    (void)data;
    return G_LOG_WRITER_HANDLED;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_log_set_writer_func(discard, NULL, NULL);
    return 0;
}

static bool still_listed(Daemon *d, Conn *c)
{
    return g_list_find(d->conns, c) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Daemon d = { 0 };
    Conn *conns[N_CONNS] = { NULL };
    size_t i = 0;

    daemon_init(&d, 1ULL << 30, 0);
    while (i < size) {
        uint8_t op = data[i++];
        unsigned k = (op >> 3) & 7;
        Conn *c = conns[k];

        if (c && !still_listed(&d, c)) {
            c = conns[k] = NULL;    /* reaped */
        }
        if (!c && (op & 7) <= 4) {
            bool untrusted = op & 0x40;

            c = conns[k] = conn_add(&d, -1, untrusted ? 65534 : geteuid(),
                                    untrusted ? 65534 : getegid(),
                                    op & 0x80 ? DEAD_PID : getpid(), -1);
        }
        switch (op & 7) {
        case 0: case 1: case 2: case 3: {
            const uint8_t *nl = memchr(data + i, '\n', size - i);
            size_t len = nl ? (size_t)(nl - (data + i)) + 1 : size - i;

            conn_input(c, (const char *)data + i, len);
            i += len;
            if (c->lc) {
                g_string_truncate(vtmem_line_conn_output(c->lc), 0);
            }
            break;
        }
        case 4:
            conn_doom(c, c->lc && vtmem_line_conn_partial(c->lc)
                         ? "end of file inside a line" : "end of file");
            break;
        case 5:
            for (int n = 0; n < 4; n++) {
                g_main_context_iteration(NULL, FALSE);
            }
            break;
        case 6:
            rebalance(&d);
            break;
        case 7:
            if (c && c->kind == CONN_GHOST) {
                conn_doom(c, "process exited");
            }
            break;
        }
    }
    daemon_fini(&d);
    return 0;
}
