/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the vtmem page store and its zpool allocator.
 *
 * Randomised tests print their seed; rerun one with VTMEM_TEST_SEED=N.
 * VTMEM_TEST_SCALE (percent, default 100; 25 under valgrind) scales the
 * iteration counts, never the checks.
 */
#include <glib.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtmem-page.h"
#include "test-seed.h"
#include "vtmem-store.h"
#include "vtmem-store-internal.h"
#include "vtmem-zpool.h"

#define PAGE VTMEM_STORE_PAGE_SIZE
/*
 * The zpool's directory keeps its segments for reuse: 512 entries of 32
 * bytes each, from the heap; and its top level is charged a page per 512
 * segments.
 */
#define ZPOOL_DIR_SEGMENT vtmem_heap_cost(512 * 32)

#define MIB (UINT64_C(1) << 20)

static unsigned scale_pct = 100;
/* Under valgrind or ASan the process's own RSS says nothing of the store. */
static bool under_tool;

static unsigned scaled(unsigned n)
{
    unsigned v = (unsigned)((uint64_t)n * scale_pct / 100);
    return v ? v : 1;
}

/* ---- page generators: the page is a pure function of (kind, seed) ---- */

enum { KIND_ZERO, KIND_WORD, KIND_TEXT, KIND_RANDOM, KIND_PARTIAL, NR_KINDS };

static const char *const words[] = {
    "swap", "page", "slot", "guest", "host", "memory", "compressed", "the",
    "of", "virtio", "queue", "ring", "kernel", "struct", "int", "return",
};

static void make_page(unsigned kind, uint64_t seed, unsigned char *page)
{
    uint64_t r = mix64(seed + 1);

    switch (kind) {
    case KIND_ZERO:
        memset(page, 0, PAGE);
        break;
    case KIND_WORD:
        vtmem_page_fill(page, r | 1);
        break;
    case KIND_TEXT: {
        size_t pos = 0;
        while (pos < PAGE) {
            r = mix64(r);
            const char *w = words[r % G_N_ELEMENTS(words)];
            size_t n = MIN(strlen(w), PAGE - pos);
            memcpy(page + pos, w, n);
            pos += n;
            if (pos < PAGE) {
                page[pos++] = (r >> 8) & 1 ? ' ' : '\n';
            }
        }
        break;
    }
    case KIND_RANDOM:
    case KIND_PARTIAL: {
        /* partial: a random prefix of seed-chosen length, then zeros */
        size_t n = kind == KIND_RANDOM ? PAGE : (size_t)(r % PAGE);
        memset(page, 0, PAGE);
        for (size_t i = 0; i < n; i += 8) {
            r = mix64(r + i);
            memcpy(page + i, &r, MIN(8, n - i));
        }
        page[PAGE - 1] = 0x5a;  /* never same-filled */
        break;
    }
    }
}

static VtmemStoreStats stats_of(VtmemStore *s)
{
    VtmemStoreStats st;
    vtmem_store_get_stats(s, &st);
    return st;
}

static void assert_slot_is(VtmemStore *s, uint64_t slot, const void *want)
{
    unsigned char got[PAGE];
    g_assert_cmpint(vtmem_store_get(s, slot, got), ==, VTMEM_OK);
    g_assert_cmpmem(got, PAGE, want, PAGE);
}

/* ---- basic round trips ---- */

static void test_new_free(void)
{
    g_assert_null(vtmem_store_new(0, UINT64_MAX));
    g_assert_null(vtmem_store_new((UINT64_C(1) << 32) + 1, UINT64_MAX));
    VtmemStore *s = vtmem_store_new(UINT64_C(1) << 32, UINT64_MAX);
    g_assert_nonnull(s);
    g_assert_cmpuint(vtmem_store_nr_slots(s), ==, UINT64_C(1) << 32);
    unsigned char page[PAGE];
    make_page(KIND_TEXT, 1, page);
    g_assert_cmpint(vtmem_store_put(s, (UINT64_C(1) << 32) - 1, page), ==,
                    VTMEM_OK);
    assert_slot_is(s, (UINT64_C(1) << 32) - 1, page);
    vtmem_store_free(s);
    vtmem_store_free(NULL);

    s = vtmem_store_new(1, UINT64_MAX);
    g_assert_cmpuint(vtmem_store_nr_slots(s), ==, 1);
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, 0);
    g_assert_cmpuint(st.memory_held, >, 0);  /* fixed tables count too */
    g_assert_cmpuint(st.memory_held, ==, st.metadata_bytes);
    g_assert_cmpuint(st.limit, ==, UINT64_MAX);
    g_assert_cmpuint(vtmem_store_memory_held(s), ==, st.memory_held);
    vtmem_store_free(s);
}

static void test_same_filled(void)
{
    VtmemStore *s = vtmem_store_new(64, UINT64_MAX);
    unsigned char page[PAGE];
    const uint64_t vals[] = { 0, 1, UINT64_MAX, 0x0101010101010101,
                              0xdeadbeefcafef00d, 0x8000000000000000 };
    uint64_t held0 = vtmem_store_memory_held(s);

    for (unsigned i = 0; i < G_N_ELEMENTS(vals); i++) {
        vtmem_page_fill(page, vals[i]);
        uint64_t w = ~vals[i];
        g_assert_true(vtmem_page_same_filled(page, &w));
        g_assert_cmpuint(w, ==, vals[i]);
        g_assert_cmpint(vtmem_store_put(s, i, page), ==, VTMEM_OK);
    }
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, G_N_ELEMENTS(vals));
    g_assert_cmpuint(st.same_filled_pages, ==, G_N_ELEMENTS(vals));
    g_assert_cmpuint(st.compressed_bytes + st.raw_bytes, ==, 0);
    /*
     * No allocation but the one slot chunk (a page), its leaf (512 chunk
     * pointers) and the region table of the chunks' backing.
     */
    g_assert_cmpuint(vtmem_zpool_zspages(NULL), ==, 0);
    g_assert_cmpuint(st.memory_held - held0, <,
                     PAGE + vtmem_heap_cost(512 * 8) + 256);
    g_assert_cmpuint(st.memory_held, ==, st.metadata_bytes);
    for (unsigned i = 0; i < G_N_ELEMENTS(vals); i++) {
        vtmem_page_fill(page, vals[i]);
        assert_slot_is(s, i, page);
    }
    /* Almost same-filled pages are not. */
    uint64_t w;
    vtmem_page_fill(page, 0x1122334455667788);
    page[PAGE - 1] ^= 1;
    g_assert_false(vtmem_page_same_filled(page, &w));
    g_assert_cmpint(vtmem_store_put(s, 10, page), ==, VTMEM_OK);
    assert_slot_is(s, 10, page);
    vtmem_page_fill(page, 0x1122334455667788);
    page[2048] ^= 1;
    g_assert_false(vtmem_page_same_filled(page, &w));
    g_assert_cmpint(vtmem_store_put(s, 11, page), ==, VTMEM_OK);
    assert_slot_is(s, 11, page);
    st = stats_of(s);
    g_assert_cmpuint(st.same_filled_pages, ==, G_N_ELEMENTS(vals));
    g_assert_cmpuint(st.compressed_bytes, >, 0);
    vtmem_store_free(s);
}

static void test_kinds(void)
{
    VtmemStore *s = vtmem_store_new(1000, UINT64_MAX);
    unsigned char page[PAGE];

    for (unsigned i = 0; i < 500; i++) {
        make_page(i % NR_KINDS, i, page);
        g_assert_cmpint(vtmem_store_put(s, i * 2, page), ==, VTMEM_OK);
    }
    for (unsigned i = 0; i < 500; i++) {
        make_page(i % NR_KINDS, i, page);
        assert_slot_is(s, i * 2, page);
        g_assert_cmpint(vtmem_store_get(s, i * 2 + 1, page), ==,
                        VTMEM_ERR_NOENT);
    }
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, 500);
    g_assert_cmpuint(st.same_filled_pages, ==, 200);
    g_assert_cmpuint(st.raw_pages, >=, 100);          /* all random pages */
    g_assert_cmpuint(st.raw_bytes, ==, st.raw_pages * PAGE);
    g_assert_cmpuint(st.puts, ==, 500);
    g_assert_cmpuint(st.gets, ==, 500);
    g_assert_cmpuint(st.memory_held, >=, st.compressed_bytes + st.raw_bytes);
    vtmem_store_free(s);
}

