/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of the automatic pool size (vtmem-autopool.c). */
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "vtmem-autopool.h"
#include "vtmem-policy.h"

#define MiB (1ULL << 20)
#define G   (4 * MiB)
#define NONE UINT64_MAX

static VtmemAutoPoolConfig config(void)
{
    return (VtmemAutoPoolConfig) {
        .ceiling = 1024 * MiB, .floor = 64 * MiB, .reserve = 256 * MiB,
        .granule = G, .shrink_at = 500, .grow_below = 100,
        .shrink_pct = 10, .grow_step = 64 * MiB, .grow_hold_ms = 10000,
        .min_interval_ms = 500,
    };
}

/* A host with this much available and no pressure, one decision per s. */
static VtmemMemReading calm(uint64_t now_ms, uint64_t avail)
{
    return (VtmemMemReading) {
        .now_ms = now_ms, .mem_available = avail,
        .cg_max = NONE, .cg_high = NONE,
    };
}

static VtmemAutoPoolDecision step(const VtmemAutoPoolConfig *cfg,
                                  VtmemAutoPoolState *st,
                                  const VtmemMemReading *r)
{
    VtmemAutoPoolState next;
    VtmemAutoPoolDecision d = vtmem_autopool_decide(cfg, st, r, &next);

    g_assert_cmpuint(d.pool, ==, next.pool);
    *st = next;
    return d;
}

static void test_grow(void)
{
    VtmemAutoPoolConfig cfg = config();
    VtmemAutoPoolState st = { .pool = 0 };
    VtmemAutoPoolDecision d;
    uint64_t t = 0;

    /* 512 MiB available, 256 reserved: grows to 256 in 64 MiB steps */
    for (int i = 0; i < 3; i++) {
        t += 1000;
        d = step(&cfg, &st, &(VtmemMemReading){ .now_ms = t,
                 .mem_available = 512 * MiB, .cg_max = NONE,
                 .cg_high = NONE });
        g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_GROW);
        /* from the floor */
        g_assert_cmpuint(d.pool, ==, 128 * MiB + 64 * MiB * (uint64_t)i);
    }
    t += 1000;
    d = step(&cfg, &st, &(VtmemMemReading){ .now_ms = t,
             .mem_available = 512 * MiB, .cg_max = NONE, .cg_high = NONE });
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_STEADY);
    g_assert_cmpuint(d.pool, ==, 256 * MiB);
}

/* The cgroup's limit, not the host, bounds the goal. */
static void test_cgroup_bound(void)
{
    VtmemAutoPoolConfig cfg = config();
    VtmemAutoPoolState st = { .pool = 1024 * MiB };
    VtmemMemReading r = {
        .now_ms = 1000, .mem_available = 16384 * MiB, .has_cgroup = true,
        .cg_current = 900 * MiB, .cg_max = 2048 * MiB, .cg_high = 1536 * MiB,
        .charged = 100 * MiB,
    };
    VtmemAutoPoolDecision d = step(&cfg, &st, &r);

    /* free = 1536 - 900 = 636; goal = 100 + 636 - 256 = 480 */
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_LOW_FREE);
    g_assert_cmpuint(d.goal, ==, 480 * MiB);
    g_assert_cmpuint(d.pool, ==, 480 * MiB);
}

/*
 * Pressure: shrinks each decision, holds in the band, grows only after
 * it fell below grow_below and the hold time passed.
 */
static void test_hysteresis(void)
{
    VtmemAutoPoolConfig cfg = config();
    VtmemAutoPoolState st = { .pool = 1024 * MiB };
    VtmemMemReading r = calm(1000, 8192 * MiB);
    VtmemAutoPoolDecision d;
    uint64_t stall = 0, pool;

    d = step(&cfg, &st, &r);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_STEADY);
    /* 20% of the time stalled */
    for (int i = 0; i < 3; i++) {
        r.now_ms += 1000;
        stall += 200000;
        r.some_total_us = stall;
        pool = st.pool;
        d = step(&cfg, &st, &r);
        g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_PRESSURE);
        g_assert_cmpuint(d.pressure, ==, 2000);
        g_assert_cmpuint(d.pool, ==, pool - (pool / 100 * 10) / G * G);
    }
    /* 3%: between the thresholds, nothing moves */
    for (int i = 0; i < 30; i++) {
        r.now_ms += 1000;
        stall += 30000;
        r.some_total_us = stall;
        pool = st.pool;
        d = step(&cfg, &st, &r);
        g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_PRESSURED);
        g_assert_cmpuint(d.pool, ==, pool);
    }
    /* calm: 10 s of settling after the last shrink, then growth */
    r.now_ms += 1000;
    r.some_total_us = stall;
    d = step(&cfg, &st, &r);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_GROW);
    pool = d.pool;
    /* a new burst, then calm: settling for grow_hold_ms */
    r.now_ms += 1000;
    stall += 500000;
    r.some_total_us = stall;
    d = step(&cfg, &st, &r);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_PRESSURE);
    for (int i = 0; i < 9; i++) {
        r.now_ms += 1000;
        d = step(&cfg, &st, &r);
        g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_SETTLING);
    }
    r.now_ms += 1000;
    d = step(&cfg, &st, &r);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_GROW);
    g_assert_cmpuint(d.pool, >, pool - 128 * MiB);
}

