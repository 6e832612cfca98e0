/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem page store: slot table, put/get/invalidate, iteration, stats.
 *
 * Slot table: three levels. A top array of leaf pointers (8 bytes per
 * 253440 slots, the only table cost at creation); a leaf, made on first
 * use and kept, holds 512 chunk pointers; a chunk, one page of the store's
 * own backing taken on first put and given back when its last slot
 * empties, holds 495 slots: one 64-bit entry per slot plus a 2-bit type
 * per slot kept aside, so that a same-filled page can keep its whole
 * 64-bit word in the entry. Object entries pack {exact length: 13 bits,
 * zpool handle: 42 bits}.
 *
 * Locking: a slot is guarded by the stripe lock of its chunk (128 stripes,
 * chunk index hashed so that neighbouring ranges do not collide in step).
 * Lock order: stripe -> size class (zpool) -> zpool id lock. Compression and
 * decompression happen outside zpool locks; decompression under the stripe
 * lock only, which is enough because an object only moves or dies under the
 * stripe lock of the slot that owns it. Counters live in the stripes (no
 * shared atomics on the hot path); memory accounting is one atomic counter
 * touched only when memory is taken or given back.
 */
#include "vtmem-store.h"

#include <glib.h>
#include <lz4.h>
#include <string.h>

#include "vtmem-account.h"
#include "vtmem-backing.h"
#include "vtmem-page.h"
#include "vtmem-store-internal.h"
#include "vtmem-zpool.h"

#define PAGE VTMEM_STORE_PAGE_SIZE
/*
 * Pages that do not compress to 3/4 page or less are kept raw: the saving
 * would be under 1/4 page while every get would still pay a decompression,
 * and compression stops early (output buffer full) on such pages. zsmalloc
 * treats objects this large as "huge" for similar reasons.
 */
#define COMPRESSED_MAX VTMEM_ZPOOL_HUGE_SIZE  /* 3/4 page */
#define CHUNK_SLOTS 495u              /* a chunk fills one page */
#define LEAF_SHIFT 9
#define LEAF_CHUNKS (1u << LEAF_SHIFT)
#define STRIPE_BITS 7
#define NR_STRIPES (1u << STRIPE_BITS)
#define LEN_BITS 13
#define LEN_MASK ((1u << LEN_BITS) - 1)
#define MAX_SLOTS (UINT64_C(1) << 32)
/* Dirty log: one bit per slot, DIRTY_WORDS words per chunk. */
#define DIRTY_WORDS ((CHUNK_SLOTS + 63) / 64)

_Static_assert(COMPRESSED_MAX == VTMEM_STORE_LZ4_MAX, "one LZ4 maximum");

enum { SLOT_EMPTY = 0, SLOT_SAME = 1, SLOT_OBJECT = 2 };

typedef struct SlotChunk {
    uint64_t entry[CHUNK_SLOTS];     /* word, or length | handle << 13 */
    uint8_t type[(CHUNK_SLOTS + 3) / 4];  /* 2 bits per slot */
    uint32_t used;                   /* non-empty slots */
    uint32_t ref;                    /* its page in table_backing */
} SlotChunk;

_Static_assert(sizeof(SlotChunk) == PAGE, "a chunk is one page");

/* A leaf: LEAF_CHUNKS chunk pointers. Published once, atomically. */
typedef SlotChunk **SlotLeaf;
typedef _Atomic(SlotLeaf) SlotLeafRef;

typedef struct Stripe {
    GMutex lock;
    uint64_t stored, same, raw, compressed_bytes, raw_bytes;
    uint64_t puts, gets, invalidations, refusals;
    uint64_t dirty;  /* dirty-log bits set in this stripe's chunks */
    char pad[128 - sizeof(GMutex) - 10 * sizeof(uint64_t)];
} Stripe;

_Static_assert(sizeof(Stripe) == 128, "stripes fill two cache lines");

struct VtmemStore {
    uint64_t nr_slots;
    uint64_t nr_chunks;
    uint64_t nr_leaves;
    SlotLeafRef *leaves;            /* set once, freed with the store */
    GMutex table_lock;              /* guards table_backing */
    VtmemBacking table_backing;     /* the chunks' pages */
    Stripe *stripes;
    VtmemZpool *zpool;
    VtmemAccount acct;
    uint64_t self_cost;
    /* Compaction: one pass at a time, in bounded steps. */
    GMutex compact_lock;  /* serialises compactions and guards the pass */
    bool pass_active;
    uint32_t pass_classes;  /* size classes begun in this pass */
    uint64_t pass_cursor;   /* next slot to look at */
    _Atomic uint64_t compactions, compacted_objects, compacted_bytes;
    /*
     * Dirty log (migration source): a directory of one bitmap leaf per
     * slot-table leaf, DIRTY_WORDS words per chunk, made on first mark and
     * published by compare-and-swap. A chunk's words are guarded by the
     * chunk's stripe lock, like its slots. dirty_dir is set before logging
     * is (release) and freed after logging is cleared and every stripe
     * lock taken once, so no marker still uses it.
     */
    _Atomic bool logging;
    _Atomic bool dirty_broken;       /* a mark was lost: no memory */
    _Atomic(uint64_t *) *dirty_dir;  /* nr_leaves entries */
};

