/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness: the page store API (vtmem-store.h) as a sequence of
 * operations, checked against a model that keeps a copy of every page.
 *
 * Input: one byte of configuration (bits 0-1: slot count 64, 1000, 3000
 * or 600000, the last one across two slot-table leaves; bits 2-4: the
 * starting limit), then operations until the input ends: an opcode byte
 * and its arguments (a slot is a little-endian u16: modulo nr_slots + 1
 * for the small stores, times 10 for the large one, so that out-of-range
 * slots come up too). Missing bytes read as 0.
 *
 * Checked: every get and every object copied out (get_object, dirty_next,
 * iterate) byte for byte against the model, every status, and after each
 * operation the statistics (pages stored, same-filled, raw, payload bytes,
 * counters, limit), the dirty count, memory_held within the limit unless
 * unlimited or lowered below usage, and that a put is never refused while
 * the limit leaves room for its worst case. A store per input:
 * LeakSanitizer does not scan the store's own mappings.
 * VTMEM_FUZZ_TRACE=1 prints the operations (to turn a finding into a test).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>
#include <lz4.h>

#include "fuzz.h"
#include "../unit/test-seed.h"
#include "vtmem-store.h"

#define PAGE VTMEM_STORE_PAGE_SIZE
/*
 * Most a put can add to memory_held: a zspage (8 pages), a slot-table
 * chunk (a page) and leaf, a zspage directory segment (16 KiB) and region
 * tables; generous, so that a refusal with this much room is a bug.
 */
#define PUT_WORST (256 * 1024)
/*
 * What a refused put may keep of the metadata it made on the way, within
 * the limit (vtmem-store.h): a slot-table leaf (4112 bytes), a zspage
 * directory segment (16 KiB) and a page of the directory's top level, a
 * grown region table.
 */
#define REFUSED_KEPT (32 * 1024)

/*
 * Page generation and the checks are the harness's code, not the
 * store's: no coverage feedback from them (it cost a third of the time).
 */
#define NO_COVERAGE __attribute__((no_sanitize("coverage")))

#define CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "fuzz-store: %s:%d: check failed: %s\n", \
                    __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

enum { OP_PUT, OP_GET, OP_INVALIDATE, OP_RANGE, OP_ALL, OP_LIMIT,
       OP_UNLIMITED, OP_COMPACT, OP_COMPACT_STEP, OP_GET_OBJECT,
       OP_PUT_OBJECT, OP_DIRTY_START, OP_DIRTY_STOP, OP_DIRTY_NEXT,
       OP_ITERATE, NR_OPS };

static const char *const op_names[NR_OPS] = {
    "put", "get", "invalidate", "range", "all", "limit", "unlimited",
    "compact", "compact-step", "get-object", "put-object", "dirty-start",
    "dirty-stop", "dirty-next", "iterate",
};

/* How the store holds a page, as far as the model knows it. */
enum { HELD_SAME, HELD_PACKED, HELD_LZ4, HELD_RAW };

typedef struct ModelPage {
    uint8_t data[PAGE];
    int held;       /* HELD_PACKED: put chose LZ4 or raw, not known which */
} ModelPage;

typedef struct Fuzz {
    const uint8_t *in;
    size_t len, pos;
    VtmemStore *store;
    uint64_t nr_slots;
    GHashTable *pages;          /* slot -> ModelPage */
    GTree *dirty;               /* dirty slots, while logging */
    bool logging, unlimited, bounded;
    uint64_t limit, cursor;
    uint64_t puts, gets, invalidations, refusals;
    uint64_t held[4];           /* model pages by HELD_* */
    VtmemStoreObj clip;         /* the last object copied out */
    uint8_t clip_data[PAGE], clip_page[PAGE];
    bool trace;
} Fuzz;

static uint8_t next8(Fuzz *f)
{
    return f->pos < f->len ? f->in[f->pos++] : 0;
}

