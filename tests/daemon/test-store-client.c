/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The client library driving real page stores, the way the QEMU device
 * will (docs/vtmemd.md, "Client library"): two simulated devices fill
 * their stores with incompressible pages against one vtmemd; at every
 * step the memory the stores really hold stays within the pool.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "vtmem-pool-client.h"
#include "vtmem-store.h"
#include "vtmemd-harness.h"

#define MiB (1ULL << 20)
#define POOL (24 * MiB)

typedef struct SimDev {
    VtmemStore *st;
    VtmemPoolClient *c;
    uint64_t next_slot;
    uint64_t refused;
    uint64_t baseline;  /* held by the empty store before any lease */
} SimDev;

static SimDev *sims[2];

/* The callbacks exactly as the device implements them. */
static uint64_t sim_set_limit(void *opaque, uint64_t limit)
{
    SimDev *s = opaque;

    vtmem_store_set_limit(s->st, limit);
    return vtmem_store_memory_held(s->st);
}

static uint64_t sim_get_held(void *opaque)
{
    SimDev *s = opaque;

    return vtmem_store_memory_held(s->st);
}

static const VtmemPoolClientOps sim_ops = {
    .set_limit = sim_set_limit,
    .get_held = sim_get_held,
};

/*
 * What the stores really hold never exceeds the pool, except by the
 * fixed overhead of a store that registered holding it already (the
 * daemon counts it and lowers the others; it cannot prevent it).
 */
static void check_pool(void)
{
    uint64_t sum = 0, base = 0;

    for (int i = 0; i < 2; i++) {
        if (sims[i]) {
            sum += vtmem_store_memory_held(sims[i]->st);
            base += sims[i]->baseline;
        }
    }
    if (sum > POOL + base) {
        g_error("stores hold %" G_GUINT64_FORMAT
                " > pool %llu + baselines %" G_GUINT64_FORMAT,
                sum, POOL, base);
    }
}

static void pump(int ms)
{
    gint64 end = g_get_monotonic_time() + ms * 1000;

    while (g_get_monotonic_time() < end) {
        if (!g_main_context_iteration(NULL, FALSE)) {
            g_usleep(500);
        }
        check_pool();
    }
}

/* One guest put, then the usage report the device makes after it. */
static bool sim_put(SimDev *s, GRand *r)
{
    uint32_t page[VTMEM_STORE_PAGE_SIZE / 4];
    vtmem_status st;

    for (size_t i = 0; i < G_N_ELEMENTS(page); i++) {
        page[i] = g_rand_int(r);
    }
    st = vtmem_store_put(s->st, s->next_slot, page);
    if (st == VTMEM_OK) {
        s->next_slot++;
    } else {
        g_assert_cmpint(st, ==, VTMEM_ERR_NOSPACE);
        s->refused++;
    }
    vtmem_pool_client_update(s->c, vtmem_store_memory_held(s->st),
                             VTMEM_POOL_WANT_AUTO);
    check_pool();
    return st == VTMEM_OK;
}

/* Put until the daemon stops giving more (refused for a while). */
static void sim_fill(SimDev *s, GRand *r)
{
    int misses = 0;

    while (misses < 40) {
        if (sim_put(s, r)) {
            misses = 0;
        } else {
            misses++;
            pump(5);
        }
    }
}

static void sim_open(SimDev *s, const char *sock, const char *name,
                     const char *uuid)
{
    g_autoptr(GError) err = NULL;

    memset(s, 0, sizeof(*s));
    s->st = vtmem_store_new(1 << 16, UINT64_MAX);
    g_assert_nonnull(s->st);
    s->baseline = vtmem_store_memory_held(s->st);
    s->c = vtmem_pool_client_new(sock, name, uuid, 1ULL << 30, &sim_ops, s,
                                 NULL, &err);
    g_assert_no_error(err);
    /* realize: apply the client's limit */
    vtmem_store_set_limit(s->st, vtmem_pool_client_get_limit(s->c));
}

static void sim_close(SimDev *s)
{
    vtmem_pool_client_free(s->c);
    vtmem_store_free(s->st);
}

static void test_two_stores(void)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-store-client-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "vtmemd.sock", NULL);
    g_autofree char *pool = g_strdup_printf("%llu", POOL);
    GRand *r = g_rand_new_with_seed(7);
    SimDev a, b;
    VtmemStoreStats sa, sb;
    const char *args[] = { "--pool-limit", pool, "--grace-ms=0", NULL };
    pid_t pid;
    int status;

    pid = vtmemd_spawn(sock, NULL, 0, args, 10000);

    sim_open(&a, sock, "vm-a", "11111111-2222-3333-4444-555555555555");
    sims[0] = &a;
    sim_fill(&a, r);
    vtmem_store_get_stats(a.st, &sa);
    g_test_message("A alone: %" G_GUINT64_FORMAT
                   " pages, held %" G_GUINT64_FORMAT
                   ", limit %" G_GUINT64_FORMAT,
                   sa.stored_pages, sa.memory_held, sa.limit);
    /* A grew into (nearly) the whole pool, granule by granule */
    g_assert_cmpuint(sa.memory_held, >, POOL - 2 * VTMEM_POOL_GRANULE);

    sim_open(&b, sock, "vm-b", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
    sims[1] = &b;
    pump(100);
    /* A was lowered, but holds its pages: B cannot have any yet */
    vtmem_store_get_stats(a.st, &sa);
    g_assert_cmpuint(sa.limit, <, sa.memory_held);
    g_assert_false(sim_put(&b, r));

    /* the guest of A frees half its slots: budget moves to B */
    {
        uint64_t dropped = 0;

        g_assert_cmpint(vtmem_store_invalidate_range(a.st, 0, a.next_slot / 2,
                                                     &dropped),
                        ==, VTMEM_OK);
        vtmem_pool_client_update(a.c, vtmem_store_memory_held(a.st),
                                 VTMEM_POOL_WANT_AUTO);

    }
    pump(100);
    sim_fill(&b, r);
    sim_fill(&a, r);
    sim_fill(&b, r);
    vtmem_store_get_stats(a.st, &sa);
    vtmem_store_get_stats(b.st, &sb);
    g_test_message("A: %" G_GUINT64_FORMAT " held, limit %" G_GUINT64_FORMAT
                   "; B: %" G_GUINT64_FORMAT " held, limit %" G_GUINT64_FORMAT,
                   sa.memory_held, sa.limit, sb.memory_held, sb.limit);
    g_assert_cmpuint(sb.stored_pages, >, 0);
    g_assert_cmpuint(sa.limit + sb.limit, <=, POOL);
    g_assert_cmpuint(sb.refusals, >, 0);

    /* A's VM shuts down: B can take everything */
    sims[0] = NULL;
    sim_close(&a);
    pump(100);
    sim_fill(&b, r);
    vtmem_store_get_stats(b.st, &sb);
    g_assert_cmpuint(sb.memory_held, >, POOL - 2 * VTMEM_POOL_GRANULE);
    sims[1] = NULL;
    sim_close(&b);

    status = vtmemd_stop(pid, SIGTERM);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_rmdir(dir);
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);
    g_test_add_func("/store-client/two-stores", test_two_stores);
    return g_test_run();
}