/* One LZ4 state per thread: saves a 16 KiB stack frame per put. */
static _Thread_local LZ4_stream_t lz4_state;

static inline unsigned slot_type(const SlotChunk *c, unsigned i)
{
    return (c->type[i >> 2] >> ((i & 3) * 2)) & 3;
}

static inline void set_slot_type(SlotChunk *c, unsigned i, unsigned type)
{
    unsigned shift = (i & 3) * 2;
    c->type[i >> 2] = (uint8_t)((c->type[i >> 2] & ~(3u << shift)) |
                                (type << shift));
}

static inline Stripe *stripe_of(VtmemStore *store, uint64_t chunk)
{
    /* Fibonacci hashing: consecutive chunks land on unrelated stripes. */
    return &store->stripes[(chunk * UINT64_C(0x9E3779B97F4A7C15)) >>
                           (64 - STRIPE_BITS)];
}

/* Note that slot i of chunk ci changed (its stripe locked). */
static void slot_mark(VtmemStore *store, Stripe *s, uint64_t ci, unsigned i)
{
    if (!atomic_load_explicit(&store->logging, memory_order_acquire)) {
        return;
    }
    _Atomic(uint64_t *) *ref = &store->dirty_dir[ci >> LEAF_SHIFT];
    uint64_t *leaf = atomic_load_explicit(ref, memory_order_acquire);

    if (!leaf) {
        uint64_t *none = NULL;

        leaf = g_try_new0(uint64_t, LEAF_CHUNKS * DIRTY_WORDS);
        if (!leaf) {
            atomic_store(&store->dirty_broken, true);
            return;
        }
        if (!atomic_compare_exchange_strong_explicit(
                ref, &none, leaf, memory_order_acq_rel,
                memory_order_acquire)) {
            g_free(leaf);
            leaf = none;
        }
    }
    uint64_t *w = &leaf[(ci & (LEAF_CHUNKS - 1)) * DIRTY_WORDS + (i >> 6)];
    uint64_t bit = UINT64_C(1) << (i & 63);

    if (!(*w & bit)) {
        *w |= bit;
        s->dirty++;
    }
}

static uint64_t leaf_cost(void)
{
    return vtmem_heap_cost(LEAF_CHUNKS * sizeof(SlotChunk *));
}

VtmemStore *vtmem_store_new(uint64_t nr_slots, uint64_t limit)
{
    if (nr_slots == 0 || nr_slots > MAX_SLOTS) {
        return NULL;
    }
    VtmemStore *store = g_try_new0(VtmemStore, 1);
    if (!store) {
        return NULL;
    }
    store->nr_slots = nr_slots;
    store->nr_chunks = (nr_slots + CHUNK_SLOTS - 1) / CHUNK_SLOTS;
    store->nr_leaves = (store->nr_chunks + LEAF_CHUNKS - 1) / LEAF_CHUNKS;
    store->leaves = g_try_new0(SlotLeafRef, store->nr_leaves);
    store->stripes = g_aligned_alloc0(NR_STRIPES, sizeof(Stripe), 64);
    atomic_init(&store->acct.held, 0);
    atomic_init(&store->acct.metadata, 0);
    atomic_init(&store->acct.limit, limit);
    store->zpool = vtmem_zpool_new(nr_slots, &store->acct);
    if (!store->leaves || !store->stripes || !store->zpool) {
        vtmem_zpool_destroy(store->zpool);
        g_aligned_free(store->stripes);
        g_free(store->leaves);
        g_free(store);
        return NULL;
    }
    for (unsigned i = 0; i < NR_STRIPES; i++) {
        g_mutex_init(&store->stripes[i].lock);
    }
    g_mutex_init(&store->compact_lock);
    g_mutex_init(&store->table_lock);
    vtmem_backing_init(&store->table_backing, PAGE, &store->acct);
    store->self_cost = vtmem_heap_cost(sizeof(VtmemStore)) +
        vtmem_heap_cost(store->nr_leaves * sizeof(SlotChunk **)) +
        vtmem_heap_cost(NR_STRIPES * sizeof(Stripe) + 64);
    vtmem_account_charge(&store->acct, store->self_cost, store->self_cost);
    return store;
}

void vtmem_store_free(VtmemStore *store)
{
    if (!store) {
        return;
    }
    vtmem_store_dirty_stop(store);
    vtmem_store_invalidate_all(store);
    vtmem_zpool_destroy(store->zpool);
    for (uint64_t li = 0; li < store->nr_leaves; li++) {
        g_free(atomic_load(&store->leaves[li]));
    }
    vtmem_backing_destroy(&store->table_backing);
    for (unsigned i = 0; i < NR_STRIPES; i++) {
        g_mutex_clear(&store->stripes[i].lock);
    }
    g_mutex_clear(&store->compact_lock);
    g_mutex_clear(&store->table_lock);
    g_aligned_free(store->stripes);
    g_free(store->leaves);
    g_free(store);
}