static uint16_t next16(Fuzz *f)
{
    uint16_t lo = next8(f);

    return lo | (uint16_t)(next8(f) << 8);
}

static uint64_t next_slot(Fuzz *f)
{
    uint16_t v = next16(f);

    return f->nr_slots > 65536 ? (uint64_t)v * 10 : v % (f->nr_slots + 1);
}

/* A page of a kind chosen by the input: its next bytes say which. */
static NO_COVERAGE void make_page(Fuzz *f, uint8_t *page)
{
    static const char *const words[] = {
        "swap", "page", "slot", "guest", "host", "memory", "the", "of",
    };
    uint8_t kind = next8(f);
    uint64_t r = mix64(next16(f) + 1), word;
    size_t n, pos;

    switch (kind % 6) {
    case 0:                             /* zeros */
        memset(page, 0, PAGE);
        break;
    case 1:                             /* one word repeated */
        word = r;
        for (pos = 0; pos < PAGE; pos += 8) {
            memcpy(page + pos, &word, 8);
        }
        break;
    case 2:                             /* text: compresses well */
        for (pos = 0; pos < PAGE;) {
            r = mix64(r);
            const char *w = words[r % G_N_ELEMENTS(words)];
            n = MIN(strlen(w), PAGE - pos);
            memcpy(page + pos, w, n);
            pos += n;
            if (pos < PAGE) {
                page[pos++] = (r >> 8) & 1 ? ' ' : '\n';
            }
        }
        break;
    case 3:                             /* random prefix, then zeros */
    case 4:                             /* random: does not compress */
        n = kind % 6 == 4 ? PAGE : r % PAGE;
        memset(page, 0, PAGE);
        for (pos = 0; pos < n; pos += 8) {
            r = mix64(r + pos);
            memcpy(page + pos, &r, MIN(8, n - pos));
        }
        break;
    default: {                          /* a pattern from the input */
        uint8_t pat[16];
        size_t plen = next8(f) % 16 + 1;

        for (pos = 0; pos < plen; pos++) {
            pat[pos] = next8(f);
        }
        for (pos = 0; pos < PAGE; pos++) {
            page[pos] = pat[pos % plen];
        }
        /* a byte flipped somewhere, or not */
        page[(r >> 8) % PAGE] ^= (uint8_t)(r & (kind & 0x80 ? 0xff : 0));
        break;
    }
    }
}

/* Independent of vtmem-page.c: is the page one 8-byte word repeated? */
static NO_COVERAGE bool same_filled(const uint8_t *page)
{
    for (size_t pos = 8; pos < PAGE; pos += 8) {
        if (memcmp(page, page + pos, 8)) {
            return false;
        }
    }
    return true;
}

static ModelPage *model_get(Fuzz *f, uint64_t slot)
{
    return g_hash_table_lookup(f->pages, GSIZE_TO_POINTER(slot));
}

static void model_mark(Fuzz *f, uint64_t slot)
{
    if (f->logging) {
        g_tree_insert(f->dirty, GSIZE_TO_POINTER(slot), GINT_TO_POINTER(1));
    }
}

static void model_set(Fuzz *f, uint64_t slot, const uint8_t *page, int held)
{
    ModelPage *m = model_get(f, slot);

    if (m) {
        f->held[m->held]--;
    } else {
        m = g_new(ModelPage, 1);
        g_hash_table_insert(f->pages, GSIZE_TO_POINTER(slot), m);
    }
    memcpy(m->data, page, PAGE);
    m->held = held;
    f->held[held]++;
    model_mark(f, slot);
}

static bool model_drop(Fuzz *f, uint64_t slot)
{
    ModelPage *m = model_get(f, slot);

    if (!m) {
        return false;
    }
    f->held[m->held]--;
    g_hash_table_remove(f->pages, GSIZE_TO_POINTER(slot));
    model_mark(f, slot);
    return true;
}

static uint64_t effective_limit(Fuzz *f)
{
    return f->unlimited ? UINT64_MAX : f->limit;
}

