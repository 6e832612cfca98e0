/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the pool's allocation function (weighted max-min, and
 * lending by demand) and of the lease plan.
 */
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vtmem-policy.h"

#define NONE UINT64_MAX

static uint64_t want(const VtmemShare *s)
{
    return s->demand < s->cap ? s->demand : s->cap;
}

static uint64_t wt(const VtmemShare *s)
{
    return s->weight ? s->weight : 1;
}

/* The properties every allocation must have. */
static void check_properties(const VtmemShare *v, size_t n, uint64_t total)
{
    uint64_t sum = 0, wsum = 0;
    bool fits;

    for (size_t i = 0; i < n; i++) {
        g_assert_cmpuint(v[i].alloc, <=, want(&v[i]));
        sum += v[i].alloc;
        wsum = wsum + want(&v[i]) < wsum ? UINT64_MAX : wsum + want(&v[i]);
    }
    g_assert_cmpuint(sum, <=, total);
    fits = wsum < UINT64_MAX && wsum <= total;
    if (fits) {
        for (size_t i = 0; i < n; i++) {
            g_assert_cmpuint(v[i].alloc, ==, want(&v[i]));
        }
        return;
    }
    /* work-conserving */
    g_assert_cmpuint(sum, ==, total);
    /*
     * max-min fair: an unsatisfied VM i is not worse off, per weight, than
     * any other VM j (up to one unit of rounding).
     */
    for (size_t i = 0; i < n; i++) {
        if (v[i].alloc >= want(&v[i])) {
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            /*
             * (alloc_j - 1) / w_j <= (alloc_i + 1) / w_i: each side may
             * be off by one unit of rounding.
             */
            uint64_t aj = v[j].alloc ? v[j].alloc - 1 : 0;
            __extension__ unsigned __int128 lhs =
                (unsigned __int128)aj * wt(&v[i]);
            __extension__ unsigned __int128 rhs =
                (unsigned __int128)(v[i].alloc + 1) * wt(&v[j]);

            if (lhs > rhs) {
                g_error("unfair: vm %zu (alloc %" G_GUINT64_FORMAT
                        ", weight %" G_GUINT64_FORMAT ") vs vm %zu"
                        " (alloc %" G_GUINT64_FORMAT
                        ", weight %" G_GUINT64_FORMAT ")",
                        i, v[i].alloc, wt(&v[i]), j, v[j].alloc, wt(&v[j]));
            }
        }
    }
}

static void test_fits(void)
{
    VtmemShare v[] = {
        { .demand = 10, .cap = NONE, .weight = 100 },
        { .demand = 20, .cap = NONE, .weight = 1 },
    };

    vtmem_policy_allocate(v, 2, 100);
    g_assert_cmpuint(v[0].alloc, ==, 10);
    g_assert_cmpuint(v[1].alloc, ==, 20);
}

static void test_equal_weights(void)
{
    VtmemShare v[] = {
        { .demand = 100, .cap = NONE, .weight = 100 },
        { .demand = 100, .cap = NONE, .weight = 100 },
    };

    vtmem_policy_allocate(v, 2, 16);
    g_assert_cmpuint(v[0].alloc, ==, 8);
    g_assert_cmpuint(v[1].alloc, ==, 8);
}

static void test_weights(void)
{
    VtmemShare v[] = {
        { .demand = 1000, .cap = NONE, .weight = 300 },
        { .demand = 1000, .cap = NONE, .weight = 100 },
    };

    vtmem_policy_allocate(v, 2, 100);
    g_assert_cmpuint(v[0].alloc, ==, 75);
    g_assert_cmpuint(v[1].alloc, ==, 25);
    check_properties(v, 2, 100);
}

static void test_redistribution(void)
{
    /* A wants less than its third: keeps it; B and C split the rest 1:2. */
    VtmemShare v[] = {
        { .demand = 10, .cap = NONE, .weight = 100 },
        { .demand = 1000, .cap = NONE, .weight = 100 },
        { .demand = 1000, .cap = NONE, .weight = 200 },
    };

    vtmem_policy_allocate(v, 3, 100);
    g_assert_cmpuint(v[0].alloc, ==, 10);
    g_assert_cmpuint(v[1].alloc, ==, 30);
    g_assert_cmpuint(v[2].alloc, ==, 60);
    check_properties(v, 3, 100);
}