uint64_t vtmem_store_nr_slots(const VtmemStore *store)
{
    return store ? store->nr_slots : 0;
}

/* Where chunk ci's pointer lives; NULL if its leaf was never made. */
static inline SlotChunk **chunk_ref(VtmemStore *store, uint64_t ci)
{
    SlotChunk **leaf = atomic_load_explicit(&store->leaves[ci >> LEAF_SHIFT],
                                            memory_order_acquire);
    return leaf ? &leaf[ci & (LEAF_CHUNKS - 1)] : NULL;
}

/* One slot's place: its stripe, the pointer to its chunk (NULL while the
 * chunk's leaf was never made) and its index in the chunk. */
typedef struct SlotPlace {
    Stripe *stripe;
    SlotChunk **chunk;
    unsigned idx;
} SlotPlace;

/* VTMEM_ERR_RANGE for a slot beyond the table, else VTMEM_OK and *p. */
static vtmem_status slot_place(VtmemStore *store, uint64_t slot, SlotPlace *p)
{
    if (slot >= store->nr_slots) {
        return VTMEM_ERR_RANGE;
    }
    p->stripe = stripe_of(store, slot / CHUNK_SLOTS);
    p->chunk = chunk_ref(store, slot / CHUNK_SLOTS);
    p->idx = (unsigned)(slot % CHUNK_SLOTS);
    return VTMEM_OK;
}

/* Make the leaf for chunk ci (any thread; the first one to finish wins). */
static vtmem_status leaf_make(VtmemStore *store, uint64_t ci)
{
    SlotChunk **leaf, **none = NULL;

    if (!vtmem_account_reserve(&store->acct, leaf_cost(), leaf_cost())) {
        return VTMEM_ERR_NOSPACE;
    }
    leaf = g_try_new0(SlotChunk *, LEAF_CHUNKS);
    if (!leaf) {
        vtmem_account_release(&store->acct, leaf_cost(), leaf_cost());
        return VTMEM_ERR_NOMEM;
    }
    if (!atomic_compare_exchange_strong_explicit(
            &store->leaves[ci >> LEAF_SHIFT], &none, leaf,
            memory_order_acq_rel, memory_order_acquire)) {
        g_free(leaf);
        vtmem_account_release(&store->acct, leaf_cost(), leaf_cost());
    }
    return VTMEM_OK;
}

/* A new empty chunk: a zero-filled page of the table backing. */
static vtmem_status chunk_new(VtmemStore *store, SlotChunk **chunk)
{
    vtmem_status st;
    void *page;
    uint32_t ref;

    if (!vtmem_account_reserve(&store->acct, PAGE, PAGE)) {
        return VTMEM_ERR_NOSPACE;
    }
    g_mutex_lock(&store->table_lock);
    st = vtmem_backing_alloc(&store->table_backing, &page, &ref);
    g_mutex_unlock(&store->table_lock);
    if (st != VTMEM_OK) {
        vtmem_account_release(&store->acct, PAGE, PAGE);
        return st;
    }
    *chunk = page;
    (*chunk)->ref = ref;
    return VTMEM_OK;
}

/* Count an object of len bytes in or out of stripe s's figures. */
static void object_counted(Stripe *s, size_t len, bool in)
{
    uint64_t *bytes = len == PAGE ? &s->raw_bytes : &s->compressed_bytes;

    if (in) {
        *bytes += len;
        s->raw += len == PAGE;
    } else {
        *bytes -= len;
        s->raw -= len == PAGE;
    }
}

/* Empty slot i of chunk (stripe s locked). False if it held nothing. */
static bool slot_drop(VtmemStore *store, Stripe *s, SlotChunk *c, unsigned i)
{
    unsigned type = slot_type(c, i);

    if (type == SLOT_EMPTY) {
        return false;
    }
    if (type == SLOT_SAME) {
        s->same--;
    } else {
        size_t len = c->entry[i] & LEN_MASK;
        vtmem_zpool_free(store->zpool, c->entry[i] >> LEN_BITS, len);
        object_counted(s, len, false);
    }
    set_slot_type(c, i, SLOT_EMPTY);
    c->entry[i] = 0;
    c->used--;
    s->stored--;
    return true;
}

/*
 * Give the chunk at *cp back if it holds nothing (its stripe locked). An
 * empty chunk is all zeros, as a page of the backing reads when new.
 */
static void chunk_release_if_empty(VtmemStore *store, SlotChunk **cp)
{
    SlotChunk *c = *cp;

    if (c && c->used == 0) {
        uint32_t ref = c->ref;

        *cp = NULL;
        g_mutex_lock(&store->table_lock);
        vtmem_backing_free(&store->table_backing, ref);
        g_mutex_unlock(&store->table_lock);
        vtmem_account_release(&store->acct, PAGE, PAGE);
    }
}