/* An object as stored must read back as page (the model's copy). */
static NO_COVERAGE void check_object(const VtmemStoreObj *obj,
                                     const uint8_t *data,
                                     const ModelPage *m)
{
    uint8_t out[PAGE];
    uint64_t word;

    if (!m) {
        CHECK(obj->kind == VTMEM_OBJ_EMPTY && obj->len == 0);
        return;
    }
    switch (obj->kind) {
    case VTMEM_OBJ_SAME:
        CHECK(m->held == HELD_SAME && obj->len == 0);
        word = obj->word;
        CHECK(memcmp(m->data, &word, 8) == 0 && same_filled(m->data));
        break;
    case VTMEM_OBJ_LZ4:
        CHECK(m->held == HELD_PACKED || m->held == HELD_LZ4);
        CHECK(obj->len >= 1 && obj->len <= VTMEM_STORE_LZ4_MAX);
        CHECK(LZ4_decompress_safe((const char *)data, (char *)out,
                                  (int)obj->len, PAGE) == PAGE);
        CHECK(memcmp(out, m->data, PAGE) == 0);
        break;
    case VTMEM_OBJ_RAW:
        CHECK(m->held == HELD_PACKED || m->held == HELD_RAW);
        CHECK(obj->len == PAGE && memcmp(data, m->data, PAGE) == 0);
        break;
    default:
        CHECK(!"stored slot copied out as EMPTY or an unknown kind");
    }
}

static NO_COVERAGE void check_stats(Fuzz *f)
{
    VtmemStoreStats st;
    uint64_t same = f->held[HELD_SAME], raw = f->held[HELD_RAW];
    uint64_t packed = f->held[HELD_PACKED], lz4;

    vtmem_store_get_stats(f->store, &st);
    CHECK(st.stored_pages == g_hash_table_size(f->pages));
    CHECK(st.same_filled_pages == same);
    CHECK(st.raw_pages >= raw && st.raw_pages <= raw + packed);
    CHECK(st.raw_bytes == st.raw_pages * PAGE);
    lz4 = st.stored_pages - same - st.raw_pages;
    CHECK(st.compressed_bytes >= lz4 &&
          st.compressed_bytes <= lz4 * VTMEM_STORE_LZ4_MAX);
    CHECK(st.memory_held >= st.metadata_bytes + st.compressed_bytes +
          st.raw_bytes);
    CHECK(st.memory_held == vtmem_store_memory_held(f->store));
    CHECK(vtmem_store_fragmentation(f->store) <= st.memory_held);
    CHECK(st.limit == f->limit);
    CHECK(st.puts == f->puts && st.gets == f->gets);
    CHECK(st.invalidations == f->invalidations);
    CHECK(st.refusals == f->refusals);
    if (f->logging) {   /* 0 otherwise: checked after dirty-stop */
        CHECK(vtmem_store_dirty_count(f->store) ==
              (uint64_t)g_tree_nnodes(f->dirty));
    }
    /* Only the limit's own changes may leave usage above it. */
    if (f->bounded) {
        CHECK(st.memory_held <= effective_limit(f));
    }
    f->bounded = st.memory_held <= effective_limit(f);
}

/* After a put of slot (OK or not): the store's answer against the model. */
static void put_done(Fuzz *f, uint64_t slot, vtmem_status st,
                     uint64_t held_before, const uint8_t *page, int held)
{
    uint64_t held_after;

    if (slot >= f->nr_slots) {
        CHECK(st == VTMEM_ERR_RANGE);
        CHECK(vtmem_store_memory_held(f->store) == held_before);
        return;
    }
    if (st == VTMEM_OK) {
        f->puts++;
        model_set(f, slot, page, held);
        CHECK(vtmem_store_memory_held(f->store) <= effective_limit(f));
        return;
    }
    CHECK(st == VTMEM_ERR_NOSPACE);
    if (f->trace) {
        fprintf(stderr, "refused slot %" PRIu64 ": held %" PRIu64 " -> %"
                PRIu64 ", limit %" PRIu64 "\n", slot, held_before,
                vtmem_store_memory_held(f->store), effective_limit(f));
    }
    /*
     * Refused only without room; the slot is empty; growth only by kept
     * metadata, within the limit.
     */
    CHECK(effective_limit(f) < PUT_WORST ||
          held_before > effective_limit(f) - PUT_WORST);
    held_after = vtmem_store_memory_held(f->store);
    CHECK(held_after <= held_before + REFUSED_KEPT);
    CHECK(held_after <= held_before || held_after <= effective_limit(f));
    f->refusals++;
    model_drop(f, slot);
}

