/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the store's dirty log and the migration stream
 * (host-pool/store/vtmem-stream.h): round trips compared byte for byte,
 * writer threads against a harvester, and malformed streams.
 *
 * VTMEM_TEST_SEED=N reruns a randomised test; VTMEM_TEST_SCALE (percent)
 * scales the concurrency test's length, never its checks.
 */
#include <glib.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "test-seed.h"
#include "vtmem-store.h"
#include "vtmem-stream.h"

#define PAGE VTMEM_STORE_PAGE_SIZE
/* More than one slot-table leaf (253440 slots) and dirty-log leaf. */
#define BIG_SLOTS 300000u

static unsigned scale_pct = 100;

/*
 * Page content from (slot, version): zero, one word, compressible text,
 * random (stored raw) or half text half random, by (slot + version) % 5.
 */
static void make_page(uint8_t *p, uint64_t slot, uint32_t version)
{
    GRand *r = g_rand_new_with_seed((guint32)(slot * 2654435761u) ^ version);
    unsigned kind = (unsigned)((slot + version) % 5);

    memset(p, 0, PAGE);
    if (kind == 1) {
        uint64_t w = slot << 20 | version | 1;
        for (unsigned i = 0; i < PAGE; i += 8) {
            memcpy(p + i, &w, 8);
        }
    } else if (kind >= 2) {
        for (unsigned i = 0; i < PAGE; i++) {
            p[i] = kind == 3 || (kind == 4 && i >= PAGE / 2)
                   ? (uint8_t)g_rand_int(r)
                   : (uint8_t)("swap page slot "[i % 15] + (version & 7));
        }
    }
    g_rand_free(r);
}

/* Both stores hold the same objects, as stored, in every slot. */
static void assert_same_stores(VtmemStore *a, VtmemStore *b)
{
    static uint8_t pa[PAGE], pb[PAGE];
    uint64_t n = vtmem_store_nr_slots(a);

    g_assert_cmpuint(n, ==, vtmem_store_nr_slots(b));
    for (uint64_t s = 0; s < n; s++) {
        VtmemStoreObj oa, ob;

        g_assert_cmpint(vtmem_store_get_object(a, s, &oa, pa), ==, VTMEM_OK);
        g_assert_cmpint(vtmem_store_get_object(b, s, &ob, pb), ==, VTMEM_OK);
        if (oa.kind != ob.kind || oa.len != ob.len || oa.word != ob.word ||
            memcmp(pa, pb, oa.len) != 0) {
            g_error("slot %" G_GUINT64_FORMAT ": kind %d/%d len %u/%u", s,
                    oa.kind, ob.kind, oa.len, ob.len);
        }
    }
}

static void fill(VtmemStore *st, uint64_t first, uint64_t count,
                 uint64_t step, uint32_t version)
{
    uint8_t page[PAGE];

    for (uint64_t s = first; s < first + count; s += step) {
        make_page(page, s, version);
        g_assert_cmpint(vtmem_store_put(st, s, page), ==, VTMEM_OK);
    }
}

/* ---- dirty log ---- */

