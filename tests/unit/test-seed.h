/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The random seed of a randomized unit test: VTMEM_TEST_SEED, else a fresh
 * one, logged so that a failing run can be repeated.
 */
#ifndef VTMEM_TEST_SEED_H
#define VTMEM_TEST_SEED_H

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

#endif
