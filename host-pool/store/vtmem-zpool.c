/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem zpool: size classes of zspages, object alloc/free, compaction.
 *
 * Memory layout: a zspage is a block of pages * 4096 bytes of object slots
 * from its class's VtmemBacking (the store's own mappings; the pages go back
 * to the kernel when the zspage is freed). Free slots are chained through
 * their own first two bytes. Zspages are named by 32-bit ids in a two-level
 * directory (ids are reused), which keeps handles small enough to share a
 * 64-bit slot entry with the length; the directory entry holds the
 * zspage's address and header (32 bytes per zspage, metadata). The
 * directory's top level is reserved address space charged page by page as
 * ids grow into it, so a pool sized for 2^32 objects costs little until
 * used.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* MADV_POPULATE_WRITE; QEMU's build may define it */
#endif
#include "vtmem-zpool.h"

#include <glib.h>
#include <string.h>
#include <sys/mman.h>

#include "vtmem-backing.h"

#define PAGE 4096u
#define STEP 32u                      /* class granularity, see class_shape */
#define SHAPE_SLACK 0.01              /* see class_shape */
#define MIN_SLOTS 8u                   /* entry cost <= 4 B per object */
#define MAX_PAGES 8u                   /* see vtmem-zpool.h */
#define COMPRESSED_MAX VTMEM_ZPOOL_HUGE_SIZE
#define NR_STEPS (COMPRESSED_MAX / STEP)
#define RAW_CLASS_PAGES 4u            /* amortises the header over 4 pages */
#define DIR_SHIFT 9u                  /* 512 ids per directory segment */
#define DIR_SEG (1u << DIR_SHIFT)
#define TOP_PER_PAGE (PAGE / sizeof(void *))  /* top entries per page */
#define NO_ID UINT32_MAX
#define NO_IDX 0xFFFFu
#define FLAG_EVAC 1u

typedef struct ZspageHeader {
    uint32_t prev, next;   /* links in the class's partial or evac list */
    uint16_t free_head;    /* first freed slot, NO_IDX if none */
    uint16_t inuse;        /* live objects */
    uint16_t top;          /* slots >= top were never handed out */
    uint8_t flags;
    uint8_t pad;
} ZspageHeader;

/* A directory entry: a zspage, or a free id (data NULL, h.next chains). */
typedef struct Zspage {
    unsigned char *data;
    ZspageHeader h;
    uint32_t ref;          /* its block in the class's backing */
    uint32_t pad;
} Zspage;

typedef struct SizeClass {
    GMutex lock;
    uint32_t size;         /* slot size */
    uint32_t objs;         /* slots per zspage */
    uint32_t pages;        /* pages per zspage */
    uint32_t partial_head; /* zspages with free slots (allocation order) */
    uint32_t partial_tail;
    uint32_t evac_head;    /* zspages being emptied by compaction */
    uint64_t zspages;
    _Atomic uint64_t free_slots; /* in this class's zspages; read unlocked */
    VtmemBacking backing;  /* where its zspages live */
} SizeClass;

struct VtmemZpool {
    VtmemAccount *acct;
    uint64_t self_cost;
    GMutex id_lock;
    Zspage **dir;          /* dir[id >> 9][id & 511]; reserved, see above */
    uint32_t nr_dir;
    uint32_t nr_segs;      /* segments allocated: dir[0 .. nr_segs - 1] */
    uint32_t id_next;      /* ids >= id_next were never used */
    uint32_t id_free;      /* freed ids, chained through the directory */
    uint32_t max_ids;
    _Atomic uint64_t zspages;
    uint32_t nr_classes;
    uint16_t class_of_step[NR_STEPS + 1]; /* step 1..NR_STEPS -> class */
    SizeClass classes[];   /* last one is the raw class */
};

static uint32_t slots_per(uint32_t pages, uint32_t size)
{
    uint32_t n = pages * PAGE / size;
    return n > (1u << VTMEM_ZPOOL_IDX_BITS) ? 1u << VTMEM_ZPOOL_IDX_BITS : n;
}

/*
 * Pages per zspage for a slot size: the fewest pages whose tail waste is
 * within SHAPE_SLACK of the least possible and that hold MIN_SLOTS objects
 * (a zspage's directory entry, 32 bytes, is shared by its objects). Fewer
 * pages matter: after compaction each class keeps about one partly filled
 * zspage.
 */