/*
 * Compressed lengths across the whole range, around every class boundary
 * and around the raw threshold: random prefixes of every length.
 */
static void test_lengths(void)
{
    VtmemStore *s = vtmem_store_new(PAGE + 1, UINT64_MAX);
    unsigned char page[PAGE], packed[LZ4_COMPRESSBOUND(PAGE)];
    GHashTable *seen = g_hash_table_new(NULL, NULL);

    for (unsigned n = 0; n <= PAGE; n++) {
        memset(page, 0, PAGE);
        for (unsigned i = 0; i < n; i++) {
            page[i] = (unsigned char)mix64(n * 7919 + i);
        }
        page[PAGE - 1] = 0x77;
        int len = LZ4_compress_default((char *)page, (char *)packed, PAGE,
                                       sizeof(packed));
        g_hash_table_add(seen, GINT_TO_POINTER(len > PAGE * 3 / 4 ? PAGE
                                               : len));
        g_assert_cmpint(vtmem_store_put(s, n, page), ==, VTMEM_OK);
    }
    /* Classes are 16 bytes wide: most boundaries got a neighbour. */
    g_assert_cmpuint(g_hash_table_size(seen), >, 2000);
    for (unsigned n = 0; n <= PAGE; n++) {
        memset(page, 0, PAGE);
        for (unsigned i = 0; i < n; i++) {
            page[i] = (unsigned char)mix64(n * 7919 + i);
        }
        page[PAGE - 1] = 0x77;
        assert_slot_is(s, n, page);
    }
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.raw_pages, >, 0);
    g_assert_cmpuint(st.raw_pages, <, PAGE / 4 + 64);
    g_hash_table_unref(seen);
    vtmem_store_free(s);
}

/* The allocator itself, for every object size 1..4096. */
static void test_zpool_sizes(void)
{
    VtmemAccount acct = { 0 };
    atomic_store(&acct.limit, UINT64_MAX);
    VtmemZpool *pool = vtmem_zpool_new(20000, &acct);
    VtmemZhandle *h = g_new(VtmemZhandle, PAGE + 1);
    uint64_t held0 = atomic_load(&acct.held);

    g_assert_cmpint(vtmem_zpool_alloc(pool, 0, &h[0]), ==, VTMEM_ERR_INVAL);
    g_assert_cmpint(vtmem_zpool_alloc(pool, PAGE + 1, &h[0]), ==,
                    VTMEM_ERR_INVAL);
    for (size_t size = 1; size <= PAGE; size++) {
        size_t slot = vtmem_zpool_class_size(size);
        unsigned pages = vtmem_zpool_class_pages(size);
        g_assert_cmpuint(slot, >=, size);
        g_assert_cmpuint(pages, >=, 1);
        g_assert_cmpuint(pages, <=, 8);
        if (size <= PAGE * 3 / 4) {
            /* tail waste of a zspage stays under one slot */
            g_assert_cmpuint(pages * PAGE % slot, <, slot);
            /* memory per object (slot + share of the tail) stays close */
            size_t objs = MIN(pages * PAGE / slot, 1024);
            g_assert_cmpuint(pages * PAGE / objs - size, <, 160);
        }
        g_assert_cmpint(vtmem_zpool_alloc(pool, size, &h[size]), ==, VTMEM_OK);
        memset(vtmem_zpool_map(pool, h[size], size), (int)(size & 0xff), size);
    }
    g_assert_cmpuint(vtmem_zpool_class_size(0), ==, 0);
    g_assert_cmpuint(vtmem_zpool_class_size(PAGE + 1), ==, 0);
    for (size_t size = 1; size <= PAGE; size++) {
        unsigned char *p = vtmem_zpool_map(pool, h[size], size);
        for (size_t i = 0; i < size; i++) {
            g_assert_cmpuint(p[i], ==, size & 0xff);
        }
    }
    g_assert_cmpuint(vtmem_zpool_zspages(pool), >, 0);
    for (size_t size = 1; size <= PAGE; size++) {
        vtmem_zpool_free(pool, h[size], size);
    }
    g_assert_cmpuint(vtmem_zpool_zspages(pool), ==, 0);
    g_assert_cmpuint(atomic_load(&acct.held), ==, atomic_load(&acct.metadata));
    /* directory segments stay (kept for reuse), nothing else */
    g_assert_cmpuint(atomic_load(&acct.held) - held0, <=,
                     2 * ZPOOL_DIR_SEGMENT + PAGE);
    vtmem_zpool_destroy(pool);
    g_assert_cmpuint(atomic_load(&acct.held), ==, 0);
    g_assert_cmpuint(atomic_load(&acct.metadata), ==, 0);
    g_free(h);
}

static void test_replace(void)
{
    VtmemStore *s = vtmem_store_new(16, UINT64_MAX);
    unsigned char a[PAGE], b[PAGE];

    /* First object takes a zspage directory segment, kept for reuse. */
    make_page(KIND_TEXT, 0, a);
    g_assert_cmpint(vtmem_store_put(s, 3, a), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_invalidate(s, 3), ==, VTMEM_OK);
    uint64_t held0 = vtmem_store_memory_held(s);

    for (unsigned ka = 0; ka < NR_KINDS; ka++) {
        for (unsigned kb = 0; kb < NR_KINDS; kb++) {
            make_page(ka, ka * 10 + kb, a);
            make_page(kb, kb * 100 + ka + 1, b);
            g_assert_cmpint(vtmem_store_put(s, 3, a), ==, VTMEM_OK);
            assert_slot_is(s, 3, a);
            g_assert_cmpint(vtmem_store_put(s, 3, b), ==, VTMEM_OK);
            assert_slot_is(s, 3, b);
            VtmemStoreStats st = stats_of(s);
            g_assert_cmpuint(st.stored_pages, ==, 1);
            g_assert_cmpuint(st.same_filled_pages, ==, kb <= KIND_WORD);
            g_assert_cmpint(vtmem_store_invalidate(s, 3), ==, VTMEM_OK);
            g_assert_cmpuint(vtmem_store_memory_held(s), ==, held0);
        }
    }
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, 0);
    g_assert_cmpuint(st.compressed_bytes + st.raw_bytes, ==, 0);
    g_assert_cmpuint(st.puts, ==, 2 * NR_KINDS * NR_KINDS + 1);
    g_assert_cmpuint(st.invalidations, ==, NR_KINDS * NR_KINDS + 1);
    vtmem_store_free(s);
}

/*
 * A page replacing one of the same size class is written in place: no
 * memory taken or given back. Over the limit, it is refused all the same
 * and the slot is left empty.
 */
static void test_replace_in_place(void)
{
    VtmemStore *s = vtmem_store_new(16, UINT64_MAX);
    unsigned char a[PAGE], b[PAGE];

    make_page(KIND_RANDOM, 1, a);
    make_page(KIND_RANDOM, 2, b);
    g_assert_cmpint(vtmem_store_put(s, 5, a), ==, VTMEM_OK);
    uint64_t held = vtmem_store_memory_held(s);
    g_assert_cmpint(vtmem_store_put(s, 5, b), ==, VTMEM_OK);
    g_assert_cmpuint(vtmem_store_memory_held(s), ==, held);
    assert_slot_is(s, 5, b);
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.raw_pages, ==, 1);
    g_assert_cmpuint(st.raw_bytes, ==, PAGE);
    g_assert_cmpuint(st.puts, ==, 2);
    vtmem_store_set_limit(s, held - 1);
    g_assert_cmpint(vtmem_store_put(s, 5, a), ==, VTMEM_ERR_NOSPACE);
    g_assert_cmpint(vtmem_store_get(s, 5, a), ==, VTMEM_ERR_NOENT);
    st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, 0);
    g_assert_cmpuint(st.raw_bytes, ==, 0);
    g_assert_cmpuint(st.refusals, ==, 1);
    vtmem_store_free(s);
}