static void test_caps(void)
{
    /* B's cap is below its share: the rest goes to A. */
    VtmemShare v[] = {
        { .demand = 1000, .cap = NONE, .weight = 100 },
        { .demand = 1000, .cap = 5, .weight = 100 },
    };

    vtmem_policy_allocate(v, 2, 100);
    g_assert_cmpuint(v[0].alloc, ==, 95);
    g_assert_cmpuint(v[1].alloc, ==, 5);
    check_properties(v, 2, 100);
}

static void test_cascade(void)
{
    /* Satisfying the small one raises the level so the middle one fits. */
    VtmemShare v[] = {
        { .demand = 10, .cap = NONE, .weight = 1 },
        { .demand = 40, .cap = NONE, .weight = 1 },
        { .demand = 1000, .cap = NONE, .weight = 1 },
    };

    vtmem_policy_allocate(v, 3, 100);
    g_assert_cmpuint(v[0].alloc, ==, 10);
    g_assert_cmpuint(v[1].alloc, ==, 40);
    g_assert_cmpuint(v[2].alloc, ==, 50);
}

static void test_rounding(void)
{
    VtmemShare v[] = {
        { .demand = 100, .cap = NONE, .weight = 1 },
        { .demand = 100, .cap = NONE, .weight = 1 },
        { .demand = 100, .cap = NONE, .weight = 1 },
    };

    vtmem_policy_allocate(v, 3, 10);
    g_assert_cmpuint(v[0].alloc + v[1].alloc + v[2].alloc, ==, 10);
    g_assert_cmpuint(v[0].alloc, ==, 4);   /* ties: lowest index first */
    g_assert_cmpuint(v[1].alloc, ==, 3);
    g_assert_cmpuint(v[2].alloc, ==, 3);
    check_properties(v, 3, 10);
}

static void test_edge(void)
{
    VtmemShare v[] = {
        { .demand = NONE, .cap = NONE, .weight = 0 },
        { .demand = NONE, .cap = NONE, .weight = 10000 },
        { .demand = 0, .cap = NONE, .weight = 5 },
    };

    vtmem_policy_allocate(NULL, 0, 100);
    vtmem_policy_allocate(v, 3, 0);
    g_assert_cmpuint(v[0].alloc + v[1].alloc + v[2].alloc, ==, 0);
    vtmem_policy_allocate(v, 3, NONE);   /* sums overflow */
    check_properties(v, 3, NONE);
    g_assert_cmpuint(v[2].alloc, ==, 0);
    vtmem_policy_allocate(v, 3, 1ULL << 40);
    check_properties(v, 3, 1ULL << 40);
}

/* Global limit changes at random; every step keeps every property. */
static void test_random(void)
{
    GRand *r = g_rand_new_with_seed(1234);

    for (int round = 0; round < 3000; round++) {
        size_t n = (size_t)g_rand_int_range(r, 1, 12);
        VtmemShare v[12];
        uint64_t total = (uint64_t)g_rand_int_range(r, 0, 2000);

        for (size_t i = 0; i < n; i++) {
            v[i].demand = (uint64_t)g_rand_int_range(r, 0, 800);
            v[i].cap = g_rand_boolean(r) ?
                       NONE : (uint64_t)g_rand_int_range(r, 0, 600);
            v[i].weight = (uint32_t)g_rand_int_range(r, 1, 10001);
            v[i].pressed = false;
        }
        for (int step = 0; step < 5; step++) {
            vtmem_policy_allocate(v, n, total);
            check_properties(v, n, total);
            total = (uint64_t)g_rand_int_range(r, 0, 2000);
            v[g_rand_int_range(r, 0, (gint32)n)].demand =
                (uint64_t)g_rand_int_range(r, 0, 800);

        }
    }
    g_rand_free(r);
}


/* ---- demand: pressed VMs borrow from idle ones ---- */