static void test_dirty_log(void)
{
    VtmemStore *st = vtmem_store_new(BIG_SLOTS, UINT64_MAX);
    uint8_t page[PAGE], buf[PAGE];
    uint64_t cursor = 0, slot, seen = 0;
    VtmemStoreObj obj;

    fill(st, 0, 2000, 1, 0);
    fill(st, BIG_SLOTS - 10, 10, 1, 0);
    g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf),
                    ==, VTMEM_ERR_INVAL);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 0);
    g_assert_cmpint(vtmem_store_dirty_start(st), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_dirty_start(st), ==, VTMEM_ERR_INVAL);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 2010);
    /* Harvest all: increasing order, each as stored, bit cleared. */
    while (vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf) ==
           VTMEM_OK) {
        VtmemStoreObj want;
        static uint8_t wbuf[PAGE];

        g_assert_cmpuint(slot, ==, seen < 2000 ? seen
                                               : BIG_SLOTS - 10 + seen - 2000);
        g_assert_cmpint(vtmem_store_get_object(st, slot, &want, wbuf), ==,
                        VTMEM_OK);
        g_assert_cmpint(obj.kind, ==, want.kind);
        g_assert_cmpmem(buf, obj.len, wbuf, want.len);
        seen++;
    }
    g_assert_cmpuint(seen, ==, 2010);
    g_assert_cmpuint(cursor, ==, BIG_SLOTS);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 0);

    /* Each kind of change marks its slot, once. */
    make_page(page, 5, 3);
    g_assert_cmpint(vtmem_store_put(st, 5, page), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_put(st, 5, page), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_invalidate(st, 7), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_invalidate(st, 7), ==, VTMEM_ERR_NOENT);
    g_assert_cmpint(vtmem_store_invalidate_range(st, 100, 3, NULL), ==,
                    VTMEM_OK);
    g_assert_cmpint(vtmem_store_put(st, 250000, page), ==, VTMEM_OK);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 6);
    cursor = 0;
    g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf),
                    ==, VTMEM_OK);
    g_assert_cmpuint(slot, ==, 5);
    g_assert_cmpint(obj.kind, !=, VTMEM_OBJ_EMPTY);
    g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf),
                    ==, VTMEM_OK);
    g_assert_cmpuint(slot, ==, 7);
    g_assert_cmpint(obj.kind, ==, VTMEM_OBJ_EMPTY);
    /* A change behind the cursor is found by the next round. */
    g_assert_cmpint(vtmem_store_invalidate(st, 1), ==, VTMEM_OK);
    for (unsigned k = 0; k < 4; k++) {
        g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj,
                                               buf), ==, VTMEM_OK);
    }
    g_assert_cmpuint(slot, ==, 250000);
    g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf),
                    ==, VTMEM_ERR_NOENT);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 1);
    cursor = 0;
    g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf),
                    ==, VTMEM_OK);
    g_assert_cmpuint(slot, ==, 1);
    /* A replacement in place (same size class) marks too. */
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 0);
    g_assert_cmpint(vtmem_store_put(st, 5, page), ==, VTMEM_OK);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 1);
    g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf),
                    ==, VTMEM_OK);
    g_assert_cmpuint(slot, ==, 5);

    /* invalidate_all marks every slot that held data. */
    vtmem_store_invalidate_all(st);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 2010 - 5 + 1);
    vtmem_store_dirty_stop(st);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 0);
    g_assert_cmpint(vtmem_store_dirty_next(st, &cursor, &slot, &obj, buf),
                    ==, VTMEM_ERR_INVAL);
    /* A second log starts clean. */
    g_assert_cmpint(vtmem_store_dirty_start(st), ==, VTMEM_OK);
    g_assert_cmpuint(vtmem_store_dirty_count(st), ==, 0);
    vtmem_store_free(st);  /* stops the log */
}