static int collect(uint64_t slot, const void *page, void *opaque)
{
    GArray *a = opaque;
    uint64_t sum = mix64(slot);
    const unsigned char *p = page;
    for (unsigned i = 0; i < PAGE; i++) {
        sum = sum * 31 + p[i];
    }
    g_array_append_val(a, slot);
    g_array_append_val(a, sum);
    return 0;
}

static int stop_at_third(uint64_t slot, const void *page, void *opaque)
{
    (void)page;
    unsigned *n = opaque;
    return ++*n == 3 ? (int)(slot + 1000) : 0;
}

static void test_iterate(void)
{
    VtmemStore *s = vtmem_store_new(5000, UINT64_MAX);
    unsigned char page[PAGE];
    const uint64_t slots[] = { 0, 1, 511, 512, 513, 1700, 4095, 4999 };
    GArray *got = g_array_new(FALSE, FALSE, sizeof(uint64_t));

    g_assert_cmpint(vtmem_store_iterate(s, collect, got), ==, 0);
    g_assert_cmpuint(got->len, ==, 0);
    /* insert out of order; iteration must come back sorted */
    for (int i = G_N_ELEMENTS(slots) - 1; i >= 0; i--) {
        make_page(i % NR_KINDS, slots[i], page);
        g_assert_cmpint(vtmem_store_put(s, slots[i], page), ==, VTMEM_OK);
    }
    g_assert_cmpint(vtmem_store_iterate(s, collect, got), ==, 0);
    g_assert_cmpuint(got->len, ==, 2 * G_N_ELEMENTS(slots));
    for (unsigned i = 0; i < G_N_ELEMENTS(slots); i++) {
        uint64_t want = mix64(slots[i]);
        make_page(i % NR_KINDS, slots[i], page);
        for (unsigned j = 0; j < PAGE; j++) {
            want = want * 31 + page[j];
        }
        g_assert_cmpuint(g_array_index(got, uint64_t, 2 * i), ==, slots[i]);
        g_assert_cmpuint(g_array_index(got, uint64_t, 2 * i + 1), ==, want);
    }
    unsigned n = 0;
    g_assert_cmpint(vtmem_store_iterate(s, stop_at_third, &n), ==, 1511);
    g_assert_cmpuint(n, ==, 3);
    g_array_free(got, TRUE);
    vtmem_store_free(s);
}

/* ---- limits ---- */

static void test_limit(void)
{
    VtmemStore *s = vtmem_store_new(4096, UINT64_MAX);
    unsigned char page[PAGE];
    uint64_t held0 = vtmem_store_memory_held(s);
    unsigned stored = 0;

    /* Room for the chunk and a few zspages only. */
    vtmem_store_set_limit(s, held0 + 64 * 1024);
    g_assert_cmpuint(stats_of(s).limit, ==, held0 + 64 * 1024);
    for (unsigned i = 0; i < 200; i++) {
        make_page(KIND_RANDOM, i, page);
        uint64_t before = vtmem_store_memory_held(s);
        vtmem_status st = vtmem_store_put(s, i, page);
        if (st == VTMEM_OK) {
            stored++;
            g_assert_cmpuint(vtmem_store_memory_held(s), <=, held0 + 65536);
            continue;
        }
        g_assert_cmpint(st, ==, VTMEM_ERR_NOSPACE);
        g_assert_cmpuint(vtmem_store_memory_held(s), ==, before);
        g_assert_cmpint(vtmem_store_get(s, i, page), ==, VTMEM_ERR_NOENT);
    }
    g_assert_cmpuint(stored, >, 4);
    g_assert_cmpuint(stored, <, 16);
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, stored);
    g_assert_cmpuint(st.refusals, ==, 200 - stored);
    g_assert_cmpuint(st.memory_held, <=, st.limit);

    /* A refused replacement leaves the slot empty, never the old copy. */
    make_page(KIND_TEXT, 1, page);
    g_assert_cmpint(vtmem_store_put(s, 1000, page), ==, VTMEM_ERR_NOSPACE);
    g_assert_cmpint(vtmem_store_get(s, 0, page), ==, VTMEM_OK);
    vtmem_store_set_limit(s, 0);
    make_page(KIND_RANDOM, 4242, page);
    g_assert_cmpint(vtmem_store_put(s, 0, page), ==, VTMEM_ERR_NOSPACE);
    g_assert_cmpint(vtmem_store_get(s, 0, page), ==, VTMEM_ERR_NOENT);
    /* Same-filled pages too are refused while over the limit. */
    make_page(KIND_ZERO, 0, page);
    g_assert_cmpint(vtmem_store_put(s, 1, page), ==, VTMEM_ERR_NOSPACE);
    g_assert_cmpint(vtmem_store_get(s, 1, page), ==, VTMEM_ERR_NOENT);

    /* Lowering the limit dropped nothing else. */
    for (unsigned i = 2; i < 200; i++) {
        if (vtmem_store_get(s, i, page) == VTMEM_OK) {
            unsigned char want[PAGE];
            make_page(KIND_RANDOM, i, want);
            g_assert_cmpmem(page, PAGE, want, PAGE);
        }
    }
    g_assert_cmpuint(stats_of(s).stored_pages, ==, stored - 2);

    /* Raising it again lets puts in. */
    vtmem_store_set_limit(s, UINT64_MAX);
    make_page(KIND_RANDOM, 0, page);
    g_assert_cmpint(vtmem_store_put(s, 0, page), ==, VTMEM_OK);
    assert_slot_is(s, 0, page);

    /* A limit below the fixed tables refuses everything, even a chunk. */
    VtmemStore *t = vtmem_store_new(100, 0);
    uint64_t h = vtmem_store_memory_held(t);
    g_assert_cmpint(vtmem_store_put(t, 5, page), ==, VTMEM_ERR_NOSPACE);
    g_assert_cmpuint(vtmem_store_memory_held(t), ==, h);
    g_assert_cmpuint(stats_of(t).refusals, ==, 1);
    vtmem_store_free(t);
    vtmem_store_free(s);
}

/* ---- compaction ---- */

static void test_compact(void)
{
    const unsigned n = 20000;  /* not scaled: density needs enough pages */
    VtmemStore *s = vtmem_store_new(n, UINT64_MAX);
    unsigned char page[PAGE];
    guint32 seed = test_seed();
    GRand *rng = g_rand_new_with_seed(seed);

    g_assert_cmpuint(vtmem_store_compact(s), ==, 0);
    for (unsigned i = 0; i < n; i++) {
        make_page(i % 3 ? KIND_PARTIAL : KIND_TEXT, i, page);
        g_assert_cmpint(vtmem_store_put(s, i, page), ==, VTMEM_OK);
    }
    bool *kept = g_new0(bool, n);
    for (unsigned i = 0; i < n; i++) {
        kept[i] = g_rand_boolean(rng);
        if (!kept[i]) {
            g_assert_cmpint(vtmem_store_invalidate(s, i), ==, VTMEM_OK);
        }
    }
    VtmemStoreStats before = stats_of(s);
    uint64_t released = vtmem_store_compact(s);
    VtmemStoreStats after = stats_of(s);
    g_test_message("compact: held %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
                   ", moved %" G_GUINT64_FORMAT, before.memory_held,
                   after.memory_held, after.compacted_objects);
    g_assert_cmpuint(released, >, before.memory_held / 4);
    g_assert_cmpuint(after.memory_held, ==, before.memory_held - released);
    g_assert_cmpuint(after.compacted_bytes, ==, released);
    g_assert_cmpuint(after.compacted_objects, >, 0);
    g_assert_cmpuint(after.compactions, ==, 2);
    /* Dense again: payload over 90% of the memory held. */
    double density = (double)(after.compressed_bytes + after.raw_bytes) /
                     after.memory_held;
    g_test_message("density after compaction %.4f", density);
    g_assert_cmpfloat(density, >, 0.90);
    for (unsigned i = 0; i < n; i++) {
        if (kept[i]) {
            make_page(i % 3 ? KIND_PARTIAL : KIND_TEXT, i, page);
            assert_slot_is(s, i, page);
        } else {
            g_assert_cmpint(vtmem_store_get(s, i, page), ==, VTMEM_ERR_NOENT);
        }
    }
    /* A second pass finds little to do. */
    g_assert_cmpuint(vtmem_store_compact(s), <, released / 10 + 1);
    vtmem_store_invalidate_all(s);
    VtmemStoreStats empty = stats_of(s);
    g_assert_cmpuint(empty.stored_pages, ==, 0);
    g_assert_cmpuint(empty.memory_held, ==, empty.metadata_bytes);
    g_free(kept);
    g_rand_free(rng);
    vtmem_store_free(s);
}