/* Two VMs of one weight both want everything: the pressed one gets more. */
static void test_pressed(void)
{
    VtmemShare v[] = {
        { .demand = 100, .cap = NONE, .weight = 100, .pressed = true },
        { .demand = 100, .cap = NONE, .weight = 100 },
    };

    vtmem_policy_allocate(v, 2, 100);
    /* the idle one keeps KEEP_PCT of its half */
    g_assert_cmpuint(v[1].alloc, ==, 50 * VTMEM_POLICY_IDLE_KEEP_PCT / 100);
    g_assert_cmpuint(v[0].alloc, ==, 100 - v[1].alloc);
    g_assert_cmpint(v[0].reason, ==, VTMEM_SHARE_PRESSED);
    g_assert_cmpint(v[1].reason, ==, VTMEM_SHARE_LENT);
    g_assert_cmpstr(vtmem_share_reason_name(v[1].reason), ==, "lent");

    /* the idle one is pressed too: it takes its share back */
    v[1].pressed = true;
    vtmem_policy_allocate(v, 2, 100);
    g_assert_cmpuint(v[0].alloc, ==, 50);
    g_assert_cmpuint(v[1].alloc, ==, 50);
    g_assert_cmpint(v[1].reason, ==, VTMEM_SHARE_FAIR);

    /* the pressed one's per-VM limit holds; the idle one gets the rest */
    v[1].pressed = false;
    v[0].cap = 30;
    vtmem_policy_allocate(v, 2, 100);
    g_assert_cmpuint(v[0].alloc, ==, 30);
    g_assert_cmpint(v[0].reason, ==, VTMEM_SHARE_CAP);
    g_assert_cmpuint(v[1].alloc, ==, 70);

    /* an idle VM wanting less than its floor keeps all it wants */
    v[0].cap = NONE;
    v[1].demand = 10;
    vtmem_policy_allocate(v, 2, 100);
    g_assert_cmpuint(v[1].alloc, ==, 10);
    g_assert_cmpint(v[1].reason, ==, VTMEM_SHARE_WANT);
    g_assert_cmpuint(v[0].alloc, ==, 90);

    /* weights still count: a heavy idle VM keeps more */
    v[1].demand = 100;
    v[1].weight = 300;
    vtmem_policy_allocate(v, 2, 100);
    g_assert_cmpuint(v[1].alloc, ==, 75 * VTMEM_POLICY_IDLE_KEEP_PCT / 100);
}

/*
 * Random VMs, some pressed: the invariants hold at every step, the
 * result is the plain one when nobody (or everybody) is pressed, and the
 * same input always gives the same allocation.
 */
static void test_pressed_random(void)
{
    GRand *r = g_rand_new_with_seed(777);

    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)g_rand_int_range(r, 1, 10);
        VtmemShare v[10], again[10], plain[10];
        uint64_t total = (uint64_t)g_rand_int_range(r, 0, 3000);
        uint64_t sum = 0, wsum = 0;
        size_t n_pressed = 0;

        for (size_t i = 0; i < n; i++) {
            v[i] = (VtmemShare) {
                .demand = (uint64_t)g_rand_int_range(r, 0, 1000),
                .cap = g_rand_boolean(r) ?
                       NONE : (uint64_t)g_rand_int_range(r, 0, 800),
                /* few distinct weights: pairs of one weight are common */
                .weight = (uint32_t)g_rand_int_range(r, 1, 4) * 100,
                .pressed = g_rand_int_range(r, 0, 3) == 0,
            };
            n_pressed += v[i].pressed;
            wsum += v[i].weight;
        }
        vtmem_policy_allocate(v, n, total);
        memcpy(again, v, sizeof(v));
        vtmem_policy_allocate(again, n, total);
        memcpy(plain, v, sizeof(v));
        vtmem_policy_allocate_fair(plain, n, total);
        for (size_t i = 0; i < n; i++) {
            /* no oscillation: a constant input gives a constant output */
            g_assert_cmpuint(again[i].alloc, ==, v[i].alloc);
            g_assert_cmpint(again[i].reason, ==, v[i].reason);
            /* per-VM limits and demands hold */
            g_assert_cmpuint(v[i].alloc, <=, want(&v[i]));
            sum += v[i].alloc;
        }
        /* never more than the pool */
        g_assert_cmpuint(sum, <=, total);
        if (n_pressed == 0 || n_pressed == n) {
            for (size_t i = 0; i < n; i++) {
                g_assert_cmpuint(v[i].alloc, ==, plain[i].alloc);
            }
            check_properties(v, n, total);
            continue;
        }
        /* work-conserving: the pool is used up or everyone is satisfied */
        if (sum < total) {
            for (size_t i = 0; i < n; i++) {
                g_assert_cmpuint(v[i].alloc, ==, want(&v[i]));
            }
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t floor_i = total * v[i].weight *
                               VTMEM_POLICY_IDLE_KEEP_PCT / (wsum * 100);

            if (floor_i > want(&v[i])) {
                floor_i = want(&v[i]);
            }
            /* an idle VM keeps its floor */
            if (!v[i].pressed) {
                g_assert_cmpuint(v[i].alloc, >=, floor_i);
                continue;
            }
            /*
             * a pressed VM that wants more is not worse off than an idle
             * one of the same weight, and better off if that one wants
             * more too (up to a unit of rounding)
             */
            if (v[i].alloc >= want(&v[i])) {
                continue;
            }
            for (size_t j = 0; j < n; j++) {
                if (v[j].pressed || v[j].weight != v[i].weight) {
                    continue;
                }
                g_assert_cmpuint(v[i].alloc + 1, >=, v[j].alloc);
                if (v[j].alloc < want(&v[j]) && total >= 8 * n) {
                    g_assert_cmpuint(v[i].alloc, >, v[j].alloc);
                }
            }
        }
    }
    g_rand_free(r);
}