static void test_rate_limit(void)
{
    VtmemAutoPoolConfig cfg = config();
    VtmemAutoPoolState st = { .pool = 512 * MiB };
    VtmemMemReading r = calm(1000, 8192 * MiB);
    VtmemAutoPoolDecision d;

    step(&cfg, &st, &r);
    r.now_ms += 100;
    r.some_total_us = 100000;   /* 100% for 100 ms */
    d = step(&cfg, &st, &r);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_RATE_LIMIT);
    g_assert_cmpuint(d.pool, ==, 576 * MiB);
    /* the stall counts over the whole interval since the last decision */
    r.now_ms += 900;
    d = step(&cfg, &st, &r);
    g_assert_cmpuint(d.pressure, ==, 1000);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_PRESSURE);
}

static void test_floor_ceiling(void)
{
    VtmemAutoPoolConfig cfg = config();
    VtmemAutoPoolState st = { .pool = 4096 * MiB };  /* above the ceiling */
    VtmemMemReading r = calm(1000, 0);   /* nothing free */
    VtmemAutoPoolDecision d = step(&cfg, &st, &r);

    g_assert_cmpuint(d.pool, ==, 64 * MiB);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_LOW_FREE);
    r.now_ms += 1000;
    r.some_total_us = 1000000;
    d = step(&cfg, &st, &r);
    g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_AT_FLOOR);
    g_assert_cmpuint(d.pool, ==, 64 * MiB);
    /* a ceiling below the floor wins */
    cfg.ceiling = 10 * MiB;
    r.now_ms += 1000;
    d = step(&cfg, &st, &r);
    g_assert_cmpuint(d.pool, ==, 8 * MiB);
}

static uint64_t rnd_size(void)
{
    switch (g_test_rand_int_range(0, 4)) {
    case 0:
        return 0;
    case 1:
        return (uint64_t)g_test_rand_int_range(0, 64) * MiB;
    case 2:
        return (uint64_t)g_test_rand_int_range(0, 1 << 20) * 4096;
    default:
        return (uint64_t)g_test_rand_int_range(0, 1 << 30) << 6;
    }
}

static VtmemMemReading rnd_reading(uint64_t now_ms, uint64_t *stall)
{
    VtmemMemReading r = {
        .now_ms = now_ms, .mem_available = rnd_size(),
        .has_cgroup = g_test_rand_bit(), .cg_current = rnd_size(),
        .cg_max = g_test_rand_bit() ? NONE : rnd_size(),
        .cg_high = g_test_rand_bit() ? NONE : rnd_size(),
        .some_avg10 = (uint32_t)g_test_rand_int_range(0, 10001),
        .charged = rnd_size(),
    };

    if (g_test_rand_bit()) {
        *stall += (uint64_t)g_test_rand_int_range(0, 1000000);
    }
    r.some_total_us = *stall;
    return r;
}

static VtmemAutoPoolConfig rnd_config(void)
{
    VtmemAutoPoolConfig cfg = config();

    cfg.ceiling = rnd_size();
    cfg.floor = rnd_size();
    cfg.reserve = rnd_size();
    cfg.shrink_pct = (uint32_t)g_test_rand_int_range(0, 101);
    cfg.grow_step = rnd_size();
    cfg.shrink_at = (uint32_t)g_test_rand_int_range(1, 10001);
    cfg.grow_below = (uint32_t)g_test_rand_int_range(0, (int)cfg.shrink_at);
    return cfg;
}

/*
 * Random inputs: the pool stays in [floor, ceiling] in granules, never
 * grows while pressure is not below grow_below or within the hold time,
 * never shrinks without pressure or a lower goal; a constant input then
 * reaches a fixed point within a bounded number of decisions and stays.
 */