static void op_put(Fuzz *f)
{
    uint64_t slot = next_slot(f);
    uint8_t page[PAGE];
    uint64_t before = vtmem_store_memory_held(f->store);

    make_page(f, page);
    put_done(f, slot, vtmem_store_put(f->store, slot, page), before, page,
             same_filled(page) ? HELD_SAME : HELD_PACKED);
}

static void op_get(Fuzz *f)
{
    uint64_t slot = next_slot(f);
    uint8_t buf[PAGE];
    vtmem_status st = vtmem_store_get(f->store, slot, buf);
    ModelPage *m = model_get(f, slot);

    if (slot >= f->nr_slots) {
        CHECK(st == VTMEM_ERR_RANGE);
    } else if (!m) {
        CHECK(st == VTMEM_ERR_NOENT);
    } else {
        CHECK(st == VTMEM_OK);
        CHECK(memcmp(buf, m->data, PAGE) == 0);
        f->gets++;
    }
}

static void op_invalidate(Fuzz *f)
{
    uint64_t slot = next_slot(f);
    vtmem_status st = vtmem_store_invalidate(f->store, slot);

    if (slot >= f->nr_slots) {
        CHECK(st == VTMEM_ERR_RANGE);
    } else if (model_drop(f, slot)) {
        CHECK(st == VTMEM_OK);
        f->invalidations++;
    } else {
        CHECK(st == VTMEM_ERR_NOENT);
    }
}

static void range_done(Fuzz *f, uint64_t first, uint64_t count)
{
    uint64_t dropped = 12345, expect = 0;
    vtmem_status st = vtmem_store_invalidate_range(f->store, first, count,
                                                   &dropped);
    GHashTableIter it;
    gpointer key;
    GArray *gone;

    if (first > f->nr_slots || count > f->nr_slots - first) {
        CHECK(st == VTMEM_ERR_RANGE && dropped == 12345);
        return;
    }
    CHECK(st == VTMEM_OK);
    gone = g_array_new(FALSE, FALSE, sizeof(uint64_t));
    g_hash_table_iter_init(&it, f->pages);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        uint64_t slot = GPOINTER_TO_SIZE(key);
        if (slot >= first && slot - first < count) {
            g_array_append_val(gone, slot);
        }
    }
    for (guint i = 0; i < gone->len; i++) {
        expect += model_drop(f, g_array_index(gone, uint64_t, i));
    }
    g_array_free(gone, TRUE);
    CHECK(dropped == expect);
    f->invalidations += expect;
}

static void op_range(Fuzz *f)
{
    uint8_t how = next8(f);
    uint64_t first = next_slot(f);
    uint64_t count = next16(f);

    if (how & 1) {
        count = UINT64_MAX - count;     /* wraps around: RANGE */
    }
    if (how & 2) {
        first = UINT64_MAX - first;
    }
    if (how & 4) {
        count *= 10;                    /* across chunks and leaves */
    }
    range_done(f, first, count);
}

static void op_all(Fuzz *f)
{
    uint64_t before = g_hash_table_size(f->pages);
    GHashTableIter it;
    gpointer key;

    g_hash_table_iter_init(&it, f->pages);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        model_mark(f, GPOINTER_TO_SIZE(key));
    }
    vtmem_store_invalidate_all(f->store);
    g_hash_table_remove_all(f->pages);
    memset(f->held, 0, sizeof(f->held));
    f->invalidations += before;
}