/*
 * Overwrite slot i's object with len bytes at src if they take a slot of
 * the same size class (stripe s locked): no zspage is freed or made, and
 * memory_held does not change. False (nothing done) otherwise, or if the
 * store is over its limit (then the put must be refused as usual).
 */
static bool replace_in_place(VtmemStore *store, Stripe *s, SlotChunk *c,
                             uint64_t ci, unsigned i, const void *src,
                             size_t len)
{
    size_t old = c->entry[i] & LEN_MASK;
    VtmemZhandle handle = c->entry[i] >> LEN_BITS;

    if (slot_type(c, i) != SLOT_OBJECT ||
        !vtmem_zpool_same_class(store->zpool, old, len) ||
        vtmem_account_over(&store->acct)) {
        return false;
    }
    memcpy(vtmem_zpool_map(store->zpool, handle, len), src, len);
    c->entry[i] = len | (handle << LEN_BITS);
    object_counted(s, old, false);
    object_counted(s, len, true);
    s->puts++;
    slot_mark(store, s, ci, i);
    return true;
}

static vtmem_status put_prepared(VtmemStore *store, uint64_t slot, bool same,
                                 uint64_t word, const void *src, size_t len);

vtmem_status vtmem_store_put(VtmemStore *store, uint64_t slot, const void *page)
{
    /*
     * Room for LZ4's worst case, as LZ4_compress_default has: with less,
     * LZ4 takes its slower bounds-checking path for every page, which cost
     * more on real pages than stopping early on incompressible ones saved.
     */
    unsigned char packed[LZ4_COMPRESSBOUND(PAGE)];
    const void *src = NULL;
    uint64_t word = 0;
    size_t len = 0;
    bool same;

    if (!store || !page) {
        return VTMEM_ERR_INVAL;
    }
    if (slot >= store->nr_slots) {
        return VTMEM_ERR_RANGE;
    }
    same = vtmem_page_same_filled(page, &word);
    if (!same) {
        /* Outside any lock. */
        int n = LZ4_compress_fast_extState(&lz4_state, page, (char *)packed,
                                           PAGE, sizeof(packed), 1);
        if (n > 0 && n <= COMPRESSED_MAX) {
            src = packed;
            len = (size_t)n;
        } else {
            src = page;
            len = PAGE;
        }
    }
    return put_prepared(store, slot, same, word, src, len);
}

/*
 * Store slot's new content, ready as stored: the word if same, else len
 * bytes at src (LZ4 if len < PAGE). Argument checks done by the caller.
 */
static vtmem_status put_prepared(VtmemStore *store, uint64_t slot, bool same,
                                 uint64_t word, const void *src, size_t len)
{
    uint64_t ci = slot / CHUNK_SLOTS;
    unsigned i = (unsigned)(slot % CHUNK_SLOTS);
    Stripe *s = stripe_of(store, ci);
    vtmem_status st = VTMEM_OK;
    VtmemZhandle handle = 0;
    SlotChunk **cp = chunk_ref(store, ci), *c = NULL;

    if (!cp) {
        /* No leaf: the slot is empty, so a refusal here leaves it so. */
        st = leaf_make(store, ci);
        cp = st == VTMEM_OK ? chunk_ref(store, ci) : NULL;
    }
    g_mutex_lock(&s->lock);
    c = cp ? *cp : NULL;
    if (c && !same && replace_in_place(store, s, c, ci, i, src, len)) {
        g_mutex_unlock(&s->lock);
        return VTMEM_OK;
    }
    if (c) {
        /* Old copy goes first: a refused put must leave the slot empty. */
        if (slot_drop(store, s, c, i)) {
            slot_mark(store, s, ci, i);
        }
    } else if (st == VTMEM_OK) {
        st = chunk_new(store, &c);
        if (st == VTMEM_OK) {
            *cp = c;
        }
    }
    /* Accept only if memory held after the put is within the limit. */
    if (st == VTMEM_OK && vtmem_account_over(&store->acct)) {
        st = VTMEM_ERR_NOSPACE;
    }
    if (st == VTMEM_OK && !same) {
        st = vtmem_zpool_alloc(store->zpool, len, &handle);
    }
    if (st == VTMEM_OK) {
        if (same) {
            c->entry[i] = word;
            set_slot_type(c, i, SLOT_SAME);
            s->same++;
        } else {
            memcpy(vtmem_zpool_map(store->zpool, handle, len), src, len);
            c->entry[i] = len | (handle << LEN_BITS);
            set_slot_type(c, i, SLOT_OBJECT);
            object_counted(s, len, true);
        }
        c->used++;
        s->stored++;
        s->puts++;
        slot_mark(store, s, ci, i);
    } else {
        if (st == VTMEM_ERR_NOSPACE) {
            s->refusals++;
        }
        if (c) {
            chunk_release_if_empty(store, cp);
        }
    }
    g_mutex_unlock(&s->lock);
    return st;
}