static void test_put_object(void)
{
    VtmemStore *a = vtmem_store_new(64, UINT64_MAX);
    VtmemStore *b = vtmem_store_new(64, 1);  /* refuses every put */
    uint8_t page[PAGE], buf[PAGE], out[PAGE];
    VtmemStoreObj obj = { .kind = VTMEM_OBJ_LZ4, .len = 0 };

    g_assert_cmpint(vtmem_store_put_object(a, 0, &obj, buf), ==,
                    VTMEM_ERR_INVAL);
    obj.len = VTMEM_STORE_LZ4_MAX + 1;
    g_assert_cmpint(vtmem_store_put_object(a, 0, &obj, buf), ==,
                    VTMEM_ERR_INVAL);
    obj = (VtmemStoreObj){ .kind = VTMEM_OBJ_RAW, .len = PAGE - 1 };
    g_assert_cmpint(vtmem_store_put_object(a, 0, &obj, buf), ==,
                    VTMEM_ERR_INVAL);
    obj = (VtmemStoreObj){ .kind = 9, .len = 1 };
    g_assert_cmpint(vtmem_store_put_object(a, 0, &obj, buf), ==,
                    VTMEM_ERR_INVAL);
    obj = (VtmemStoreObj){ .kind = VTMEM_OBJ_RAW, .len = PAGE };
    g_assert_cmpint(vtmem_store_put_object(a, 64, &obj, buf), ==,
                    VTMEM_ERR_RANGE);
    g_assert_cmpint(vtmem_store_put_object(a, 0, NULL, buf), ==,
                    VTMEM_ERR_INVAL);
    /* Copy each kind a -> b: b's limit applies unless unlimited. */
    for (uint64_t s = 0; s < 5; s++) {
        make_page(page, s, 0);
        g_assert_cmpint(vtmem_store_put(a, s, page), ==, VTMEM_OK);
        g_assert_cmpint(vtmem_store_get_object(a, s, &obj, buf), ==,
                        VTMEM_OK);
        g_assert_cmpint(vtmem_store_put_object(b, s, &obj, buf), ==,
                        VTMEM_ERR_NOSPACE);
        vtmem_store_set_unlimited(b, true);
        g_assert_cmpint(vtmem_store_put_object(b, s, &obj, buf), ==,
                        VTMEM_OK);
        vtmem_store_set_unlimited(b, false);
        g_assert_cmpint(vtmem_store_get(b, s, out), ==, VTMEM_OK);
        g_assert_cmpmem(out, PAGE, page, PAGE);
    }
    obj.kind = VTMEM_OBJ_EMPTY;
    g_assert_cmpint(vtmem_store_put_object(b, 3, &obj, NULL), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_put_object(b, 3, &obj, NULL), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_get(b, 3, out), ==, VTMEM_ERR_NOENT);
    vtmem_store_free(a);
    vtmem_store_free(b);
}

/* ---- round trip ---- */