static void op_limit(Fuzz *f)
{
    uint8_t how = next8(f);
    uint64_t x = next16(f);
    uint64_t held = vtmem_store_memory_held(f->store);

    switch (how % 7) {
    case 0:
        f->limit = UINT64_MAX;
        break;
    case 1:
        f->limit = held / 2;            /* below usage */
        break;
    case 2:
        f->limit = held + x * 64;
        break;
    case 3:
        f->limit = held;
        break;
    case 4:
        f->limit = held > x ? held - x : 0;
        break;
    case 5:
        f->limit = x * PAGE;
        break;
    default:
        f->limit = UINT64_MAX - x;
        break;
    }
    vtmem_store_set_limit(f->store, f->limit);
}

static void op_compact(Fuzz *f, bool step)
{
    uint64_t before = vtmem_store_memory_held(f->store);
    uint64_t released = 0, budget = 0;

    if (step) {
        budget = next16(f);
        vtmem_store_compact_step(f->store, budget, &released);
    } else {
        released = vtmem_store_compact(f->store);
    }
    CHECK(released <= before);
    CHECK(vtmem_store_memory_held(f->store) == before - released);
}

static void op_get_object(Fuzz *f)
{
    uint64_t slot = next_slot(f);
    VtmemStoreObj obj;
    ModelPage *m = model_get(f, slot);
    vtmem_status st = vtmem_store_get_object(f->store, slot, &obj,
                                             f->clip_data);

    if (slot >= f->nr_slots) {
        CHECK(st == VTMEM_ERR_RANGE);
        return;
    }
    CHECK(st == VTMEM_OK);
    check_object(&obj, f->clip_data, m);
    f->clip = obj;
    if (m) {
        memcpy(f->clip_page, m->data, PAGE);
    }
}

static void op_put_object(Fuzz *f)
{
    uint64_t slot = next_slot(f);
    uint8_t how = next8(f);
    VtmemStoreObj obj = { .kind = VTMEM_OBJ_EMPTY };
    uint8_t page[PAGE], data[PAGE];
    uint64_t before = vtmem_store_memory_held(f->store);
    const uint8_t *src = data;
    int held = HELD_RAW, n;
    vtmem_status st;

    switch (how % 6) {
    case 0:                             /* the last object copied out */
        obj = f->clip;
        memcpy(data, f->clip_data, PAGE);
        memcpy(page, f->clip_page, PAGE);
        held = obj.kind == VTMEM_OBJ_SAME ? HELD_SAME :
               obj.kind == VTMEM_OBJ_LZ4 ? HELD_LZ4 : HELD_RAW;
        break;
    case 1:                             /* SAME */
        obj.kind = VTMEM_OBJ_SAME;
        obj.word = mix64(next16(f));
        for (size_t pos = 0; pos < PAGE; pos += 8) {
            memcpy(page + pos, &obj.word, 8);
        }
        held = HELD_SAME;
        break;
    case 2:                             /* LZ4, if it fits */
        make_page(f, page);
        n = LZ4_compress_default((const char *)page, (char *)data, PAGE,
                                 VTMEM_STORE_LZ4_MAX);
        if (n > 0) {
            obj.kind = VTMEM_OBJ_LZ4;
            obj.len = (uint32_t)n;
            held = HELD_LZ4;
            break;
        }
        /* fall through: incompressible, stored raw */
    case 3:                             /* RAW, even of a same-filled page */
        if (how % 6 == 3) {
            make_page(f, page);
        }
        obj.kind = VTMEM_OBJ_RAW;
        obj.len = PAGE;
        memcpy(data, page, PAGE);
        held = HELD_RAW;
        break;
    case 4:                             /* EMPTY: drops the slot */
        break;
    default: {                          /* malformed: refused */
        uint8_t kind = next8(f);
        uint16_t len = next16(f);

        obj.kind = (VtmemObjKind)(kind % 8);
        obj.len = len;
        if ((obj.kind == VTMEM_OBJ_LZ4 && len >= 1 &&
             len <= VTMEM_STORE_LZ4_MAX) ||
            (obj.kind == VTMEM_OBJ_RAW && len == PAGE) ||
            obj.kind == VTMEM_OBJ_EMPTY || obj.kind == VTMEM_OBJ_SAME) {
            src = NULL;                 /* well formed but no data */
            if (obj.kind == VTMEM_OBJ_EMPTY ||
                obj.kind == VTMEM_OBJ_SAME) {
                obj.kind = 9;
            }
        }
        memset(data, 0xa5, PAGE);
        st = vtmem_store_put_object(f->store, slot, &obj, src);
        CHECK(st == VTMEM_ERR_INVAL ||
              (slot >= f->nr_slots && st == VTMEM_ERR_RANGE));
        CHECK(vtmem_store_memory_held(f->store) == before);
        return;
    }
    }
    st = vtmem_store_put_object(f->store, slot, &obj, src);
    if (obj.kind == VTMEM_OBJ_EMPTY) {
        if (slot >= f->nr_slots) {
            CHECK(st == VTMEM_ERR_RANGE);
            return;
        }
        CHECK(st == VTMEM_OK);
        if (model_drop(f, slot)) {
            f->invalidations++;
        }
        return;
    }
    put_done(f, slot, st, before, page, held);
}