static void class_shape(uint32_t size, uint32_t *pages, uint32_t *objs)
{
    double best = 0;

    *pages = MAX_PAGES;
    *objs = slots_per(MAX_PAGES, size);
    for (uint32_t p = 1; p <= MAX_PAGES; p++) {
        best = MAX(best, (double)slots_per(p, size) * size / (p * PAGE));
    }
    for (uint32_t p = 1; p <= MAX_PAGES; p++) {
        if ((double)slots_per(p, size) * size / (p * PAGE) >=
            best - SHAPE_SLACK &&
            (slots_per(p, size) >= MIN_SLOTS || p == MAX_PAGES)) {
            *pages = p;
            *objs = slots_per(p, size);
            return;
        }
    }
}

/* Slot size after merging neighbouring steps of the same shape. */
static uint32_t merged_size(uint32_t step)
{
    uint32_t pages, objs, p2, o2;

    class_shape(step * STEP, &pages, &objs);
    while (step < NR_STEPS) {
        class_shape((step + 1) * STEP, &p2, &o2);
        if (p2 != pages || o2 != objs) {
            break;
        }
        step++;
    }
    return step * STEP;
}

size_t vtmem_zpool_class_size(size_t size)
{
    if (size == 0 || size > VTMEM_ZPOOL_MAX_SIZE) {
        return 0;
    }
    if (size > COMPRESSED_MAX) {
        return PAGE;
    }
    return merged_size((uint32_t)(size + STEP - 1) / STEP);
}

unsigned vtmem_zpool_class_pages(size_t size)
{
    uint32_t pages, objs;
    size_t slot = vtmem_zpool_class_size(size);

    if (slot == 0) {
        return 0;
    }
    if (slot == PAGE) {
        return RAW_CLASS_PAGES;
    }
    class_shape((uint32_t)slot, &pages, &objs);
    return pages;
}

static SizeClass *class_for(VtmemZpool *pool, size_t size)
{
    if (size > COMPRESSED_MAX) {
        return &pool->classes[pool->nr_classes - 1];
    }
    return &pool->classes[pool->class_of_step[(size + STEP - 1) / STEP]];
}

bool vtmem_zpool_same_class(VtmemZpool *pool, size_t a, size_t b)
{
    return class_for(pool, a) == class_for(pool, b);
}

static uint64_t zspage_bytes(const SizeClass *cls)
{
    return (uint64_t)cls->pages * PAGE;
}

/*
 * A directory segment is a mapping of its own (whole pages, charged as
 * such), not a heap block: the directory's top level lives in reserved
 * address space, which LeakSanitizer does not scan, so a heap segment would
 * look leaked in a QEMU that exits without freeing the store (7.2 does).
 */
#define SEGMENT_BYTES ((size_t)DIR_SEG * sizeof(Zspage))

static uint64_t segment_cost(void)
{
    return SEGMENT_BYTES;
}

VtmemZpool *vtmem_zpool_new(uint64_t max_objects, VtmemAccount *acct)
{
    uint32_t nr_classes = 0, last_size = 0;
    uint16_t class_of_step[NR_STEPS + 1];
    uint32_t sizes[NR_STEPS + 1];

    if (!acct || max_objects == 0) {
        return NULL;
    }
    for (uint32_t step = 1; step <= NR_STEPS; step++) {
        uint32_t size = merged_size(step);
        if (size != last_size) {
            sizes[nr_classes++] = size;
            last_size = size;
        }
        class_of_step[step] = (uint16_t)(nr_classes - 1);
    }
    class_of_step[0] = 0;
    sizes[nr_classes++] = PAGE;  /* raw class */

    size_t self = sizeof(VtmemZpool) + nr_classes * sizeof(SizeClass);
    VtmemZpool *pool = g_try_malloc0(self);
    if (!pool) {
        return NULL;
    }
    uint64_t max_ids = max_objects + 64;  /* + a zspage per class, roughly */
    if (max_ids > UINT32_MAX - 1) {
        max_ids = UINT32_MAX - 1;
    }
    pool->max_ids = (uint32_t)max_ids;
    pool->nr_dir = (uint32_t)((max_ids + DIR_SEG - 1) / DIR_SEG);
    pool->dir = vtmem_backing_reserve(pool->nr_dir * sizeof(Zspage *));
    if (!pool->dir) {
        g_free(pool);
        return NULL;
    }
    pool->acct = acct;
    pool->id_free = NO_ID;
    pool->nr_classes = nr_classes;
    memcpy(pool->class_of_step, class_of_step, sizeof(class_of_step));
    g_mutex_init(&pool->id_lock);
    for (uint32_t i = 0; i < nr_classes; i++) {
        SizeClass *cls = &pool->classes[i];
        g_mutex_init(&cls->lock);
        cls->size = sizes[i];
        if (sizes[i] == PAGE) {
            cls->pages = RAW_CLASS_PAGES;
            cls->objs = RAW_CLASS_PAGES;
        } else {
            class_shape(sizes[i], &cls->pages, &cls->objs);
        }
        vtmem_backing_init(&cls->backing, cls->pages * PAGE, acct);
        cls->partial_head = cls->partial_tail = cls->evac_head = NO_ID;
    }
    pool->self_cost = vtmem_heap_cost(self);
    vtmem_account_charge(acct, pool->self_cost, pool->self_cost);
    return pool;
}