/*
 * Compaction in bounded steps: fragmentation rises when half the objects
 * go, a pass made of small steps gives it back, every byte survives; on a
 * huge sparse store a pass takes many steps (each one bounded) and ends.
 */
static void test_compact_step(void)
{
    const unsigned n = 8000;
    const uint64_t big = UINT64_C(1) << 32, budget = 4096;
    VtmemStore *s = vtmem_store_new(big, UINT64_MAX);
    unsigned char page[PAGE];
    uint64_t released = 0, steps = 0;

    g_assert_cmpuint(vtmem_store_fragmentation(s), ==, 0);
    for (unsigned i = 0; i < n; i++) {
        make_page(KIND_PARTIAL, i, page);
        /* spread over the table: the walk has to cross it all */
        g_assert_cmpint(vtmem_store_put(s, (uint64_t)i << 19, page), ==,
                        VTMEM_OK);
    }
    uint64_t frag_full = vtmem_store_fragmentation(s);
    g_assert_cmpuint(frag_full, <, vtmem_store_memory_held(s) / 10);
    for (unsigned i = 0; i < n; i += 2) {
        g_assert_cmpint(vtmem_store_invalidate(s, (uint64_t)i << 19), ==,
                        VTMEM_OK);
    }
    VtmemStoreStats before = stats_of(s);
    uint64_t frag = vtmem_store_fragmentation(s);
    g_assert_cmpuint(frag, >, frag_full);
    g_assert_cmpuint(frag, <, before.memory_held - before.metadata_bytes);
    while (!vtmem_store_compact_step(s, budget, &released)) {
        steps++;
        g_assert_cmpuint(steps, <, 4 * big / budget);
    }
    steps++;
    VtmemStoreStats after = stats_of(s);
    g_test_message("pass of %" G_GUINT64_FORMAT " steps released %"
                   G_GUINT64_FORMAT ", fragmentation %" G_GUINT64_FORMAT
                   " -> %" G_GUINT64_FORMAT, steps, released, frag,
                   vtmem_store_fragmentation(s));
    /*
     * Each step looked at <= budget slots: the n / 2 chunks still in use
     * hold 495 slots each, and each of those was looked at.
     */
    g_assert_cmpuint(steps, >=, n / 2 * 495 / budget);
    g_assert_cmpuint(after.compactions, ==, 1);
    g_assert_cmpuint(released, >, 0);
    g_assert_cmpuint(after.compacted_bytes, ==, released);
    g_assert_cmpuint(after.memory_held, ==, before.memory_held - released);
    g_assert_cmpuint(vtmem_store_fragmentation(s), <, frag);
    for (unsigned i = 0; i < n; i++) {
        make_page(KIND_PARTIAL, i, page);
        if (i % 2) {
            assert_slot_is(s, (uint64_t)i << 19, page);
        } else {
            g_assert_cmpint(vtmem_store_get(s, (uint64_t)i << 19, page), ==,
                            VTMEM_ERR_NOENT);
        }
    }
    /* The next call starts a new pass; NULL released is fine. */
    g_assert_false(vtmem_store_compact_step(s, 1, NULL));
    g_assert_true(vtmem_store_compact_step(NULL, 1, NULL));
    g_assert_cmpuint(vtmem_store_fragmentation(NULL), ==, 0);
    vtmem_store_free(s);
}

/*
 * Found by tests/fuzz/fuzz-store: a put that is refused may keep metadata
 * it made on the way (the slot-table leaf, a zspage directory segment and
 * a page of the directory's top level, a grown region table), within the
 * limit, for reuse as after a successful put. Swept over limits just above
 * an empty store's usage, the slot in a leaf not made yet: every refusal
 * leaves the slot empty, memory_held within the limit, all of it metadata,
 * at most 32 KiB more than before, and a second try keeps nothing more.
 */
static void test_refused_put_metadata(void)
{
    const uint64_t leaf_slots = 495 * 512, kept_max = 32 * 1024;
    unsigned char page[PAGE], back[PAGE];
    unsigned refused = 0, grew = 0;
    uint64_t most = 0;

    make_page(KIND_TEXT, 1, page);
    for (uint64_t extra = 0; extra <= 64 * 1024; extra += 256) {
        VtmemStore *s = vtmem_store_new(2 * leaf_slots, UINT64_MAX);
        uint64_t held0 = vtmem_store_memory_held(s), held1;
        vtmem_status st;

        vtmem_store_set_limit(s, held0 + extra);
        st = vtmem_store_put(s, leaf_slots + 7, page);
        if (st != VTMEM_OK) {
            g_assert_cmpint(st, ==, VTMEM_ERR_NOSPACE);
            refused++;
            held1 = vtmem_store_memory_held(s);
            grew += held1 > held0;
            most = MAX(most, held1 - held0);
            g_assert_cmpuint(held1, <=, held0 + extra);
            g_assert_cmpuint(held1 - held0, <=, kept_max);
            g_assert_cmpuint(stats_of(s).metadata_bytes, ==, held1);
            g_assert_cmpuint(stats_of(s).stored_pages, ==, 0);
            g_assert_cmpint(vtmem_store_get(s, leaf_slots + 7, back), ==,
                            VTMEM_ERR_NOENT);
            g_assert_cmpint(vtmem_store_put(s, leaf_slots + 8, page), ==,
                            VTMEM_ERR_NOSPACE);
            g_assert_cmpuint(vtmem_store_memory_held(s), ==, held1);
            vtmem_store_set_limit(s, UINT64_MAX);
            g_assert_cmpint(vtmem_store_put(s, leaf_slots + 7, page), ==,
                            VTMEM_OK);
        }
        assert_slot_is(s, leaf_slots + 7, page);
        vtmem_store_free(s);
    }
    g_test_message("%u refusals, %u of them kept metadata, at most %"
                   G_GUINT64_FORMAT " bytes", refused, grew, most);
    g_assert_cmpuint(refused, >, 0);
    g_assert_cmpuint(grew, >, 0);
}

/* ---- randomised model-based test ---- */

typedef struct ModelSlot {
    uint8_t kind;     /* NR_KINDS = empty */
    uint64_t seed;
} ModelSlot;

static void check_stats(VtmemStore *s, const ModelSlot *m, unsigned n)
{
    VtmemStoreStats st = stats_of(s);
    uint64_t stored = 0, same = 0;

    for (unsigned i = 0; i < n; i++) {
        stored += m[i].kind != NR_KINDS;
        same += m[i].kind == KIND_ZERO || m[i].kind == KIND_WORD;
    }
    g_assert_cmpuint(st.stored_pages, ==, stored);
    g_assert_cmpuint(st.same_filled_pages, ==, same);
    g_assert_cmpuint(st.raw_bytes, ==, st.raw_pages * PAGE);
    g_assert_cmpuint(st.raw_pages + st.same_filled_pages, <=, stored);
    g_assert_cmpuint(st.compressed_bytes, <=,
                     (stored - st.raw_pages - same) * (PAGE * 3 / 4));
    g_assert_cmpuint(st.memory_held, >=, st.metadata_bytes +
                     st.compressed_bytes + st.raw_bytes);
}

/* Compaction steps of random sizes in a thread of their own. */
typedef struct Compactor {
    VtmemStore *store;
    guint32 seed;
    gint stop;
    uint64_t steps, passes;
} Compactor;

static gpointer compactor_run(gpointer opaque)
{
    Compactor *c = opaque;
    GRand *rng = g_rand_new_with_seed(c->seed);

    while (!g_atomic_int_get(&c->stop)) {
        uint64_t budget = g_rand_int_range(rng, 1, 3000);
        c->passes += vtmem_store_compact_step(c->store, budget, NULL);
        c->steps++;
        g_thread_yield();
    }
    g_rand_free(rng);
    return NULL;
}