/* Copy out slot i of chunk c into buf (its stripe locked). */
static vtmem_status slot_read(VtmemStore *store, SlotChunk *c, unsigned i,
                              void *buf)
{
    switch (slot_type(c, i)) {
    case SLOT_SAME:
        vtmem_page_fill(buf, c->entry[i]);
        return VTMEM_OK;
    case SLOT_OBJECT: {
        size_t len = c->entry[i] & LEN_MASK;
        const char *obj = vtmem_zpool_map(store->zpool,
                                          c->entry[i] >> LEN_BITS, len);
        if (len == PAGE) {
            memcpy(buf, obj, PAGE);
            return VTMEM_OK;
        }
        /* A short result would mean a corrupted object: report, not abort. */
        return LZ4_decompress_safe(obj, buf, (int)len, PAGE) == PAGE
               ? VTMEM_OK : VTMEM_ERR_INVAL;
    }
    default:
        return VTMEM_ERR_NOENT;
    }
}

vtmem_status vtmem_store_get(VtmemStore *store, uint64_t slot, void *buf)
{
    SlotPlace p;
    vtmem_status st = store && buf ? slot_place(store, slot, &p)
                                   : VTMEM_ERR_INVAL;

    if (st != VTMEM_OK || !p.chunk) {
        return st == VTMEM_OK ? VTMEM_ERR_NOENT : st;
    }
    st = VTMEM_ERR_NOENT;
    g_mutex_lock(&p.stripe->lock);
    if (*p.chunk) {
        st = slot_read(store, *p.chunk, p.idx, buf);
    }
    if (st == VTMEM_OK) {
        p.stripe->gets++;
    }
    g_mutex_unlock(&p.stripe->lock);
    return st;
}

vtmem_status vtmem_store_invalidate(VtmemStore *store, uint64_t slot)
{
    SlotPlace p;
    vtmem_status st = store ? slot_place(store, slot, &p) : VTMEM_ERR_INVAL;

    if (st != VTMEM_OK || !p.chunk) {
        return st == VTMEM_OK ? VTMEM_ERR_NOENT : st;
    }
    st = VTMEM_ERR_NOENT;
    g_mutex_lock(&p.stripe->lock);
    if (*p.chunk && slot_drop(store, p.stripe, *p.chunk, p.idx)) {
        slot_mark(store, p.stripe, slot / CHUNK_SLOTS, p.idx);
        p.stripe->invalidations++;
        chunk_release_if_empty(store, p.chunk);
        st = VTMEM_OK;
    }
    g_mutex_unlock(&p.stripe->lock);
    return st;
}

vtmem_status vtmem_store_invalidate_range(VtmemStore *store, uint64_t first,
                                          uint64_t count, uint64_t *dropped)
{
    uint64_t n = 0;

    if (!store) {
        return VTMEM_ERR_INVAL;
    }
    if (first > store->nr_slots || count > store->nr_slots - first) {
        return VTMEM_ERR_RANGE;
    }
    for (uint64_t slot = first, end = first + count; slot < end;) {
        uint64_t ci = slot / CHUNK_SLOTS;
        uint64_t chunk_end = MIN(end, (ci + 1) * CHUNK_SLOTS);
        SlotChunk **cp = chunk_ref(store, ci);
        Stripe *s = stripe_of(store, ci);

        if (!cp) {
            /* no leaf: skip all of its slots at once */
            uint64_t leaf_end = ((ci >> LEAF_SHIFT) + 1) * LEAF_CHUNKS;
            slot = MIN(end, leaf_end * CHUNK_SLOTS);
            continue;
        }
        g_mutex_lock(&s->lock);
        SlotChunk *c = *cp;
        for (; c && slot < chunk_end; slot++) {
            if (slot_drop(store, s, c, (unsigned)(slot % CHUNK_SLOTS))) {
                slot_mark(store, s, ci, (unsigned)(slot % CHUNK_SLOTS));
                s->invalidations++;
                n++;
            }
        }
        chunk_release_if_empty(store, cp);
        g_mutex_unlock(&s->lock);
        slot = chunk_end;
    }
    if (dropped) {
        *dropped = n;
    }
    return VTMEM_OK;
}

void vtmem_store_invalidate_all(VtmemStore *store)
{
    if (store) {
        vtmem_store_invalidate_range(store, 0, store->nr_slots, NULL);
    }
}

int vtmem_store_iterate(VtmemStore *store, VtmemStoreIterFn fn, void *opaque)
{
    if (!store || !fn) {
        return VTMEM_ERR_INVAL;
    }
    void *page = g_malloc(PAGE);
    int ret = 0;

    for (uint64_t ci = 0; ci < store->nr_chunks && ret == 0; ci++) {
        Stripe *s = stripe_of(store, ci);
        SlotChunk **cp = chunk_ref(store, ci);

        if (!cp) {
            ci |= LEAF_CHUNKS - 1;  /* no leaf: on to the next one */
            continue;
        }
        for (unsigned i = 0; i < CHUNK_SLOTS && ret == 0; i++) {
            uint64_t slot = ci * CHUNK_SLOTS + i;
            vtmem_status st = VTMEM_ERR_NOENT;
            bool chunk_gone;

            if (slot >= store->nr_slots) {
                break;
            }
            /* Lock per slot: fn runs unlocked and may take its time. */
            g_mutex_lock(&s->lock);
            SlotChunk *c = *cp;
            chunk_gone = !c;
            if (c) {
                st = slot_read(store, c, i, page);
            }
            g_mutex_unlock(&s->lock);
            if (chunk_gone) {
                break;
            }
            if (st == VTMEM_OK) {
                ret = fn(slot, page, opaque);
            }
        }
    }
    g_free(page);
    return ret;
}