static void test_round_trip(void)
{
    VtmemStore *src = vtmem_store_new(BIG_SLOTS, UINT64_MAX);
    VtmemStore *dst = vtmem_store_new(BIG_SLOTS, 4 * PAGE);
    GByteArray *out = g_byte_array_new();
    VtmemStoreStats before, after;
    GError *err = NULL;
    VtmemStreamSaver *sv;
    uint8_t page[PAGE];
    int r, rounds = 0;

    fill(src, 0, 3000, 1, 0);
    fill(src, 200000, 60000, 7, 0);
    vtmem_store_get_stats(src, &before);
    g_assert_cmpuint(before.same_filled_pages, >, 0);
    g_assert_cmpuint(before.raw_pages, >, 0);
    g_assert_cmpuint(before.compressed_bytes, >, 0);

    sv = vtmem_stream_save_begin(src, vtmem_stream_write_byte_array, out,
                                 &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vtmem_stream_save_pending(sv), >, 0);
    r = vtmem_stream_save_iterate(sv, 256 * 1024, &err);
    g_assert_no_error(err);
    g_assert_cmpint(r, ==, 0);
    /* Changes during the migration: new, replaced, emptied (a run). */
    make_page(page, 1, 9);
    g_assert_cmpint(vtmem_store_put(src, 1, page), ==, VTMEM_OK);
    g_assert_cmpint(vtmem_store_invalidate_range(src, 10, 500, NULL), ==,
                    VTMEM_OK);
    fill(src, 290000, 100, 1, 4);
    do {
        r = vtmem_stream_save_iterate(sv, 256 * 1024, &err);
        g_assert_no_error(err);
        g_assert_cmpint(r, >=, 0);
        rounds++;
    } while (r == 0);
    g_assert_cmpint(rounds, >, 1);
    g_assert_cmpuint(vtmem_stream_save_pending(sv), ==, 0);
    g_assert_cmpint(vtmem_store_invalidate(src, 2), ==, VTMEM_OK);
    g_assert_true(vtmem_stream_save_complete(sv, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(vtmem_stream_save_bytes(sv), ==, out->len);
    vtmem_stream_save_end(sv);

    g_assert_true(vtmem_stream_load_bytes(dst, out->data, out->len, &err));
    g_assert_no_error(err);
    assert_same_stores(src, dst);
    /* Harvesting never changed the source (counters: none but gets). */
    vtmem_store_get_stats(src, &after);
    g_assert_cmpuint(after.puts, ==, before.puts + 1 + 100);
    g_assert_cmpuint(after.stored_pages, ==, before.stored_pages + 100 - 501);
    /* The destination loaded beyond its limit, which applies again. */
    g_assert_cmpuint(vtmem_store_memory_held(dst), >, 4 * PAGE);
    make_page(page, 3, 1);
    g_assert_cmpint(vtmem_store_put(dst, 5, page), ==, VTMEM_ERR_NOSPACE);

    /* A second migration of the same source into a fresh store. */
    VtmemStore *dst2 = vtmem_store_new(BIG_SLOTS, UINT64_MAX);
    g_byte_array_set_size(out, 0);
    sv = vtmem_stream_save_begin(src, vtmem_stream_write_byte_array, out,
                                 &err);
    g_assert_true(vtmem_stream_save_complete(sv, &err));
    vtmem_stream_save_end(sv);
    g_assert_true(vtmem_stream_load_bytes(dst2, out->data, out->len, &err));
    g_assert_no_error(err);
    assert_same_stores(src, dst2);

    vtmem_store_free(dst2);
    g_byte_array_free(out, TRUE);
    vtmem_store_free(src);
    vtmem_store_free(dst);
}

/* ---- writers against a harvester ---- */

#define CONC_SLOTS 20000u
#define NR_WRITERS 3

typedef struct Writer {
    VtmemStore *store;
    guint32 seed;
    gint *stop;
    uint64_t ops;
} Writer;

static gpointer writer_run(gpointer opaque)
{
    Writer *w = opaque;
    GRand *r = g_rand_new_with_seed(w->seed);
    uint8_t page[PAGE];

    while (!g_atomic_int_get(w->stop)) {
        uint64_t slot = g_rand_int_range(r, 0, CONC_SLOTS);
        unsigned op = g_rand_int_range(r, 0, 100);

        if (op < 70) {
            make_page(page, slot, g_rand_int(r));
            vtmem_store_put(w->store, slot, page);
        } else if (op < 95) {
            vtmem_store_invalidate(w->store, slot);
        } else if (op == 99 && g_rand_int_range(r, 0, 50) == 0) {
            vtmem_store_invalidate_all(w->store);  /* a guest reset */
        } else {
            uint64_t n = MIN(CONC_SLOTS - slot,
                             (uint64_t)g_rand_int_range(r, 1, 600));
            vtmem_store_invalidate_range(w->store, slot, n, NULL);
        }
        w->ops++;
    }
    g_rand_free(r);
    return NULL;
}

/* Compaction moves objects while they are harvested. */
static gpointer compactor_run(gpointer opaque)
{
    Writer *w = opaque;

    while (!g_atomic_int_get(w->stop)) {
        vtmem_store_compact_step(w->store, 256, NULL);
        w->ops++;
        g_usleep(100);
    }
    return NULL;
}

static void test_concurrent(void)
{
    VtmemStore *src = vtmem_store_new(CONC_SLOTS, UINT64_MAX);
    VtmemStore *dst = vtmem_store_new(CONC_SLOTS, UINT64_MAX);
    guint32 seed = test_seed();
    Writer w[NR_WRITERS + 1];
    GThread *t[NR_WRITERS + 1];
    gint stop = 0;
    GByteArray *out = g_byte_array_new();
    VtmemStreamBuf in = { 0 };
    VtmemStreamLoader *ld;
    VtmemStreamSaver *sv;
    GError *err = NULL;
    unsigned iters = 200 * scale_pct / 100 + 1, sections = 0;
    uint64_t ops = 0;

    fill(src, 0, CONC_SLOTS, 3, 0);
    sv = vtmem_stream_save_begin(src, vtmem_stream_write_byte_array, out,
                                 &err);
    g_assert_no_error(err);
    ld = vtmem_stream_load_begin(dst, vtmem_stream_read_buf, &in);
    for (unsigned i = 0; i <= NR_WRITERS; i++) {
        w[i] = (Writer){ .store = src, .seed = seed + i, .stop = &stop };
        t[i] = i < NR_WRITERS ? g_thread_new("writer", writer_run, &w[i])
                              : g_thread_new("compactor", compactor_run,
                                             &w[i]);
    }
    /* Sections are loaded as they are made, as on a live migration. */
    for (int r = 0; r == 0 || sections < iters;) {
        /* The header section, written by begin, goes with the first. */
        r = vtmem_stream_save_iterate(sv, 64 * 1024, &err);
        g_assert_no_error(err);
        in = (VtmemStreamBuf){ .data = out->data, .len = out->len };
        for (unsigned k = sections ? 1 : 2; k > 0; k--) {
            int lr = vtmem_stream_load_section(ld, &err);
            g_assert_no_error(err);
            g_assert_cmpint(lr, ==, 0);
        }
        g_assert_cmpuint(in.pos, ==, in.len);
        g_byte_array_set_size(out, 0);
        sections++;
    }
    g_atomic_int_set(&stop, 1);
    for (unsigned i = 0; i <= NR_WRITERS; i++) {
        g_thread_join(t[i]);
        ops += i < NR_WRITERS ? w[i].ops : 0;
    }
    g_assert_true(vtmem_stream_save_complete(sv, &err));
    in = (VtmemStreamBuf){ .data = out->data, .len = out->len };
    g_assert_cmpint(vtmem_stream_load_section(ld, &err), ==, 1);
    g_assert_no_error(err);
    g_assert_cmpuint(in.pos, ==, in.len);
    g_assert_true(vtmem_stream_load_end(ld));
    vtmem_stream_save_end(sv);
    g_test_message("%" G_GUINT64_FORMAT " writer ops, %" G_GUINT64_FORMAT
                   " compaction steps, %u sections", ops,
                   w[NR_WRITERS].ops, sections);
    g_assert_cmpuint(ops, >, 0);
    assert_same_stores(src, dst);
    {
        VtmemStoreStats st;

        vtmem_store_get_stats(src, &st);
        g_test_message("%" G_GUINT64_FORMAT " objects moved by compaction",
                       st.compacted_objects);
    }
    g_byte_array_free(out, TRUE);
    vtmem_store_free(src);
    vtmem_store_free(dst);
}

/* ---- malformed streams ---- */

#define BAD_SLOTS 1000u

static void be(GByteArray *a, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0;) {
        uint8_t b = (uint8_t)(v >> (8 * i));
        g_byte_array_append(a, &b, 1);
    }
}

static void header(GByteArray *a, uint32_t version, uint32_t page,
                   uint64_t slots)
{
    g_byte_array_append(a, (const guint8 *)VTMEM_STREAM_MAGIC, 8);
    be(a, version, 4);
    be(a, page, 4);
    be(a, slots, 8);
    be(a, 12345, 8);
    be(a, VTMEM_REC_SECTION_END, 8);
}

static void rec(GByteArray *a, uint64_t slot, unsigned kind)
{
    be(a, slot << 8 | kind, 8);
}

/* An LZ4 record of page (compressed here), n bytes cut off its end. */
static void rec_lz4(GByteArray *a, uint64_t slot, const uint8_t *page,
                    int page_len)
{
    char packed[LZ4_COMPRESSBOUND(PAGE)];
    int n = LZ4_compress_default((const char *)page, packed, page_len,
                                 sizeof(packed));

    g_assert_cmpint(n, >, 0);
    g_assert_cmpint(n, <=, VTMEM_STORE_LZ4_MAX);
    rec(a, slot, VTMEM_REC_LZ4);
    be(a, (uint64_t)n, 2);
    g_byte_array_append(a, (const guint8 *)packed, (guint)n);
}

/* A small valid stream with every record kind. */
static GByteArray *valid_stream(void)
{
    GByteArray *a = g_byte_array_new();
    uint8_t page[PAGE];

    header(a, VTMEM_STREAM_VERSION, PAGE, BAD_SLOTS);
    make_page(page, 2, 0);  /* text */
    rec_lz4(a, 2, page, PAGE);
    rec(a, 1, VTMEM_REC_SAME);
    be(a, 0x0123456789abcdefu, 8);
    rec(a, 0, VTMEM_REC_SECTION_END);
    make_page(page, 3, 0);  /* random */
    rec(a, 3, VTMEM_REC_RAW);
    g_byte_array_append(a, page, PAGE);
    rec(a, 1, VTMEM_REC_EMPTY);
    be(a, 1, 4);
    rec(a, BAD_SLOTS - 1, VTMEM_REC_SAME);
    be(a, 0, 8);
    rec(a, 0, VTMEM_REC_END);
    return a;
}

/* Loading a fails with code; the destination is left empty. */
static void expect_reject(VtmemStore *dst, GByteArray *a, int code,
                          const char *why)
{
    GError *err = NULL;
    VtmemStoreStats s;

    if (vtmem_stream_load_bytes(dst, a->data, a->len, &err)) {
        g_error("accepted: %s", why);
    }
    g_assert_nonnull(err);
    if (code >= 0) {
        g_assert_error(err, VTMEM_STREAM_ERROR, code);
    }
    g_test_message("%s: %s", why, err->message);
    g_error_free(err);
    vtmem_store_get_stats(dst, &s);
    g_assert_cmpuint(s.stored_pages, ==, 0);
}

static void test_valid_small(void)
{
    VtmemStore *dst = vtmem_store_new(BAD_SLOTS, UINT64_MAX);
    GByteArray *a = valid_stream();
    GError *err = NULL;
    uint8_t page[PAGE], out[PAGE];

    g_assert_true(vtmem_stream_load_bytes(dst, a->data, a->len, &err));
    g_assert_no_error(err);
    for (uint64_t s = 2; s <= 3; s++) {
        make_page(page, s, 0);
        g_assert_cmpint(vtmem_store_get(dst, s, out), ==, VTMEM_OK);
        g_assert_cmpmem(out, PAGE, page, PAGE);
    }
    g_assert_cmpint(vtmem_store_get(dst, 1, out), ==, VTMEM_ERR_NOENT);
    g_assert_cmpint(vtmem_store_get(dst, BAD_SLOTS - 1, out), ==, VTMEM_OK);
    /* Loading into a store that is not empty: refused and emptied. */
    expect_reject(dst, a, VTMEM_STREAM_ERR_STORE, "destination not empty");
    g_byte_array_free(a, TRUE);
    vtmem_store_free(dst);
}

static void test_truncated(void)
{
    VtmemStore *dst = vtmem_store_new(BAD_SLOTS, UINT64_MAX);
    GByteArray *a = valid_stream();
    guint full = a->len;

    /* Every prefix fails, quietly enough for thousands of cases. */
    for (guint n = 0; n < full; n++) {
        GError *err = NULL;
        VtmemStoreStats s;

        g_assert_false(vtmem_stream_load_bytes(dst, a->data, n, &err));
        g_assert_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_IO);
        g_error_free(err);
        vtmem_store_get_stats(dst, &s);
        g_assert_cmpuint(s.stored_pages, ==, 0);
    }
    g_byte_array_append(a, (const guint8 *)"", 1);
    expect_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "a byte after the end");
    g_byte_array_free(a, TRUE);
    vtmem_store_free(dst);
}