static void op_dirty(Fuzz *f, int op)
{
    VtmemStoreObj obj;
    uint8_t buf[PAGE];
    uint64_t slot = UINT64_MAX, cursor, want = UINT64_MAX;
    vtmem_status st;
    GTreeNode *node;

    switch (op) {
    case OP_DIRTY_START:
        st = vtmem_store_dirty_start(f->store);
        if (f->logging) {
            CHECK(st == VTMEM_ERR_INVAL);
            break;
        }
        CHECK(st == VTMEM_OK);
        f->logging = true;
        f->cursor = 0;
        {
            GHashTableIter it;
            gpointer key;
            g_hash_table_iter_init(&it, f->pages);
            while (g_hash_table_iter_next(&it, &key, NULL)) {
                model_mark(f, GPOINTER_TO_SIZE(key));
            }
        }
        break;
    case OP_DIRTY_STOP:
        vtmem_store_dirty_stop(f->store);
        f->logging = false;
        g_tree_remove_all(f->dirty);
        CHECK(vtmem_store_dirty_count(f->store) == 0);
        break;
    default:
        if (next8(f) & 1) {
            f->cursor = next_slot(f);   /* anywhere, even past the end */
        }
        cursor = f->cursor;
        st = vtmem_store_dirty_next(f->store, &cursor, &slot, &obj, buf);
        if (!f->logging) {
            CHECK(st == VTMEM_ERR_INVAL);
            break;
        }
        node = g_tree_lower_bound(f->dirty, GSIZE_TO_POINTER(f->cursor));
        if (node) {
            want = GPOINTER_TO_SIZE(g_tree_node_key(node));
        }
        if (want == UINT64_MAX) {
            CHECK(st == VTMEM_ERR_NOENT && cursor == f->nr_slots);
            f->cursor = 0;
            break;
        }
        CHECK(st == VTMEM_OK && slot == want && cursor == want + 1);
        check_object(&obj, buf, model_get(f, slot));
        g_tree_remove(f->dirty, GSIZE_TO_POINTER(slot));
        f->cursor = cursor;
        break;
    }
}

typedef struct IterState {
    Fuzz *f;
    uint64_t seen, last;
} IterState;