/*
 * One step of the current compaction pass, at most budget units of work
 * (compact_lock held). A pass first marks each size class's zspages to
 * empty, then walks the slot table and offers every object to the zpool,
 * which moves those that sit in marked zspages. Walking the table rather
 * than keeping a slot number per object saves 4 bytes per stored page.
 * Between steps, puts never land in marked zspages (they are off the
 * partial lists), so no object is missed; their free slots are out of use
 * until the pass ends. Units of work: a slot looked at, an untouched leaf
 * or chunk skipped, a partial zspage sorted when a class is marked (one
 * class's marking is not split, so a step may overrun by that much).
 */
static bool compact_step_locked(VtmemStore *store, uint64_t budget,
                                uint64_t *released)
{
    uint32_t nr_classes = vtmem_zpool_nr_classes(store->zpool);
    uint64_t work = 0, moved = 0, freed = 0;

    if (!store->pass_active) {
        store->pass_active = true;
        store->pass_classes = 0;
        store->pass_cursor = 0;
    }
    while (store->pass_classes < nr_classes && work < budget) {
        work += 1 + vtmem_zpool_compact_begin_class(store->zpool,
                                                    store->pass_classes++);
    }
    while (store->pass_classes == nr_classes &&
           store->pass_cursor < store->nr_slots && work < budget) {
        uint64_t slot = store->pass_cursor;
        uint64_t ci = slot / CHUNK_SLOTS;
        uint64_t chunk_end = MIN(store->nr_slots, (ci + 1) * CHUNK_SLOTS);
        uint64_t end = chunk_end;
        SlotChunk **cp = chunk_ref(store, ci);
        Stripe *s = stripe_of(store, ci);

        if (!cp) {
            /* no leaf: one unit of work skips all of its slots */
            uint64_t leaf_end = ((ci >> LEAF_SHIFT) + 1) * LEAF_CHUNKS;
            store->pass_cursor = MIN(store->nr_slots, leaf_end * CHUNK_SLOTS);
            work++;
            continue;
        }
        g_mutex_lock(&s->lock);
        SlotChunk *c = *cp;
        if (!c) {
            work++;
        } else {
            if (budget - work < chunk_end - slot) {
                end = slot + (budget - work);
            }
            work += end - slot;
        }
        for (; c && slot < end; slot++) {
            unsigned i = (unsigned)(slot % CHUNK_SLOTS);
            if (slot_type(c, i) != SLOT_OBJECT) {
                continue;
            }
            size_t len = c->entry[i] & LEN_MASK;
            VtmemZhandle h = c->entry[i] >> LEN_BITS;
            if (vtmem_zpool_compact_move(store->zpool, &h, len, &freed)) {
                c->entry[i] = len | (h << LEN_BITS);
                moved++;
            }
        }
        g_mutex_unlock(&s->lock);
        store->pass_cursor = end;
    }
    atomic_fetch_add_explicit(&store->compacted_objects, moved,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&store->compacted_bytes, freed,
                              memory_order_relaxed);
    if (released) {
        *released += freed;
    }
    if (store->pass_classes < nr_classes ||
        store->pass_cursor < store->nr_slots) {
        return false;
    }
    vtmem_zpool_compact_end(store->zpool);
    store->pass_active = false;
    atomic_fetch_add_explicit(&store->compactions, 1, memory_order_relaxed);
    return true;
}

bool vtmem_store_compact_step(VtmemStore *store, uint64_t max_slots,
                              uint64_t *released)
{
    bool done;

    if (!store) {
        return true;
    }
    g_mutex_lock(&store->compact_lock);
    done = compact_step_locked(store, MAX(max_slots, 1), released);
    g_mutex_unlock(&store->compact_lock);
    return done;
}

uint64_t vtmem_store_compact(VtmemStore *store)
{
    uint64_t released = 0;

    if (!store) {
        return 0;
    }
    g_mutex_lock(&store->compact_lock);
    if (store->pass_active) {
        compact_step_locked(store, UINT64_MAX, &released);
    }
    compact_step_locked(store, UINT64_MAX, &released);
    g_mutex_unlock(&store->compact_lock);
    return released;
}

uint64_t vtmem_store_fragmentation(VtmemStore *store)
{
    return store ? vtmem_zpool_free_slot_bytes(store->zpool) : 0;
}

void vtmem_store_set_limit(VtmemStore *store, uint64_t limit)
{
    if (store) {
        atomic_store_explicit(&store->acct.limit, limit, memory_order_relaxed);
    }
}