/* Bytes of the directory's top level charged for nr_segs segments. */
static uint64_t top_cost(uint32_t nr_segs)
{
    return (uint64_t)((nr_segs + TOP_PER_PAGE - 1) / TOP_PER_PAGE) * PAGE;
}

void vtmem_zpool_destroy(VtmemZpool *pool)
{
    if (!pool) {
        return;
    }
    uint64_t meta = pool->self_cost + top_cost(pool->nr_segs) +
                    pool->nr_segs * segment_cost();
    uint64_t pages = 0;

    for (uint32_t s = 0; s < pool->nr_segs; s++) {
        vtmem_backing_unreserve(pool->dir[s], SEGMENT_BYTES);
    }
    for (uint32_t i = 0; i < pool->nr_classes; i++) {
        SizeClass *cls = &pool->classes[i];
        pages += cls->zspages * zspage_bytes(cls);
        vtmem_backing_destroy(&cls->backing);
        g_mutex_clear(&cls->lock);
    }
    vtmem_account_release(pool->acct, meta + pages, meta);
    g_mutex_clear(&pool->id_lock);
    vtmem_backing_unreserve(pool->dir, pool->nr_dir * sizeof(Zspage *));
    g_free(pool);
}

static inline Zspage *zspage_of(VtmemZpool *pool, uint32_t id)
{
    return &pool->dir[id >> DIR_SHIFT][id & (DIR_SEG - 1)];
}

static inline unsigned char *zspage_data(VtmemZpool *pool, uint32_t id)
{
    return zspage_of(pool, id)->data;
}

static inline ZspageHeader *zspage_header(VtmemZpool *pool, SizeClass *cls,
                                          uint32_t id)
{
    (void)cls;
    return &zspage_of(pool, id)->h;
}

/* Directory ids. Called with the class lock held (order: class, id). */
static vtmem_status id_alloc(VtmemZpool *pool, uint32_t *id)
{
    vtmem_status st = VTMEM_OK;

    g_mutex_lock(&pool->id_lock);
    if (pool->id_free != NO_ID) {
        *id = pool->id_free;
        pool->id_free = zspage_of(pool, *id)->h.next;
    } else if (pool->id_next >= pool->max_ids) {
        st = VTMEM_ERR_NOMEM;
    } else {
        if (pool->id_next >> DIR_SHIFT == pool->nr_segs) {
            /* a new segment, and a new page of the top level every 512 */
            uint64_t cost = segment_cost() + top_cost(pool->nr_segs + 1) -
                            top_cost(pool->nr_segs);
            Zspage *seg = NULL;

            if (!vtmem_account_reserve(pool->acct, cost, cost)) {
                st = VTMEM_ERR_NOSPACE;
            } else {
                seg = vtmem_backing_reserve(SEGMENT_BYTES);
            }
            if (seg) {
                pool->dir[pool->nr_segs++] = seg;
            } else if (st == VTMEM_OK) {
                vtmem_account_release(pool->acct, cost, cost);
                st = VTMEM_ERR_NOMEM;
            }
        }
        if (st == VTMEM_OK) {
            *id = pool->id_next++;
        }
    }
    g_mutex_unlock(&pool->id_lock);
    return st;
}

static void id_free(VtmemZpool *pool, uint32_t id)
{
    g_mutex_lock(&pool->id_lock);
    zspage_of(pool, id)->data = NULL;
    zspage_of(pool, id)->h.next = pool->id_free;
    pool->id_free = id;
    g_mutex_unlock(&pool->id_lock);
}