/* ---- lease plan ---- */

static uint64_t total_after(const VtmemLease *v, size_t n, uint64_t other)
{
    uint64_t sum = other;

    for (size_t i = 0; i < n; i++) {
        sum += vtmem_lease_charge(&v[i]);
    }
    return sum;
}

/* The properties of every plan, given the leases before it. */
static void check_plan(const VtmemLease *before, const VtmemLease *v,
                       size_t n, uint64_t pool, uint64_t other,
                       bool allow_raise)
{
    bool raised = false;
    uint64_t after = total_after(v, n, other);

    for (size_t i = 0; i < n; i++) {
        const VtmemLease *b = &before[i];

        g_assert_cmpuint(v[i].held, ==, b->held);
        g_assert_cmpuint(v[i].limit, ==, b->limit);
        if (b->has_pending) {
            /* a LIMIT in flight: left alone */
            g_assert_false(v[i].send);
            g_assert_cmpuint(v[i].pending, ==, b->pending);
            continue;
        }
        if (b->target < b->limit) {
            /* decreases are always sent, to the target */
            g_assert_true(v[i].send);
            g_assert_cmpuint(v[i].pending, ==, b->target);
            continue;
        }
        if (!v[i].send) {
            g_assert_false(v[i].has_pending);
            /* not raised: it was at its target, or nothing was left */
            g_assert_true(b->target == b->limit || !allow_raise ||
                          after >= pool);
            continue;
        }
        /* a raise: above the limit, never above the target */
        g_assert_true(allow_raise);
        g_assert_cmpuint(v[i].pending, >, b->limit);
        g_assert_cmpuint(v[i].pending, <=, b->target);
        if (v[i].pending < b->target) {
            g_assert_cmpuint(after, ==, pool);   /* stopped by the pool */
        }
        raised = true;
    }
    /* the invariant: a raise never overcommits the pool */
    if (raised) {
        g_assert_cmpuint(after, <=, pool);
    }
}

static void test_lease_random(void)
{
    GRand *r = g_rand_new_with_seed(4321);

    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)g_rand_int_range(r, 0, 12);
        VtmemLease v[12], before[12];
        uint64_t pool = (uint64_t)g_rand_int_range(r, 0, 4000);
        uint64_t other = (uint64_t)g_rand_int_range(r, 0, 600);
        bool allow = g_rand_int_range(r, 0, 4) != 0;

        for (size_t i = 0; i < n; i++) {
            v[i] = (VtmemLease) {
                .held = (uint64_t)g_rand_int_range(r, 0, 800),
                .limit = (uint64_t)g_rand_int_range(r, 0, 800),
                .has_pending = g_rand_int_range(r, 0, 4) == 0,
                .pending = (uint64_t)g_rand_int_range(r, 0, 800),
                .target = (uint64_t)g_rand_int_range(r, 0, 800),
                .send = g_rand_boolean(r),
            };
        }
        memcpy(before, v, sizeof(v));
        vtmem_lease_plan(v, n, pool, other, allow);
        check_plan(before, v, n, pool, other, allow);
    }
    g_rand_free(r);
}

/*
 * Two devices share 100: the lowered one frees budget only once it has
 * acknowledged, the other is raised exactly into what is free.
 */