/*
 * Random operations checked against a model of every slot; with
 * compacting, compaction steps run all along in another thread.
 */
static void run_model(bool compacting)
{
    const unsigned n = 3000, ops = scaled(150000);
    guint32 seed = test_seed();
    GRand *rng = g_rand_new_with_seed(seed);
    VtmemStore *s = vtmem_store_new(n, UINT64_MAX);
    ModelSlot *m = g_new(ModelSlot, n);
    unsigned char page[PAGE], want[PAGE];
    uint64_t limit = UINT64_MAX, held_empty = vtmem_store_memory_held(s);
    Compactor comp = { .store = s, .seed = seed + 1 };
    GThread *comp_thread = NULL;

    if (compacting) {
        comp_thread = g_thread_new("compactor", compactor_run, &comp);
    }

    for (unsigned i = 0; i < n; i++) {
        m[i].kind = NR_KINDS;
    }
    for (unsigned op = 0; op < ops; op++) {
        unsigned what = g_rand_int_range(rng, 0, 1000);
        /* Hot region so that replaces and chunk frees happen often. */
        uint64_t slot = g_rand_boolean(rng) ? g_rand_int_range(rng, 0, 64)
                                            : g_rand_int_range(rng, 0, n);
        if (what < 450) {                        /* put */
            unsigned kind = g_rand_int_range(rng, 0, NR_KINDS);
            uint64_t pseed = g_rand_int(rng);
            uint64_t before = vtmem_store_memory_held(s);
            make_page(kind, pseed, page);
            vtmem_status st = vtmem_store_put(s, slot, page);
            if (st == VTMEM_OK) {
                m[slot].kind = (uint8_t)kind;
                m[slot].seed = pseed;
                g_assert_cmpuint(vtmem_store_memory_held(s), <=, limit);
            } else {
                g_assert_cmpint(st, ==, VTMEM_ERR_NOSPACE);
                /*
                 * never grows (the metadata a refused put may keep is
                 * made by the first puts here, unlimited); may shrink by
                 * the dropped old copy
                 */
                g_assert_cmpuint(vtmem_store_memory_held(s), <=, before);
                m[slot].kind = NR_KINDS;
            }
        } else if (what < 800) {                 /* get */
            vtmem_status st = vtmem_store_get(s, slot, page);
            if (m[slot].kind == NR_KINDS) {
                g_assert_cmpint(st, ==, VTMEM_ERR_NOENT);
            } else {
                g_assert_cmpint(st, ==, VTMEM_OK);
                make_page(m[slot].kind, m[slot].seed, want);
                g_assert_cmpmem(page, PAGE, want, PAGE);
            }
        } else if (what < 900) {                 /* invalidate */
            vtmem_status st = vtmem_store_invalidate(s, slot);
            g_assert_cmpint(st, ==, m[slot].kind == NR_KINDS ?
                            VTMEM_ERR_NOENT : VTMEM_OK);
            m[slot].kind = NR_KINDS;
        } else if (what < 950) {                 /* invalidate_range */
            uint64_t count = g_rand_int_range(rng, 0, 1200), dropped = 7;
            uint64_t expect = 0;
            vtmem_status st = vtmem_store_invalidate_range(s, slot, count,
                                                           &dropped);
            if (slot + count > n) {
                g_assert_cmpint(st, ==, VTMEM_ERR_RANGE);
                g_assert_cmpuint(dropped, ==, 7);
            } else {
                g_assert_cmpint(st, ==, VTMEM_OK);
                for (uint64_t i = slot; i < slot + count; i++) {
                    expect += m[i].kind != NR_KINDS;
                    m[i].kind = NR_KINDS;
                }
                g_assert_cmpuint(dropped, ==, expect);
            }
        } else if (what < 965) {                 /* compact */
            uint64_t before = vtmem_store_memory_held(s);
            uint64_t released = vtmem_store_compact(s);
            if (compacting) {  /* the other thread may release more */
                g_assert_cmpuint(vtmem_store_memory_held(s), <=,
                                 before - released);
            } else {
                g_assert_cmpuint(vtmem_store_memory_held(s), ==,
                                 before - released);
            }
        } else if (what < 990) {                 /* limit change */
            uint64_t held = vtmem_store_memory_held(s);
            switch (g_rand_int_range(rng, 0, 4)) {
            case 0:
                limit = UINT64_MAX;
                break;
            case 1:
                limit = held / 2;               /* below usage */
                break;
            case 2:
                limit = held + g_rand_int_range(rng, 0, 200000);
                break;
            default:
                limit = held;
                break;
            }
            vtmem_store_set_limit(s, limit);
        } else if (what < 992) {                 /* iterate */
            GArray *got = g_array_new(FALSE, FALSE, sizeof(uint64_t));
            unsigned k = 0;
            g_assert_cmpint(vtmem_store_iterate(s, collect, got), ==, 0);
            for (unsigned i = 0; i < n; i++) {
                if (m[i].kind == NR_KINDS) {
                    continue;
                }
                uint64_t sum = mix64(i);
                make_page(m[i].kind, m[i].seed, want);
                for (unsigned j = 0; j < PAGE; j++) {
                    sum = sum * 31 + want[j];
                }
                g_assert_cmpuint(k + 1, <, got->len);
                g_assert_cmpuint(g_array_index(got, uint64_t, k), ==, i);
                g_assert_cmpuint(g_array_index(got, uint64_t, k + 1), ==, sum);
                k += 2;
            }
            g_assert_cmpuint(k, ==, got->len);
            g_array_free(got, TRUE);
        } else if (what < 993) {                 /* invalidate_all */
            vtmem_store_invalidate_all(s);
            for (unsigned i = 0; i < n; i++) {
                m[i].kind = NR_KINDS;
            }
        } else {
            check_stats(s, m, n);
        }
    }
    check_stats(s, m, n);
    for (unsigned i = 0; i < n; i++) {
        if (m[i].kind != NR_KINDS) {
            make_page(m[i].kind, m[i].seed, want);
            assert_slot_is(s, i, want);
        }
    }
    if (compacting) {
        g_atomic_int_set(&comp.stop, 1);
        g_thread_join(comp_thread);
        VtmemStoreStats cs = stats_of(s);
        g_test_message("%" G_GUINT64_FORMAT " compaction steps, %"
                       G_GUINT64_FORMAT " passes, %" G_GUINT64_FORMAT
                       " objects moved", comp.steps, comp.passes,
                       cs.compacted_objects);
        g_assert_cmpuint(comp.passes, >, 0);
        g_assert_cmpuint(cs.compacted_objects, >, 0);
        /* and after all that moving, every byte is still right */
        for (unsigned i = 0; i < n; i++) {
            if (m[i].kind != NR_KINDS) {
                make_page(m[i].kind, m[i].seed, want);
                assert_slot_is(s, i, want);
            }
        }
    }
    vtmem_store_invalidate_all(s);
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, 0);
    g_assert_cmpuint(st.memory_held, ==, st.metadata_bytes);
    /* Only zspage directory segments may stay (kept for reuse). */
    g_assert_cmpuint(st.memory_held - held_empty, <=,
                     8 * ZPOOL_DIR_SEGMENT + PAGE);
    g_rand_free(rng);
    g_free(m);
    vtmem_store_free(s);
}

static void test_model(void) { run_model(false); }
static void test_model_compacting(void) { run_model(true); }

/* ---- real memory ---- */

/* The process's resident memory now, in bytes. */
static uint64_t process_rss(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    g_assert_nonnull(f);
    g_assert_cmpint(fscanf(f, "%llu %llu", &size, &resident), ==, 2);
    fclose(f);
    return resident * PAGE;
}

/*
 * What the store's mappings hold in RAM (mincore) stays within memory_held
 * + 1 MiB; so does what the whole process grew by since rss0 (not under
 * valgrind or ASan, whose own memory would blur it).
 */