/* Doubly linked lists of zspage ids; head/tail may be NULL (evac list). */
static void list_add(VtmemZpool *pool, SizeClass *cls, uint32_t *head,
                     uint32_t *tail, uint32_t id, bool at_tail)
{
    ZspageHeader *h = zspage_header(pool, cls, id);

    if (at_tail && tail && *tail != NO_ID) {
        h->prev = *tail;
        h->next = NO_ID;
        zspage_header(pool, cls, *tail)->next = id;
        *tail = id;
        return;
    }
    h->prev = NO_ID;
    h->next = *head;
    if (*head != NO_ID) {
        zspage_header(pool, cls, *head)->prev = id;
    } else if (tail) {
        *tail = id;
    }
    *head = id;
}

static void list_del(VtmemZpool *pool, SizeClass *cls, uint32_t *head,
                     uint32_t *tail, uint32_t id)
{
    ZspageHeader *h = zspage_header(pool, cls, id);

    if (h->prev != NO_ID) {
        zspage_header(pool, cls, h->prev)->next = h->next;
    } else {
        *head = h->next;
    }
    if (h->next != NO_ID) {
        zspage_header(pool, cls, h->next)->prev = h->prev;
    } else if (tail) {
        *tail = h->prev;
    }
}

/*
 * Fault in a new zspage's whole pages with one system call rather than one
 * page fault per page as its slots fill: a new block is untouched memory,
 * and its page faults cost a fill of fresh zspages (the usual put) about 3%
 * of its time. Best effort: older kernels (before 5.14) refuse the advice,
 * and then the pages fault in as they are written.
 */
static void zspage_prefault(unsigned char *data, size_t size)
{
#ifdef MADV_POPULATE_WRITE
    if (size > PAGE) {  /* one page alone: its fault is no dearer */
        (void)madvise(data, size, MADV_POPULATE_WRITE);
    }
#else
    (void)data;
    (void)size;
#endif
}

/* New empty zspage, put at the head of the partial list. Class locked. */
static vtmem_status zspage_create(VtmemZpool *pool, SizeClass *cls,
                                  uint32_t *id)
{
    uint64_t cost = zspage_bytes(cls);
    vtmem_status st;
    void *data;
    uint32_t ref;

    if (!vtmem_account_reserve(pool->acct, cost, 0)) {
        return VTMEM_ERR_NOSPACE;
    }
    st = id_alloc(pool, id);
    if (st != VTMEM_OK) {
        vtmem_account_release(pool->acct, cost, 0);
        return st;
    }
    st = vtmem_backing_alloc(&cls->backing, &data, &ref);
    if (st != VTMEM_OK) {
        id_free(pool, *id);
        vtmem_account_release(pool->acct, cost, 0);
        return st;
    }
    zspage_prefault(data, cost);
    Zspage *zs = zspage_of(pool, *id);
    memset(&zs->h, 0, sizeof(zs->h));
    zs->data = data;
    zs->ref = ref;
    ZspageHeader *h = &zs->h;
    h->free_head = NO_IDX;
    list_add(pool, cls, &cls->partial_head, &cls->partial_tail, *id, false);
    cls->zspages++;
    atomic_fetch_add_explicit(&cls->free_slots, cls->objs,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->zspages, 1, memory_order_relaxed);
    return VTMEM_OK;
}

/* Give an empty zspage back. Class locked, not on any list. */
static uint64_t zspage_destroy(VtmemZpool *pool, SizeClass *cls, uint32_t id)
{
    uint64_t cost = zspage_bytes(cls);

    vtmem_backing_free(&cls->backing, zspage_of(pool, id)->ref);
    id_free(pool, id);
    cls->zspages--;
    atomic_fetch_sub_explicit(&cls->free_slots, cls->objs,
                              memory_order_relaxed);
    atomic_fetch_sub_explicit(&pool->zspages, 1, memory_order_relaxed);
    vtmem_account_release(pool->acct, cost, 0);
    return cost;
}

