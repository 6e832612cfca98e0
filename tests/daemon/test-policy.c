/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests of the pool's allocation function (weighted max-min). */
#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

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
    /* max-min fair: an unsatisfied VM i is not worse off, per weight, than
     * any other VM j (up to one unit of rounding).
     */
    for (size_t i = 0; i < n; i++) {
        if (v[i].alloc >= want(&v[i])) {
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            /* (alloc_j - 1) / w_j <= (alloc_i + 1) / w_i: each side may
             * be off by one unit of rounding.
             */
            uint64_t aj = v[j].alloc ? v[j].alloc - 1 : 0;
            __extension__ unsigned __int128 lhs = (unsigned __int128)aj * wt(&v[i]);
            __extension__ unsigned __int128 rhs = (unsigned __int128)(v[i].alloc + 1) * wt(&v[j]);

            if (lhs > rhs) {
                g_error("unfair: vm %zu (alloc %" G_GUINT64_FORMAT ", weight %" G_GUINT64_FORMAT
                        ") vs vm %zu (alloc %" G_GUINT64_FORMAT ", weight %" G_GUINT64_FORMAT ")",
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
            v[i].cap = g_rand_boolean(r) ? NONE : (uint64_t)g_rand_int_range(r, 0, 600);
            v[i].weight = (uint32_t)g_rand_int_range(r, 1, 10001);
        }
        for (int step = 0; step < 5; step++) {
            vtmem_policy_allocate(v, n, total);
            check_properties(v, n, total);
            total = (uint64_t)g_rand_int_range(r, 0, 2000);
            v[g_rand_int_range(r, 0, (gint32)n)].demand = (uint64_t)g_rand_int_range(r, 0, 800);
        }
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
    return g_test_run();
}
