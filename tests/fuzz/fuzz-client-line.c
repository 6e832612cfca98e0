/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness: what QEMU embeds. A pool client connects to a socket
 * this harness serves; the input is what "vtmemd" answers (any bytes),
 * read by the client through its real line reader and parser.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "fuzz.h"
#include "vtmem-pool-client.h"

static char *sock_path;
static int listen_fd = -1;

static uint64_t fuzz_set_limit(void *opaque, uint64_t limit)
{
    (void)opaque;
    return limit / 2;
}

static void fuzz_conn(void *opaque, bool up)
{
    (void)opaque;
    (void)up;
}

static const VtmemPoolClientOps ops = {
    .set_limit = fuzz_set_limit,
    .connection_changed = fuzz_conn,
};

static void cleanup(void)
{
    if (sock_path) {
        unlink(sock_path);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char *dir = g_dir_make_tmp("vtmem-fuzz-client-XXXXXX", NULL);

    (void)argc;
    (void)argv;
    g_log_set_writer_func(g_log_writer_default, NULL, NULL);
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
    sock_path = g_build_filename(dir, "sock", NULL);
    g_strlcpy(sa.sun_path, sock_path, sizeof(sa.sun_path));
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 ||
        bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(listen_fd, 16) < 0) {
        abort();
    }
    atexit(cleanup);
    g_free(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    GMainContext *ctx = g_main_context_new();
    VtmemPoolClient *c;
    int peer, i;

    c = vtmem_pool_client_new(sock_path, "fuzz",
                              "11111111-2222-3333-4444-555555555555",
                              64ULL << 20, &ops, NULL, ctx, NULL);
    peer = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (!c || peer < 0) {
        abort();
    }
    if (size > 0 && write(peer, data, size) != (ssize_t)size) {
        abort();
    }
    /* Some device activity between the daemon's lines. */
    vtmem_pool_client_update(c, size * 4096, VTMEM_POOL_WANT_AUTO);
    shutdown(peer, SHUT_WR);
    for (i = 0; i < 64 && g_main_context_iteration(ctx, FALSE); i++) {
        vtmem_pool_client_update(c, (uint64_t)i << 20, VTMEM_POOL_WANT_AUTO);
    }
    (void)vtmem_pool_client_get_limit(c);
    vtmem_pool_client_set_cap(c, 1ULL << 20);
    vtmem_pool_client_free(c);
    close(peer);
    g_main_context_unref(ctx);
    return 0;
}