static void test_lease_steps(void)
{
    VtmemLease v[2] = {
        { .held = 60, .limit = 60, .target = 50 },
        { .held = 0, .limit = 40, .target = 50 },
    };

    vtmem_lease_plan(v, 2, 100, 0, true);
    g_assert_true(v[0].send && v[0].pending == 50);
    g_assert_false(v[1].send);      /* 60 + 40 = 100: no headroom */
    /* device 0 acknowledges, holding 55 */
    v[0].has_pending = false;
    v[0].limit = 50;
    v[0].held = 55;
    vtmem_lease_plan(v, 2, 100, 0, true);
    g_assert_false(v[0].send);
    g_assert_true(v[1].send && v[1].pending == 45);
    /* nothing moves up while in grace (allow_raise false) */
    v[1].has_pending = false;
    v[1].limit = 45;
    v[0].held = 50;
    vtmem_lease_plan(v, 2, 100, 0, false);
    g_assert_false(v[0].send || v[1].send);
    /* ghosts (other) take from the headroom */
    vtmem_lease_plan(v, 2, 100, 3, true);
    g_assert_true(v[1].send && v[1].pending == 47);
}


/*
 * Allocation and plan in a loop over a constant input, the devices
 * acknowledging every LIMIT and shrinking to it: the leases settle on the
 * targets within a few passes and then nothing is sent any more (no
 * oscillation), and no pass overcommits the pool.
 */
static void test_lease_settles(void)
{
    GRand *r = g_rand_new_with_seed(99);

    for (int round = 0; round < 5000; round++) {
        size_t n = (size_t)g_rand_int_range(r, 1, 8);
        VtmemShare sh[8];
        VtmemLease ls[8];
        uint64_t pool = (uint64_t)g_rand_int_range(r, 0, 200);
        int quiet = 0, pass;

        for (size_t i = 0; i < n; i++) {
            sh[i] = (VtmemShare) {
                .demand = (uint64_t)g_rand_int_range(r, 0, 100),
                .cap = g_rand_boolean(r) ?
                       NONE : (uint64_t)g_rand_int_range(r, 0, 80),
                .weight = (uint32_t)g_rand_int_range(r, 1, 4),
                .pressed = g_rand_boolean(r),
            };
            ls[i] = (VtmemLease) {
                .held = (uint64_t)g_rand_int_range(r, 0, 100),
            };
            ls[i].limit = ls[i].held;
        }
        for (pass = 0; pass < 12 && quiet < 3; pass++) {
            bool sent = false, raised = false;

            vtmem_policy_allocate(sh, n, pool);
            for (size_t i = 0; i < n; i++) {
                ls[i].target = sh[i].alloc;
            }
            vtmem_lease_plan(ls, n, pool, 0, true);
            for (size_t i = 0; i < n; i++) {
                if (!ls[i].send) {
                    continue;
                }
                sent = true;
                raised = raised || ls[i].pending > ls[i].limit;
                /* acknowledged; the guest shrinks below a lowered limit */
                ls[i].has_pending = false;
                ls[i].limit = ls[i].pending;
                if (ls[i].held > ls[i].limit) {
                    ls[i].held = ls[i].limit;
                }
            }
            quiet = sent ? 0 : quiet + 1;
            /* a raise never overcommits */
            if (raised) {
                g_assert_cmpuint(total_after(ls, n, 0), <=, pool);
            }
        }
        g_assert_cmpint(quiet, ==, 3);
        for (size_t i = 0; i < n; i++) {
            g_assert_cmpuint(ls[i].limit, ==, sh[i].alloc);
        }
        g_assert_cmpuint(total_after(ls, n, 0), <=, pool);
    }
    g_rand_free(r);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/policy/fits", test_fits);
    g_test_add_func("/policy/equal-weights", test_equal_weights);
    g_test_add_func("/policy/weights", test_weights);
    g_test_add_func("/policy/redistribution", test_redistribution);
    g_test_add_func("/policy/caps", test_caps);
    g_test_add_func("/policy/cascade", test_cascade);
    g_test_add_func("/policy/rounding", test_rounding);
    g_test_add_func("/policy/edge", test_edge);
    g_test_add_func("/policy/random", test_random);
    g_test_add_func("/policy/pressed", test_pressed);
    g_test_add_func("/policy/pressed-random", test_pressed_random);
    g_test_add_func("/policy/lease-steps", test_lease_steps);
    g_test_add_func("/policy/lease-settles", test_lease_settles);
    g_test_add_func("/policy/lease-random", test_lease_random);
    return g_test_run();
}