/* One valid record, then the bad thing, then END. */
static GByteArray *with_prefix(void)
{
    GByteArray *a = g_byte_array_new();

    header(a, VTMEM_STREAM_VERSION, PAGE, BAD_SLOTS);
    rec(a, 4, VTMEM_REC_SAME);
    be(a, 7, 8);
    return a;
}

static void finish_reject(VtmemStore *dst, GByteArray *a, int code,
                          const char *why)
{
    rec(a, 0, VTMEM_REC_END);
    expect_reject(dst, a, code, why);
    g_byte_array_free(a, TRUE);
}

static void test_malformed(void)
{
    VtmemStore *dst = vtmem_store_new(BAD_SLOTS, UINT64_MAX);
    uint8_t page[PAGE];
    GByteArray *a;

    a = g_byte_array_new();
    header(a, VTMEM_STREAM_VERSION, PAGE, BAD_SLOTS);
    a->data[0] = 'X';
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "bad magic");
    a = g_byte_array_new();
    header(a, VTMEM_STREAM_VERSION + 1, PAGE, BAD_SLOTS);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "bad version");
    a = g_byte_array_new();
    header(a, VTMEM_STREAM_VERSION, 2 * PAGE, BAD_SLOTS);
    finish_reject(dst, a, VTMEM_STREAM_ERR_MISMATCH, "bad page size");
    a = g_byte_array_new();
    header(a, VTMEM_STREAM_VERSION, PAGE, BAD_SLOTS + 1);
    finish_reject(dst, a, VTMEM_STREAM_ERR_MISMATCH, "bad slot count");

    a = with_prefix();
    rec(a, BAD_SLOTS, VTMEM_REC_SAME);
    be(a, 1, 8);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "slot out of range");
    a = with_prefix();
    rec(a, UINT64_C(1) << 55, VTMEM_REC_RAW);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "huge slot");
    a = with_prefix();
    rec(a, 5, 0x05);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "unknown kind");
    a = with_prefix();
    rec(a, 0, 0x00);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "kind 0");
    a = with_prefix();
    rec(a, 3, VTMEM_REC_SECTION_END);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "end with a slot");
    a = with_prefix();
    rec(a, 5, VTMEM_REC_EMPTY);
    be(a, 0, 4);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "empty run of 0");
    a = with_prefix();
    rec(a, 5, VTMEM_REC_EMPTY);
    be(a, BAD_SLOTS - 4, 4);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "empty run too long");
    a = with_prefix();
    rec(a, 5, VTMEM_REC_LZ4);
    be(a, 0, 2);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "LZ4 length 0");
    a = with_prefix();
    rec(a, 5, VTMEM_REC_LZ4);
    be(a, VTMEM_STORE_LZ4_MAX + 1, 2);
    g_byte_array_set_size(a, a->len + VTMEM_STORE_LZ4_MAX + 1);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "LZ4 too long");

    make_page(page, 2, 0);
    a = with_prefix();
    rec_lz4(a, 5, page, PAGE - 1);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "LZ4 to 4095 bytes");
    a = with_prefix();
    rec_lz4(a, 5, page, PAGE / 2);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "LZ4 to half a page");
    a = with_prefix();
    rec_lz4(a, 5, page, PAGE);
    a->data[a->len - 1] ^= 0xff;  /* last literal run broken */
    a->data[a->len - 20] ^= 0x5a;
    rec(a, 0, VTMEM_REC_END);
    {
        /* Damage might still decode to a page: then no rejection. */
        GError *err = NULL;
        if (vtmem_stream_load_bytes(dst, a->data, a->len, &err)) {
            vtmem_store_invalidate_all(dst);
        } else {
            g_assert_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_FORMAT);
            g_error_free(err);
        }
    }
    g_byte_array_free(a, TRUE);
    a = with_prefix();
    rec(a, 5, VTMEM_REC_LZ4);
    be(a, 100, 2);
    memset(page, 0xff, 100);  /* a literal length never ending */
    g_byte_array_append(a, page, 100);
    finish_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "LZ4 garbage");
    a = with_prefix();
    rec(a, 0, VTMEM_REC_END);
    rec(a, 5, VTMEM_REC_SAME);
    be(a, 1, 8);
    expect_reject(dst, a, VTMEM_STREAM_ERR_FORMAT, "records after END");
    g_byte_array_free(a, TRUE);
    a = g_byte_array_new();
    expect_reject(dst, a, VTMEM_STREAM_ERR_IO, "empty stream");
    g_byte_array_free(a, TRUE);

    /* The loader keeps failing after an error; the store is emptied. */
    {
        GByteArray *bad = with_prefix();
        VtmemStreamBuf in;
        VtmemStreamLoader *ld;
        GError *err = NULL;

        rec(bad, 0, 0x77);
        in = (VtmemStreamBuf){ .data = bad->data, .len = bad->len };
        ld = vtmem_stream_load_begin(dst, vtmem_stream_read_buf, &in);
        g_assert_cmpint(vtmem_stream_load_section(ld, &err), ==, 0);
        g_assert_no_error(err);
        g_assert_cmpuint(vtmem_stream_load_source_held(ld), ==, 12345);
        g_assert_cmpint(vtmem_stream_load_section(ld, &err), ==, -1);
        g_clear_error(&err);
        g_assert_cmpint(vtmem_stream_load_section(ld, &err), ==, -1);
        g_clear_error(&err);
        g_assert_cmpint(vtmem_store_get(dst, 4, page), ==, VTMEM_OK);
        g_assert_false(vtmem_stream_load_end(ld));
        g_assert_cmpint(vtmem_store_get(dst, 4, page), ==, VTMEM_ERR_NOENT);
        g_byte_array_free(bad, TRUE);
    }
    vtmem_store_free(dst);
}