static int iter_check(uint64_t slot, const void *page, void *opaque)
{
    IterState *is = opaque;
    ModelPage *m = model_get(is->f, slot);

    CHECK(is->seen == 0 || slot > is->last);
    CHECK(m && memcmp(page, m->data, PAGE) == 0);
    is->seen++;
    is->last = slot;
    return 0;
}

static void op_iterate(Fuzz *f)
{
    IterState is = { .f = f };

    CHECK(vtmem_store_iterate(f->store, iter_check, &is) == 0);
    CHECK(is.seen == g_hash_table_size(f->pages));
}

static gint slot_cmp(gconstpointer a, gconstpointer b)
{
    uint64_t x = GPOINTER_TO_SIZE(a), y = GPOINTER_TO_SIZE(b);

    return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t slot_counts[] = { 64, 1000, 3000, 600000 };
    static const uint64_t limits[] = {
        UINT64_MAX, 0, 64 * 1024, 256 * 1024, 1 << 20, 4 << 20,
        UINT64_MAX - 1, 200 * 1024,
    };
    Fuzz f = { .in = data, .len = size };  /* bounded: once checked */
    VtmemStoreStats st;
    uint8_t config = next8(&f);

    f.trace = getenv("VTMEM_FUZZ_TRACE") != NULL;
    f.nr_slots = slot_counts[config & 3];
    f.limit = limits[(config >> 2) & 7];
    f.store = vtmem_store_new(f.nr_slots, f.limit);
    CHECK(f.store);
    f.pages = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                    g_free);
    f.dirty = g_tree_new(slot_cmp);
    check_stats(&f);

    while (f.pos < f.len) {
        int op = next8(&f) % NR_OPS;

        if (f.trace) {
            fprintf(stderr, "op %s at byte %zu, held %" PRIu64 "\n",
                    op_names[op], f.pos - 1,
                    vtmem_store_memory_held(f.store));
        }
        switch (op) {
        case OP_PUT:
            op_put(&f);
            break;
        case OP_GET:
            op_get(&f);
            break;
        case OP_INVALIDATE:
            op_invalidate(&f);
            break;
        case OP_RANGE:
            op_range(&f);
            break;
        case OP_ALL:
            op_all(&f);
            break;
        case OP_LIMIT:
            op_limit(&f);
            f.bounded = false;          /* may now be below usage */
            break;
        case OP_UNLIMITED:
            f.unlimited = next8(&f) & 1;
            vtmem_store_set_unlimited(f.store, f.unlimited);
            f.bounded = false;
            break;
        case OP_COMPACT:
        case OP_COMPACT_STEP:
            op_compact(&f, op == OP_COMPACT_STEP);
            break;
        case OP_GET_OBJECT:
            op_get_object(&f);
            break;
        case OP_PUT_OBJECT:
            op_put_object(&f);
            break;
        case OP_ITERATE:
            op_iterate(&f);
            break;
        default:
            op_dirty(&f, op);
            break;
        }
        check_stats(&f);
    }

    if (f.trace) {
        vtmem_store_get_stats(f.store, &st);
        fprintf(stderr, "stored %" PRIu64 " (same %" PRIu64 ", raw %" PRIu64
                "), puts %" PRIu64 ", refusals %" PRIu64 ", gets %" PRIu64
                ", invalidations %" PRIu64 ", compacted %" PRIu64
                ", held %" PRIu64 "\n", st.stored_pages,
                st.same_filled_pages, st.raw_pages, st.puts, st.refusals,
                st.gets, st.invalidations, st.compacted_objects,
                st.memory_held);
    }
    /* Every page still there, then an empty store holds only metadata. */
    op_iterate(&f);
    vtmem_store_dirty_stop(f.store);
    f.logging = false;
    op_all(&f);
    check_stats(&f);
    vtmem_store_get_stats(f.store, &st);
    CHECK(st.stored_pages == 0 && st.memory_held == st.metadata_bytes);
    vtmem_store_free(f.store);
    g_hash_table_destroy(f.pages);
    g_tree_destroy(f.dirty);
    return 0;
}