void vtmem_store_get_stats(VtmemStore *store, VtmemStoreStats *stats)
{
    if (!stats) {
        return;
    }
    memset(stats, 0, sizeof(*stats));
    if (!store) {
        return;
    }
    for (unsigned i = 0; i < NR_STRIPES; i++) {
        Stripe *s = &store->stripes[i];
        g_mutex_lock(&s->lock);
        stats->stored_pages += s->stored;
        stats->same_filled_pages += s->same;
        stats->raw_pages += s->raw;
        stats->compressed_bytes += s->compressed_bytes;
        stats->raw_bytes += s->raw_bytes;
        stats->puts += s->puts;
        stats->gets += s->gets;
        stats->invalidations += s->invalidations;
        stats->refusals += s->refusals;
        g_mutex_unlock(&s->lock);
    }
    stats->memory_held = atomic_load(&store->acct.held);
    stats->metadata_bytes = atomic_load(&store->acct.metadata);
    stats->limit = atomic_load(&store->acct.limit);
    stats->compactions = atomic_load(&store->compactions);
    stats->compacted_objects = atomic_load(&store->compacted_objects);
    stats->compacted_bytes = atomic_load(&store->compacted_bytes);
}

uint64_t vtmem_store_memory_held(VtmemStore *store)
{
    return store ? atomic_load_explicit(&store->acct.held, memory_order_relaxed)
                 : 0;
}

void vtmem_store_zpool_usage(VtmemStore *store, VtmemZpoolUsage *usage)
{
    vtmem_zpool_usage(store ? store->zpool : NULL, usage);
}

uint64_t vtmem_store_resident_bytes(VtmemStore *store)
{
    uint64_t bytes;

    if (!store) {
        return 0;
    }
    bytes = vtmem_zpool_resident_bytes(store->zpool);
    g_mutex_lock(&store->table_lock);
    bytes += vtmem_backing_resident(&store->table_backing);
    g_mutex_unlock(&store->table_lock);
    return bytes;
}

/* Copy slot i of chunk c as stored (its stripe locked; c may be NULL). */
static void slot_copy_object(VtmemStore *store, SlotChunk *c, unsigned i,
                             VtmemStoreObj *obj, void *buf)
{
    unsigned type = c ? slot_type(c, i) : SLOT_EMPTY;

    memset(obj, 0, sizeof(*obj));
    if (type == SLOT_SAME) {
        obj->kind = VTMEM_OBJ_SAME;
        obj->word = c->entry[i];
    } else if (type == SLOT_OBJECT) {
        size_t len = c->entry[i] & LEN_MASK;

        obj->kind = len == PAGE ? VTMEM_OBJ_RAW : VTMEM_OBJ_LZ4;
        obj->len = (uint32_t)len;
        memcpy(buf, vtmem_zpool_map(store->zpool, c->entry[i] >> LEN_BITS,
                                    len), len);
    } else {
        obj->kind = VTMEM_OBJ_EMPTY;
    }
}

vtmem_status vtmem_store_get_object(VtmemStore *store, uint64_t slot,
                                    VtmemStoreObj *obj, void *buf)
{
    SlotPlace p;
    vtmem_status st = store && obj && buf ? slot_place(store, slot, &p)
                                          : VTMEM_ERR_INVAL;

    if (st != VTMEM_OK) {
        return st;
    }
    g_mutex_lock(&p.stripe->lock);
    slot_copy_object(store, p.chunk ? *p.chunk : NULL, p.idx, obj, buf);
    g_mutex_unlock(&p.stripe->lock);
    return VTMEM_OK;
}

vtmem_status vtmem_store_put_object(VtmemStore *store, uint64_t slot,
                                    const VtmemStoreObj *obj,
                                    const void *data)
{
    if (!store || !obj) {
        return VTMEM_ERR_INVAL;
    }
    switch (obj->kind) {
    case VTMEM_OBJ_EMPTY: {
        vtmem_status st = vtmem_store_invalidate(store, slot);
        return st == VTMEM_ERR_NOENT ? VTMEM_OK : st;
    }
    case VTMEM_OBJ_SAME:
        if (slot >= store->nr_slots) {
            return VTMEM_ERR_RANGE;
        }
        return put_prepared(store, slot, true, obj->word, NULL, 0);
    case VTMEM_OBJ_LZ4:
        if (!data || obj->len == 0 || obj->len > COMPRESSED_MAX) {
            return VTMEM_ERR_INVAL;
        }
        break;
    case VTMEM_OBJ_RAW:
        if (!data || obj->len != PAGE) {
            return VTMEM_ERR_INVAL;
        }
        break;
    default:
        return VTMEM_ERR_INVAL;
    }
    if (slot >= store->nr_slots) {
        return VTMEM_ERR_RANGE;
    }
    return put_prepared(store, slot, false, 0, data, obj->len);
}

void vtmem_store_set_unlimited(VtmemStore *store, bool on)
{
    if (store) {
        atomic_store_explicit(&store->acct.unlimited, on,
                              memory_order_relaxed);
    }
}