static void assert_real_memory(VtmemStore *s, uint64_t rss0, const char *when)
{
    uint64_t held = vtmem_store_memory_held(s);
    uint64_t resident = vtmem_store_resident_bytes(s);
    uint64_t rss = process_rss();

    g_test_message("%s: memory_held %" G_GUINT64_FORMAT " KiB, store "
                   "resident %" G_GUINT64_FORMAT " KiB, process RSS grew %"
                   G_GINT64_FORMAT " KiB", when, held >> 10, resident >> 10,
                   ((gint64)rss - (gint64)rss0) / 1024);
    g_assert_cmpuint(resident, <=, held + MIB);
    if (!under_tool) {
        g_assert_cmpuint(rss, <=, rss0 + held + MIB);
    }
}

/*
 * Fill the store to its limit from slot base on (pages of every size
 * class, incompressible ones included), then drop everything but the last
 * page stored, which must still read back.
 */
static void fill_then_drop(VtmemStore *s, uint64_t base)
{
    unsigned char page[PAGE];
    uint64_t slot;
    vtmem_status st;

    for (slot = base;; slot++) {
        make_page(slot % 3 ? KIND_PARTIAL : KIND_RANDOM, slot, page);
        st = vtmem_store_put(s, slot, page);
        if (st != VTMEM_OK) {
            break;
        }
    }
    g_assert_cmpint(st, ==, VTMEM_ERR_NOSPACE);
    g_assert_cmpuint(slot - base, >, 1000);
    g_assert_cmpuint(vtmem_store_memory_held(s), >,
                     stats_of(s).limit - 64 * 1024);
    for (uint64_t i = base; i < slot - 1; i++) {
        g_assert_cmpint(vtmem_store_invalidate(s, i), ==, VTMEM_OK);
    }
    make_page((slot - 1) % 3 ? KIND_PARTIAL : KIND_RANDOM, slot - 1, page);
    assert_slot_is(s, slot - 1, page);
}

static void test_rss_one_thread(void)
{
    uint64_t rss0 = process_rss();
    VtmemStore *s = vtmem_store_new(1u << 22, scaled(64) * MIB);

    fill_then_drop(s, 0);
    assert_real_memory(s, rss0, "after fill and drop");
    g_assert_cmpuint(vtmem_store_memory_held(s), <, MIB);
    /* again: freed pages are reused, nothing piles up */
    fill_then_drop(s, 100000);
    assert_real_memory(s, rss0, "after the second fill and drop");
    g_assert_cmpuint(vtmem_store_memory_held(s), <, MIB);
    vtmem_store_free(s);
}

/*
 * The store's mappings as /proc/self/smaps shows them, found as the e2e
 * churn scenario finds them in QEMU's (vtmem-backing.c): named
 * [anon:vtmem-store] where the kernel can name them, else marked
 * nohugepage and dontfork (VmFlags nh and dc). Returns the sum of their
 * Rss; *thp the sum of their AnonHugePages; *vmas how many there are.
 */
static uint64_t smaps_store_rss(uint64_t *thp, unsigned *vmas)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512], name[256] = "";
    unsigned long long kb;
    uint64_t rss = 0, huge = 0, sum = 0;

    g_assert_nonnull(f);
    *thp = 0;
    *vmas = 0;
    while (fgets(line, sizeof(line), f)) {
        char key[64];

        if (sscanf(line, "%63s", key) != 1) {
            continue;
        }
        if (key[strlen(key) - 1] != ':') {
            /* a mapping's first line: range perms offset dev inode [name] */
            int at = 0;

            name[0] = '\0';
            if (sscanf(line, "%*s %*s %*s %*s %*s %n", &at) >= 0 && at > 0) {
                g_strlcpy(name, line + at, sizeof(name));
                g_strchomp(name);
            }
            rss = huge = 0;
        } else if (sscanf(line, "Rss: %llu kB", &kb) == 1) {
            rss = kb * 1024;
        } else if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
            huge = kb * 1024;
        } else if (!strcmp(key, "VmFlags:")) {
            bool named = !strcmp(name, "[anon:vtmem-store]");
            bool marked = !name[0] && strstr(line, " nh") &&
                          strstr(line, " dc");

            if (named || marked) {
                sum += rss;
                *thp += huge;
                (*vmas)++;
            }
        }
    }
    fclose(f);
    return sum;
}

/*
 * What smaps says of the store's mappings: everything the store has
 * resident (mincore) is in them, never more than memory_held + 1 MiB, and
 * no transparent huge page.
 */
static void assert_smaps(VtmemStore *s, const char *when)
{
    uint64_t held = vtmem_store_memory_held(s);
    uint64_t resident = vtmem_store_resident_bytes(s);
    uint64_t thp, rss;
    unsigned vmas;

    rss = smaps_store_rss(&thp, &vmas);
    g_test_message("%s: memory_held %" G_GUINT64_FORMAT " KiB, store "
                   "resident %" G_GUINT64_FORMAT " KiB, smaps of %u store "
                   "mappings: Rss %" G_GUINT64_FORMAT " KiB", when,
                   held >> 10, resident >> 10, vmas, rss >> 10);
    g_assert_cmpuint(vmas, >, 0);
    g_assert_cmpuint(rss, >=, resident);
    g_assert_cmpuint(rss, <=, held + MIB);
    g_assert_cmpuint(thp, ==, 0);
}

static void test_rss_smaps(void)
{
    VtmemStore *s = vtmem_store_new(1u << 22, scaled(64) * MIB);
    unsigned char page[PAGE];
    uint64_t slot;

    for (slot = 0; vtmem_store_memory_held(s) < scaled(32) * MIB; slot++) {
        make_page(slot % 3 ? KIND_PARTIAL : KIND_RANDOM, slot, page);
        g_assert_cmpint(vtmem_store_put(s, slot, page), ==, VTMEM_OK);
    }
    assert_smaps(s, "half full");
    g_assert_cmpuint(vtmem_store_resident_bytes(s), >,
                     vtmem_store_memory_held(s) / 2);
    for (uint64_t i = 0; i < slot; i += 2) {
        g_assert_cmpint(vtmem_store_invalidate(s, i), ==, VTMEM_OK);
    }
    assert_smaps(s, "every other page dropped");
    vtmem_store_compact(s);
    assert_smaps(s, "compacted");
    fill_then_drop(s, slot);
    assert_smaps(s, "filled to the limit and dropped");
    vtmem_store_free(s);
}

/*
 * The same from 6 long-lived threads in turn (as vCPU threads or
 * IOThreads would serve requests), each with its own malloc arena: the
 * memory one thread freed must not stay with it.
 */
typedef struct RssTurns {
    VtmemStore *store;
    GMutex lock;
    GCond cond;
    int ready, turn, done;
    uint64_t rss0;
} RssTurns;

typedef struct RssWorker {
    RssTurns *t;
    int id;
} RssWorker;

static gpointer rss_worker(gpointer opaque)
{
    RssWorker *w = opaque;
    RssTurns *t = w->t;

    g_free(g_malloc(64));  /* this thread's malloc arena exists now */
    g_mutex_lock(&t->lock);
    t->ready++;
    g_cond_broadcast(&t->cond);
    while (t->turn != w->id) {
        g_cond_wait(&t->cond, &t->lock);
    }
    g_mutex_unlock(&t->lock);
    fill_then_drop(t->store, (uint64_t)w->id * 200000);
    g_mutex_lock(&t->lock);
    t->done = w->id;
    g_cond_broadcast(&t->cond);
    while (t->turn != -2) {  /* stay alive until all are done */
        g_cond_wait(&t->cond, &t->lock);
    }
    g_mutex_unlock(&t->lock);
    return NULL;
}