/* A write function failing after a number of bytes. */
static bool write_fails(void *opaque, const void *buf, size_t len)
{
    size_t *left = opaque;

    (void)buf;
    if (*left < len) {
        return false;
    }
    *left -= len;
    return true;
}

static void test_write_error(void)
{
    VtmemStore *src = vtmem_store_new(BAD_SLOTS, UINT64_MAX);
    VtmemStoreStats before, after;
    GError *err = NULL;
    size_t left = 10;
    VtmemStreamSaver *sv;

    fill(src, 0, 50, 1, 0);
    vtmem_store_get_stats(src, &before);
    sv = vtmem_stream_save_begin(src, write_fails, &left, &err);
    g_assert_null(sv);
    g_assert_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_IO);
    g_clear_error(&err);
    g_assert_cmpuint(vtmem_store_dirty_count(src), ==, 0);
    left = 5000;
    sv = vtmem_stream_save_begin(src, write_fails, &left, &err);
    g_assert_no_error(err);
    g_assert_false(vtmem_stream_save_complete(sv, &err));
    g_assert_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_IO);
    g_clear_error(&err);
    vtmem_stream_save_end(sv);
    /* The source is untouched and can migrate again. */
    vtmem_store_get_stats(src, &after);
    g_assert_cmpuint(after.stored_pages, ==, before.stored_pages);
    g_assert_cmpuint(after.compressed_bytes, ==, before.compressed_bytes);
    g_assert_cmpint(vtmem_store_dirty_start(src), ==, VTMEM_OK);
    vtmem_store_free(src);
}

int main(int argc, char **argv)
{
    const char *scale = getenv("VTMEM_TEST_SCALE");

    if (scale) {
        scale_pct = (unsigned)g_ascii_strtoull(scale, NULL, 10);
    }
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/stream/dirty-log", test_dirty_log);
    g_test_add_func("/stream/put-object", test_put_object);
    g_test_add_func("/stream/round-trip", test_round_trip);
    g_test_add_func("/stream/concurrent", test_concurrent);
    g_test_add_func("/stream/valid-small", test_valid_small);
    g_test_add_func("/stream/truncated", test_truncated);
    g_test_add_func("/stream/malformed", test_malformed);
    g_test_add_func("/stream/write-error", test_write_error);
    return g_test_run();
}