vtmem_status vtmem_store_dirty_start(VtmemStore *store)
{
    if (!store || atomic_load(&store->logging)) {
        return VTMEM_ERR_INVAL;
    }
    store->dirty_dir = g_try_new0(_Atomic(uint64_t *), store->nr_leaves);
    if (!store->dirty_dir) {
        return VTMEM_ERR_NOMEM;
    }
    atomic_store(&store->dirty_broken, false);
    atomic_store_explicit(&store->logging, true, memory_order_release);
    /*
     * Mark what is stored now. A put racing with this walk marks its slot
     * itself: it takes the slot's lock after logging was set, or before
     * the walk reads the slot.
     */
    for (uint64_t ci = 0; ci < store->nr_chunks; ci++) {
        Stripe *s = stripe_of(store, ci);
        SlotChunk **cp = chunk_ref(store, ci);

        if (!cp) {
            ci |= LEAF_CHUNKS - 1;
            continue;
        }
        g_mutex_lock(&s->lock);
        SlotChunk *c = *cp;
        for (unsigned i = 0; c && i < CHUNK_SLOTS; i++) {
            if (slot_type(c, i) != SLOT_EMPTY) {
                slot_mark(store, s, ci, i);
            }
        }
        g_mutex_unlock(&s->lock);
    }
    return VTMEM_OK;
}

void vtmem_store_dirty_stop(VtmemStore *store)
{
    if (!store || !atomic_load(&store->logging)) {
        return;
    }
    atomic_store(&store->logging, false);
    /* Wait out markers that saw logging set; reset the counts. */
    for (unsigned i = 0; i < NR_STRIPES; i++) {
        g_mutex_lock(&store->stripes[i].lock);
        store->stripes[i].dirty = 0;
        g_mutex_unlock(&store->stripes[i].lock);
    }
    for (uint64_t li = 0; li < store->nr_leaves; li++) {
        g_free(atomic_load(&store->dirty_dir[li]));
    }
    g_free(store->dirty_dir);
    store->dirty_dir = NULL;
}

vtmem_status vtmem_store_dirty_next(VtmemStore *store, uint64_t *cursor,
                                    uint64_t *slot, VtmemStoreObj *obj,
                                    void *buf)
{
    if (!store || !cursor || !slot || !obj || !buf ||
        !atomic_load(&store->logging)) {
        return VTMEM_ERR_INVAL;
    }
    if (atomic_load(&store->dirty_broken)) {
        return VTMEM_ERR_NOMEM;
    }
    for (uint64_t pos = *cursor; pos < store->nr_slots;) {
        uint64_t ci = pos / CHUNK_SLOTS;
        unsigned first = (unsigned)(pos % CHUNK_SLOTS);
        uint64_t *leaf = atomic_load_explicit(
            &store->dirty_dir[ci >> LEAF_SHIFT], memory_order_acquire);

        if (!leaf) {
            /* nothing marked in this leaf's chunks */
            pos = ((ci >> LEAF_SHIFT) + 1) * LEAF_CHUNKS * CHUNK_SLOTS;
            continue;
        }
        uint64_t *w = &leaf[(ci & (LEAF_CHUNKS - 1)) * DIRTY_WORDS];
        Stripe *s = stripe_of(store, ci);

        g_mutex_lock(&s->lock);
        for (unsigned wi = first >> 6; wi < DIRTY_WORDS; wi++) {
            uint64_t bits = w[wi];

            if (wi == first >> 6) {
                bits &= ~UINT64_C(0) << (first & 63);
            }
            if (bits) {
                unsigned i = wi * 64 + (unsigned)__builtin_ctzll(bits);
                SlotChunk **cp = chunk_ref(store, ci);

                w[wi] &= ~(UINT64_C(1) << (i & 63));
                s->dirty--;
                slot_copy_object(store, cp ? *cp : NULL, i, obj, buf);
                g_mutex_unlock(&s->lock);
                *slot = ci * CHUNK_SLOTS + i;
                *cursor = *slot + 1;
                return VTMEM_OK;
            }
        }
        g_mutex_unlock(&s->lock);
        pos = (ci + 1) * CHUNK_SLOTS;
    }
    *cursor = store->nr_slots;
    return VTMEM_ERR_NOENT;
}

uint64_t vtmem_store_dirty_count(VtmemStore *store)
{
    uint64_t n = 0;

    if (!store) {
        return 0;
    }
    for (unsigned i = 0; i < NR_STRIPES; i++) {
        g_mutex_lock(&store->stripes[i].lock);
        n += store->stripes[i].dirty;
        g_mutex_unlock(&store->stripes[i].lock);
    }
    return n;
}

const char *vtmem_status_str(vtmem_status status)
{
    switch (status) {
    case VTMEM_OK: return "ok";
    case VTMEM_ERR_NOSPACE: return "no space (limit reached)";
    case VTMEM_ERR_NOENT: return "slot holds nothing";
    case VTMEM_ERR_RANGE: return "slot out of range";
    case VTMEM_ERR_INVAL: return "invalid argument";
    case VTMEM_ERR_NOMEM: return "out of memory";
    }
    return "unknown status";
}