static void test_rss_six_threads(void)
{
    enum { NR = 6 };
    RssTurns t = { .turn = -1, .done = -1 };
    RssWorker w[NR];
    GThread *th[NR];

    g_mutex_init(&t.lock);
    g_cond_init(&t.cond);
    for (int i = 0; i < NR; i++) {
        w[i] = (RssWorker){ &t, i };
        th[i] = g_thread_new("rss", rss_worker, &w[i]);
    }
    g_mutex_lock(&t.lock);
    while (t.ready < NR) {
        g_cond_wait(&t.cond, &t.lock);
    }
    g_mutex_unlock(&t.lock);
    t.rss0 = process_rss();
    t.store = vtmem_store_new(UINT64_C(1) << 22, scaled(32) * MIB);
    for (int i = 0; i < NR; i++) {
        g_mutex_lock(&t.lock);
        t.turn = i;
        g_cond_broadcast(&t.cond);
        while (t.done != i) {
            g_cond_wait(&t.cond, &t.lock);
        }
        g_mutex_unlock(&t.lock);
        char *when = g_strdup_printf("after thread %d's fill and drop", i);
        assert_real_memory(t.store, t.rss0, when);
        g_free(when);
        g_assert_cmpuint(vtmem_store_memory_held(t.store), <, MIB);
    }
    g_mutex_lock(&t.lock);
    t.turn = -2;
    g_cond_broadcast(&t.cond);
    g_mutex_unlock(&t.lock);
    for (int i = 0; i < NR; i++) {
        g_thread_join(th[i]);
    }
    g_assert_cmpuint(stats_of(t.store).stored_pages, ==, NR);
    vtmem_store_free(t.store);
    g_cond_clear(&t.cond);
    g_mutex_clear(&t.lock);
}

/*
 * The largest slot table: its metadata is charged as it is used, and a
 * range invalidation over all of it only visits what was touched.
 */
static void test_huge_table(void)
{
    const uint64_t big = UINT64_C(1) << 32;
    VtmemStore *s = vtmem_store_new(big, 256 * MIB);
    unsigned char a[PAGE], b[PAGE];
    uint64_t held0 = vtmem_store_memory_held(s), dropped = 0;

    g_test_message("memory_held at creation: %" G_GUINT64_FORMAT " bytes",
                   held0);
    g_assert_cmpuint(held0, <, MIB);
    make_page(KIND_TEXT, 1, a);
    make_page(KIND_RANDOM, 2, b);
    g_assert_cmpint(vtmem_store_put(s, 0, a), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_put(s, big - 1, b), ==, VTMEM_OK);
    assert_slot_is(s, 0, a);
    assert_slot_is(s, big - 1, b);
    g_assert_cmpint(vtmem_store_get(s, big / 2, a), ==, VTMEM_ERR_NOENT);
    /* two leaves, two chunks, two zspages and a directory segment */
    g_assert_cmpuint(vtmem_store_memory_held(s) - held0, <, 128 * 1024);
    g_assert_cmpint(vtmem_store_invalidate_range(s, 0, big, &dropped), ==,
                    VTMEM_OK);
    g_assert_cmpuint(dropped, ==, 2);
    g_assert_cmpuint(stats_of(s).stored_pages, ==, 0);
    vtmem_store_free(s);
}

/* ---- concurrency ---- */

typedef struct ThreadArg {
    VtmemStore *store;
    unsigned id;
    uint64_t first, count;
    unsigned iters;
    bool overlap;
    guint32 seed;
    unsigned errors;
} ThreadArg;

/* A page that names its slot and writer, checksummed, various kinds. */
static void stamp_page(unsigned char *page, uint64_t slot, unsigned writer,
                       uint64_t version)
{
    make_page(version % 3 == 0 ? KIND_TEXT : KIND_PARTIAL,
              slot * 1000003 + version, page);
    uint64_t hdr[4] = { slot, writer, version, 0 };
    memcpy(page + 64, hdr, sizeof(hdr));
    uint64_t sum = 0;
    for (unsigned i = 0; i < PAGE; i += 8) {
        uint64_t w;
        memcpy(&w, page + i, 8);
        sum = sum * 1099511628211u + w;
    }
    memcpy(page + 64 + 24, &sum, 8);
}

static bool page_valid(const unsigned char *page, uint64_t slot)
{
    unsigned char copy[PAGE];
    uint64_t hdr[4];
    memcpy(hdr, page + 64, sizeof(hdr));
    if (hdr[0] != slot) {
        return false;
    }
    stamp_page(copy, hdr[0], (unsigned)hdr[1], hdr[2]);
    return memcmp(copy, page, PAGE) == 0;
}

static gpointer worker(gpointer data)
{
    ThreadArg *a = data;
    GRand *rng = g_rand_new_with_seed(a->seed + a->id);
    uint64_t *version = g_new0(uint64_t, a->count);   /* 0: empty (owned) */
    unsigned char page[PAGE];

    for (unsigned it = 0; it < a->iters; it++) {
        uint64_t k = g_rand_int_range(rng, 0, (gint32)a->count);
        uint64_t slot = a->first + k;
        unsigned what = g_rand_int_range(rng, 0, 10);
        if (what < 5) {
            uint64_t v = ((uint64_t)(it + 1) << 8) | a->id;  /* never 0 */
            stamp_page(page, slot, a->id, v);
            vtmem_status st = vtmem_store_put(a->store, slot, page);
            if (st == VTMEM_OK) {
                version[k] = v;
            } else if (st == VTMEM_ERR_NOSPACE) {
                version[k] = 0;
            } else {
                a->errors++;
            }
        } else if (what < 9) {
            vtmem_status st = vtmem_store_get(a->store, slot, page);
            if (a->overlap) {
                /* Someone's complete page for this slot, or nothing. */
                if (st == VTMEM_OK ? !page_valid(page, slot)
                                   : st != VTMEM_ERR_NOENT) {
                    a->errors++;
                }
            } else if (version[k] == 0) {
                a->errors += st != VTMEM_ERR_NOENT;
            } else {
                unsigned char want[PAGE];
                stamp_page(want, slot, a->id, version[k]);
                a->errors += st != VTMEM_OK || memcmp(page, want, PAGE) != 0;
            }
        } else {
            vtmem_status st = vtmem_store_invalidate(a->store, slot);
            if (!a->overlap) {
                a->errors += st != (version[k] ? VTMEM_OK : VTMEM_ERR_NOENT);
            }
            version[k] = 0;
        }
    }
    g_free(version);
    g_rand_free(rng);
    return NULL;
}

typedef struct Disturber {
    VtmemStore *store;
    gint stop;
    unsigned rounds;
} Disturber;

/* Compacts and flips the limit while workers run. */
static gpointer disturber(gpointer data)
{
    Disturber *d = data;
    while (!g_atomic_int_get(&d->stop)) {
        vtmem_store_compact(d->store);
        uint64_t held = vtmem_store_memory_held(d->store);
        vtmem_store_set_limit(d->store, d->rounds % 4 == 3 ? held : UINT64_MAX);
        VtmemStoreStats st;
        vtmem_store_get_stats(d->store, &st);
        d->rounds++;
        g_usleep(2000);
    }
    vtmem_store_set_limit(d->store, UINT64_MAX);
    return NULL;
}

static void run_threads(bool overlap)
{
    enum { NR = 4 };
    const uint64_t per = 3000;
    guint32 seed = test_seed();
    VtmemStore *s = vtmem_store_new(NR * per, UINT64_MAX);
    ThreadArg args[NR];
    GThread *th[NR];
    Disturber d = { .store = s };
    GThread *dt = g_thread_new("disturber", disturber, &d);

    for (unsigned i = 0; i < NR; i++) {
        args[i] = (ThreadArg) {
            .store = s, .id = i, .iters = scaled(60000), .overlap = overlap,
            .first = overlap ? 0 : i * per, .count = overlap ? 2000 : per,
            .seed = seed,
        };
        th[i] = g_thread_new("worker", worker, &args[i]);
    }
    for (unsigned i = 0; i < NR; i++) {
        g_thread_join(th[i]);
        g_assert_cmpuint(args[i].errors, ==, 0);
    }
    g_atomic_int_set(&d.stop, 1);
    g_thread_join(dt);
    g_test_message("disturber rounds: %u", d.rounds);

    /* Everything left is intact and consistent with the stats. */
    unsigned char page[PAGE];
    uint64_t found = 0;
    for (uint64_t slot = 0; slot < NR * per; slot++) {
        vtmem_status st = vtmem_store_get(s, slot, page);
        if (st == VTMEM_OK) {
            g_assert_true(page_valid(page, slot));
            found++;
        } else {
            g_assert_cmpint(st, ==, VTMEM_ERR_NOENT);
        }
    }
    VtmemStoreStats st = stats_of(s);
    g_assert_cmpuint(st.stored_pages, ==, found);
    g_assert_cmpuint(found, >, 0);
    vtmem_store_invalidate_all(s);
    st = stats_of(s);
    g_assert_cmpuint(st.memory_held, ==, st.metadata_bytes);
    vtmem_store_free(s);
}