static void test_random(void)
{
    for (int round = 0; round < 2000; round++) {
        VtmemAutoPoolConfig cfg = rnd_config();
        VtmemAutoPoolState st = { .pool = rnd_size() };
        uint64_t ceil_g = cfg.ceiling / G * G;
        uint64_t floor_g = MIN((cfg.floor + G - 1) / G * G, ceil_g);
        uint64_t t = 1000, stall = 0;
        VtmemMemReading r = { 0 };
        VtmemAutoPoolDecision d;
        int stable = 0;

        for (int i = 0; i < 20; i++) {
            VtmemAutoPoolState before = st;
            uint64_t pool = MIN(MAX(st.pool / G * G, floor_g), ceil_g);

            t += (uint64_t)g_test_rand_int_range(0, 3000);
            r = rnd_reading(t, &stall);
            d = step(&cfg, &st, &r);
            g_assert_cmpuint(d.pool, <=, ceil_g);
            g_assert_cmpuint(d.pool, >=, floor_g);
            g_assert_cmpuint(d.pool % G, ==, 0);
            if (d.pool > pool) {
                g_assert_cmpint(d.reason, ==, VTMEM_AUTOPOOL_GROW);
                g_assert_cmpuint(d.pressure, <, cfg.grow_below);
                g_assert_false(before.has_shrunk &&
                               t - before.last_shrink_ms < cfg.grow_hold_ms);
                g_assert_cmpuint(d.pool, <=, d.goal);
                g_assert_cmpuint(d.pool - pool, <=, MAX(cfg.grow_step, G));
            } else if (d.pool < pool) {
                g_assert_true(d.reason == VTMEM_AUTOPOOL_PRESSURE ||
                              d.reason == VTMEM_AUTOPOOL_LOW_FREE);
                g_assert_true(d.pressure >= cfg.shrink_at ||
                              d.pool == d.goal);
            }
        }
        /* the same reading over and over: converges, then stays */
        r.some_total_us = stall;
        /* growth is rate-limited: a step per decision, after the hold */
        uint64_t bound = ceil_g / MAX(cfg.grow_step / G * G, G) +
                         cfg.grow_hold_ms / 1000 + 40;

        for (uint64_t i = 0; i < bound && stable < 30; i++) {
            uint64_t pool = st.pool;

            r.now_ms += 1000;
            d = step(&cfg, &st, &r);
            stable = d.pool == pool ? stable + 1 : 0;
        }
        g_assert_cmpint(stable, >=, 30);
        for (int i = 0; i < 30; i++) {
            uint64_t pool = st.pool;

            r.now_ms += 1000;
            d = step(&cfg, &st, &r);
            g_assert_cmpuint(d.pool, ==, pool);
        }
    }
}

/*
 * The pool's decisions through the lease arithmetic: whatever the pool
 * does, the leases the daemon grants never sum above it once the devices
 * acknowledged the lowered limits (and raises never overshoot).
 */
static void test_leases_follow(void)
{
    for (int round = 0; round < 300; round++) {
        VtmemAutoPoolConfig cfg = rnd_config();
        VtmemAutoPoolState st = { .pool = cfg.ceiling };
        size_t n = (size_t)g_test_rand_int_range(1, 8);
        VtmemShare sh[8];
        VtmemLease ls[8] = { 0 };
        uint64_t t = 1000, stall = 0;

        cfg.ceiling = (uint64_t)g_test_rand_int_range(0, 512) * G;
        for (int i = 0; i < 40; i++) {
            VtmemMemReading r;
            VtmemAutoPoolDecision d;
            uint64_t sum = 0, charged = 0;

            t += 1000;
            r = rnd_reading(t, &stall);
            for (size_t j = 0; j < n; j++) {
                charged += vtmem_lease_charge(&ls[j]);
            }
            r.charged = charged;
            d = step(&cfg, &st, &r);
            for (size_t j = 0; j < n; j++) {
                sh[j] = (VtmemShare) {
                    .demand = (uint64_t)g_test_rand_int_range(0, 256),
                    .cap = NONE,
                    .weight = (uint32_t)g_test_rand_int_range(1, 5),
                };
            }
            vtmem_policy_allocate(sh, n, d.pool / G);
            for (size_t j = 0; j < n; j++) {
                ls[j].target = sh[j].alloc * G;
            }
            /* the devices shrink to what they were told and say so */
            vtmem_lease_plan(ls, n, d.pool, 0, false);
            for (size_t j = 0; j < n; j++) {
                if (ls[j].has_pending) {
                    ls[j].limit = ls[j].pending;
                    ls[j].has_pending = false;
                }
                ls[j].held = MIN(ls[j].held, ls[j].limit);
            }
            vtmem_lease_plan(ls, n, d.pool, 0, true);
            for (size_t j = 0; j < n; j++) {
                sum += vtmem_lease_charge(&ls[j]);
                if (ls[j].has_pending) {
                    ls[j].limit = ls[j].pending;
                    ls[j].has_pending = false;
                }
                /* and fill what they got */
                ls[j].held = ls[j].limit / 2 +
                    (uint64_t)g_test_rand_int_range(0, 2) * ls[j].limit / 2;
            }
            g_assert_cmpuint(sum, <=, d.pool);
        }
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/autopool/grow", test_grow);
    g_test_add_func("/autopool/cgroup-bound", test_cgroup_bound);
    g_test_add_func("/autopool/hysteresis", test_hysteresis);
    g_test_add_func("/autopool/rate-limit", test_rate_limit);
    g_test_add_func("/autopool/floor-ceiling", test_floor_ceiling);
    g_test_add_func("/autopool/random", test_random);
    g_test_add_func("/autopool/leases-follow", test_leases_follow);
    return g_test_run();
}