/* Take a slot from the partial list's head zspage. Class locked. */
static VtmemZhandle slot_take(VtmemZpool *pool, SizeClass *cls)
{
    uint32_t id = cls->partial_head;
    ZspageHeader *h = zspage_header(pool, cls, id);
    uint16_t idx;

    if (h->free_head != NO_IDX) {
        idx = h->free_head;
        memcpy(&h->free_head, zspage_data(pool, id) + (size_t)idx * cls->size,
               sizeof(h->free_head));
    } else {
        idx = h->top++;
    }
    atomic_fetch_sub_explicit(&cls->free_slots, 1, memory_order_relaxed);
    if (++h->inuse == cls->objs) {
        list_del(pool, cls, &cls->partial_head, &cls->partial_tail, id);
    }
    return ((VtmemZhandle)id << VTMEM_ZPOOL_IDX_BITS) | idx;
}

/* Return a slot; frees the zspage when it empties. Class locked. */
static uint64_t slot_put(VtmemZpool *pool, SizeClass *cls, VtmemZhandle hd)
{
    uint32_t id = (uint32_t)(hd >> VTMEM_ZPOOL_IDX_BITS);
    uint16_t idx = (uint16_t)(hd & ((1u << VTMEM_ZPOOL_IDX_BITS) - 1));
    ZspageHeader *h = zspage_header(pool, cls, id);
    bool was_full = h->inuse == cls->objs;
    bool evac = h->flags & FLAG_EVAC;

    memcpy(zspage_data(pool, id) + (size_t)idx * cls->size, &h->free_head,
           sizeof(h->free_head));
    h->free_head = idx;
    h->inuse--;
    atomic_fetch_add_explicit(&cls->free_slots, 1, memory_order_relaxed);
    if (h->inuse == 0) {
        if (evac) {
            list_del(pool, cls, &cls->evac_head, NULL, id);
        } else if (!was_full) {
            list_del(pool, cls, &cls->partial_head, &cls->partial_tail, id);
        }
        return zspage_destroy(pool, cls, id);
    }
    if (was_full && !evac) {
        /* behind the zspages being filled: keeps those dense */
        list_add(pool, cls, &cls->partial_head, &cls->partial_tail, id, true);
    }
    return 0;
}

vtmem_status vtmem_zpool_alloc(VtmemZpool *pool, size_t size,
                               VtmemZhandle *handle)
{
    if (!pool || !handle || size == 0 || size > VTMEM_ZPOOL_MAX_SIZE) {
        return VTMEM_ERR_INVAL;
    }
    SizeClass *cls = class_for(pool, size);
    vtmem_status st = VTMEM_OK;
    uint32_t id;

    g_mutex_lock(&cls->lock);
    if (cls->partial_head == NO_ID) {
        st = zspage_create(pool, cls, &id);
    }
    if (st == VTMEM_OK) {
        *handle = slot_take(pool, cls);
    }
    g_mutex_unlock(&cls->lock);
    return st;
}

void *vtmem_zpool_map(VtmemZpool *pool, VtmemZhandle handle, size_t size)
{
    SizeClass *cls = class_for(pool, size);
    uint32_t id = (uint32_t)(handle >> VTMEM_ZPOOL_IDX_BITS);
    size_t idx = handle & ((1u << VTMEM_ZPOOL_IDX_BITS) - 1);

    return zspage_data(pool, id) + idx * cls->size;
}

void vtmem_zpool_free(VtmemZpool *pool, VtmemZhandle handle, size_t size)
{
    SizeClass *cls = class_for(pool, size);

    g_mutex_lock(&cls->lock);
    slot_put(pool, cls, handle);
    g_mutex_unlock(&cls->lock);
}

typedef struct ZspageUse {
    uint32_t id;
    uint32_t inuse;
} ZspageUse;

static int by_inuse(const void *a, const void *b)
{
    const ZspageUse *x = a, *y = b;
    return (x->inuse > y->inuse) - (x->inuse < y->inuse);
}

uint32_t vtmem_zpool_nr_classes(VtmemZpool *pool)
{
    return pool->nr_classes;
}

uint64_t vtmem_zpool_compact_begin_class(VtmemZpool *pool, uint32_t c)
{
    SizeClass *cls = &pool->classes[c];
    GArray *use = g_array_new(FALSE, FALSE, sizeof(ZspageUse));
    uint64_t room = 0, moving = 0, looked;

    g_mutex_lock(&cls->lock);
    for (uint32_t id = cls->partial_head; id != NO_ID;) {
        ZspageHeader *h = zspage_header(pool, cls, id);
        ZspageUse u = { id, h->inuse };
        g_array_append_val(use, u);
        room += cls->objs - h->inuse;
        id = h->next;
    }
    g_array_sort(use, by_inuse);
    /*
     * Empty the sparsest zspages while what they hold still fits in
     * the free room of the zspages that stay.
     */
    for (guint i = 0; i < use->len; i++) {
        ZspageUse *u = &g_array_index(use, ZspageUse, i);
        room -= cls->objs - u->inuse;
        if (moving + u->inuse > room) {
            break;
        }
        moving += u->inuse;
        list_del(pool, cls, &cls->partial_head, &cls->partial_tail, u->id);
        list_add(pool, cls, &cls->evac_head, NULL, u->id, false);
        zspage_header(pool, cls, u->id)->flags |= FLAG_EVAC;
    }
    g_mutex_unlock(&cls->lock);
    looked = use->len;
    g_array_free(use, TRUE);
    return looked;
}