static void test_threads_disjoint(void) { run_threads(false); }
static void test_threads_overlap(void) { run_threads(true); }

/* ---- bad input ---- */

static int never(uint64_t slot, const void *page, void *opaque)
{
    (void)slot, (void)page, (void)opaque;
    return 1;
}

static void test_bad_input(void)
{
    VtmemStore *s = vtmem_store_new(100, UINT64_MAX);
    unsigned char page[PAGE] = { 1 };
    uint64_t dropped = 42;
    VtmemStoreStats st;

    /* NULL store */
    g_assert_cmpint(vtmem_store_put(NULL, 0, page), ==, VTMEM_ERR_INVAL);
    g_assert_cmpint(vtmem_store_get(NULL, 0, page), ==, VTMEM_ERR_INVAL);
    g_assert_cmpint(vtmem_store_invalidate(NULL, 0), ==, VTMEM_ERR_INVAL);
    g_assert_cmpint(vtmem_store_invalidate_range(NULL, 0, 1, &dropped), ==,
                    VTMEM_ERR_INVAL);
    g_assert_cmpint(vtmem_store_iterate(NULL, never, NULL), ==,
                    VTMEM_ERR_INVAL);
    g_assert_cmpuint(vtmem_store_compact(NULL), ==, 0);
    g_assert_cmpuint(vtmem_store_memory_held(NULL), ==, 0);
    g_assert_cmpuint(vtmem_store_nr_slots(NULL), ==, 0);
    vtmem_store_invalidate_all(NULL);
    vtmem_store_set_limit(NULL, 5);
    memset(&st, 0xff, sizeof(st));
    vtmem_store_get_stats(NULL, &st);
    g_assert_cmpuint(st.stored_pages, ==, 0);
    vtmem_store_get_stats(s, NULL);

    /* NULL buffers and functions */
    g_assert_cmpint(vtmem_store_put(s, 0, NULL), ==, VTMEM_ERR_INVAL);
    g_assert_cmpint(vtmem_store_get(s, 0, NULL), ==, VTMEM_ERR_INVAL);
    g_assert_cmpint(vtmem_store_iterate(s, NULL, NULL), ==, VTMEM_ERR_INVAL);

    /* out of range */
    g_assert_cmpint(vtmem_store_put(s, 100, page), ==, VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_put(s, UINT64_MAX, page), ==, VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_get(s, 100, page), ==, VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_invalidate(s, 100), ==, VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_invalidate_range(s, 101, 0, &dropped), ==,
                    VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_invalidate_range(s, 50, 51, &dropped), ==,
                    VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_invalidate_range(s, 1, UINT64_MAX, &dropped),
                    ==, VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_invalidate_range(s, UINT64_MAX, 2, &dropped),
                    ==, VTMEM_ERR_RANGE);
    g_assert_cmpuint(dropped, ==, 42);

    /* empty slots, double invalidate */
    g_assert_cmpint(vtmem_store_get(s, 5, page), ==, VTMEM_ERR_NOENT);
    g_assert_cmpint(vtmem_store_invalidate(s, 5), ==, VTMEM_ERR_NOENT);
    g_assert_cmpint(vtmem_store_put(s, 5, page), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_put(s, 99, page), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_invalidate(s, 5), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_invalidate(s, 5), ==, VTMEM_ERR_NOENT);
    g_assert_cmpint(vtmem_store_get(s, 5, page), ==, VTMEM_ERR_NOENT);

    /* edge ranges: empty at the end, whole store, NULL dropped */
    g_assert_cmpint(vtmem_store_invalidate_range(s, 100, 0, &dropped), ==,
                    VTMEM_OK);
    g_assert_cmpuint(dropped, ==, 0);
    g_assert_cmpint(vtmem_store_invalidate_range(s, 0, 100, NULL), ==,
                    VTMEM_OK);
    g_assert_cmpint(vtmem_store_get(s, 99, page), ==, VTMEM_ERR_NOENT);
    vtmem_store_get_stats(s, &st);
    g_assert_cmpuint(st.stored_pages, ==, 0);
    g_assert_cmpuint(st.invalidations, ==, 2);
    g_assert_cmpuint(st.gets, ==, 0);
    g_assert_cmpuint(st.puts, ==, 2);

    for (int c = VTMEM_ERR_NOMEM; c <= VTMEM_OK; c++) {
        const char *str = vtmem_status_str((vtmem_status)c);
        g_assert_nonnull(str);
        g_assert_cmpstr(str, !=, "unknown status");
    }
    g_assert_cmpstr(vtmem_status_str((vtmem_status)42), ==, "unknown status");

    /* zpool rejects NULL and sizes out of range */
    VtmemZhandle h;
    g_assert_cmpint(vtmem_zpool_alloc(NULL, 10, &h), ==, VTMEM_ERR_INVAL);
    g_assert_null(vtmem_zpool_new(0, NULL));
    vtmem_zpool_destroy(NULL);
    vtmem_store_free(s);
}

/* Metadata per stored page for a realistic mix stays small. */
static void test_metadata(void)
{
    const unsigned n = 20000;  /* not scaled: fixed tables amortise */
    VtmemStore *s = vtmem_store_new(n, UINT64_MAX);
    unsigned char page[PAGE];

    for (unsigned i = 0; i < n; i++) {
        /* Compressible, non-same-filled: the costly case for metadata. */
        make_page(i % 2 ? KIND_TEXT : KIND_PARTIAL, i, page);
        g_assert_cmpint(vtmem_store_put(s, i, page), ==, VTMEM_OK);
    }
    VtmemStoreStats st = stats_of(s);
    double per_page = (double)st.metadata_bytes / st.stored_pages;
    g_test_message("metadata %.2f bytes per stored page", per_page);
    g_assert_cmpfloat(per_page, <=, 16.0);
    vtmem_store_free(s);
}

int main(int argc, char **argv)
{
    const char *env = getenv("VTMEM_TEST_SCALE");
    const char *preload = getenv("LD_PRELOAD");

    if (env) {
        scale_pct = (unsigned)g_ascii_strtoull(env, NULL, 0);
    } else if (preload && strstr(preload, "vgpreload")) {
        scale_pct = 25;  /* under valgrind: same checks, fewer rounds */
    }
    under_tool = preload && strstr(preload, "vgpreload");
#ifdef VTMEM_UNDER_ASAN
    under_tool = true;
#endif
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/store/new-free", test_new_free);
    g_test_add_func("/store/same-filled", test_same_filled);
    g_test_add_func("/store/kinds", test_kinds);
    g_test_add_func("/store/lengths", test_lengths);
    g_test_add_func("/store/replace", test_replace);
    g_test_add_func("/store/replace-in-place", test_replace_in_place);
    g_test_add_func("/store/iterate", test_iterate);
    g_test_add_func("/store/limit", test_limit);
    g_test_add_func("/store/refused-put-metadata",
                    test_refused_put_metadata);
    g_test_add_func("/store/compact", test_compact);
    g_test_add_func("/store/compact-step", test_compact_step);
    g_test_add_func("/store/model", test_model);
    g_test_add_func("/store/model-compacting", test_model_compacting);
    g_test_add_func("/store/rss/one-thread", test_rss_one_thread);
    g_test_add_func("/store/rss/six-threads", test_rss_six_threads);
    g_test_add_func("/store/rss/smaps", test_rss_smaps);
    g_test_add_func("/store/huge-table", test_huge_table);
    g_test_add_func("/store/metadata", test_metadata);
    g_test_add_func("/store/threads/disjoint", test_threads_disjoint);
    g_test_add_func("/store/threads/overlap", test_threads_overlap);
    g_test_add_func("/store/bad-input", test_bad_input);
    g_test_add_func("/zpool/sizes", test_zpool_sizes);
    return g_test_run();
}
