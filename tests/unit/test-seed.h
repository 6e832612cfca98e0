/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The random seed of a randomized unit test: VTMEM_TEST_SEED, else a fresh
 * one, logged so that a failing run can be repeated; and the mixing
 * function that turns a seed into page contents (unit tests and fuzzers).
 */
#ifndef VTMEM_TEST_SEED_H
#define VTMEM_TEST_SEED_H

#include <stdint.h>
#include <stdlib.h>
#include <glib.h>

static inline guint32 test_seed(void)
{
    const char *env = getenv("VTMEM_TEST_SEED");
    guint32 seed = env ? (guint32)g_ascii_strtoull(env, NULL, 0)
                       : g_random_int();

    g_test_message("seed %u (rerun with VTMEM_TEST_SEED=%u)", seed, seed);
    return seed;
}

/* splitmix64's finalizer: a well-spread 64-bit value from any input. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

#endif