bool vtmem_zpool_compact_move(VtmemZpool *pool, VtmemZhandle *handle,
                              size_t size, uint64_t *released)
{
    SizeClass *cls = class_for(pool, size);
    uint32_t id = (uint32_t)(*handle >> VTMEM_ZPOOL_IDX_BITS);
    bool moved = false;

    g_mutex_lock(&cls->lock);
    /* Never takes a new zspage: a move must not cost memory. */
    if (cls->evac_head != NO_ID && cls->partial_head != NO_ID &&
        (zspage_header(pool, cls, id)->flags & FLAG_EVAC)) {
        VtmemZhandle to = slot_take(pool, cls);
        memcpy(vtmem_zpool_map(pool, to, size),
               vtmem_zpool_map(pool, *handle, size), size);
        *released += slot_put(pool, cls, *handle);
        *handle = to;
        moved = true;
    }
    g_mutex_unlock(&cls->lock);
    return moved;
}

void vtmem_zpool_compact_end(VtmemZpool *pool)
{
    for (uint32_t c = 0; c < pool->nr_classes; c++) {
        SizeClass *cls = &pool->classes[c];

        g_mutex_lock(&cls->lock);
        while (cls->evac_head != NO_ID) {
            uint32_t id = cls->evac_head;
            list_del(pool, cls, &cls->evac_head, NULL, id);
            zspage_header(pool, cls, id)->flags &= (uint8_t)~FLAG_EVAC;
            list_add(pool, cls, &cls->partial_head, &cls->partial_tail, id,
                     true);
        }
        g_mutex_unlock(&cls->lock);
    }
}

uint64_t vtmem_zpool_resident_bytes(VtmemZpool *pool)
{
    uint64_t bytes = 0;

    for (uint32_t c = 0; pool && c < pool->nr_classes; c++) {
        g_mutex_lock(&pool->classes[c].lock);
        bytes += vtmem_backing_resident(&pool->classes[c].backing);
        g_mutex_unlock(&pool->classes[c].lock);
    }
    return bytes;
}

uint64_t vtmem_zpool_free_slot_bytes(VtmemZpool *pool)
{
    uint64_t bytes = 0;

    for (uint32_t c = 0; pool && c < pool->nr_classes; c++) {
        bytes += atomic_load_explicit(&pool->classes[c].free_slots,
                                      memory_order_relaxed) *
                 pool->classes[c].size;
    }
    return bytes;
}

uint64_t vtmem_zpool_zspages(VtmemZpool *pool)
{
    return pool ? atomic_load_explicit(&pool->zspages, memory_order_relaxed)
                : 0;
}

void vtmem_zpool_usage(VtmemZpool *pool, VtmemZpoolUsage *u)
{
    memset(u, 0, sizeof(*u));
    if (!pool) {
        return;
    }
    u->classes = pool->nr_classes;
    for (uint32_t c = 0; c < pool->nr_classes; c++) {
        SizeClass *cls = &pool->classes[c];
        uint64_t partial = 0, free_slots = 0;

        g_mutex_lock(&cls->lock);
        for (uint32_t id = cls->partial_head; id != NO_ID;) {
            ZspageHeader *h = zspage_header(pool, cls, id);
            partial++;
            free_slots += cls->objs - h->inuse;
            id = h->next;
        }
        u->zspages += cls->zspages;
        u->partial_zspages += partial;
        u->page_bytes += cls->zspages * cls->pages * PAGE;
        u->objects += cls->zspages * cls->objs - free_slots;
        u->slot_bytes += (cls->zspages * cls->objs - free_slots) * cls->size;
        u->free_slot_bytes += free_slots * cls->size;
        g_mutex_unlock(&cls->lock);
    }
}
