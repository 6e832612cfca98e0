/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem page store: one VM's swapped-out pages, compressed, in host RAM.
 *
 * Keyed by swap slot number. Thread-safe: any function may be called from
 * several threads at once (several device queues) on the same store.
 * Nothing here aborts on bad input: every function reports a defined
 * vtmem_status.
 */
#ifndef VTMEM_STORE_H
#define VTMEM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VTMEM_STORE_PAGE_SIZE 4096

typedef enum vtmem_status {
    VTMEM_OK = 0,
    VTMEM_ERR_NOSPACE = -1,  /* put refused: would exceed the limit */
    VTMEM_ERR_NOENT = -2,    /* slot holds nothing */
    VTMEM_ERR_RANGE = -3,    /* slot (or range) beyond nr_slots */
    VTMEM_ERR_INVAL = -4,    /* NULL pointer or other bad argument */
    VTMEM_ERR_NOMEM = -5,    /* the host could not allocate memory */
} vtmem_status;

typedef struct VtmemStore VtmemStore;

typedef struct VtmemStoreStats {
    uint64_t stored_pages;       /* slots holding data, any kind */
    uint64_t same_filled_pages;  /* of those: kept as one word, no allocation */
    uint64_t raw_pages;          /* of those: stored uncompressed */
    uint64_t compressed_bytes;   /* payload bytes of compressed objects */
    uint64_t raw_bytes;          /* payload bytes of raw objects */
    uint64_t memory_held;        /* zspage pages + metadata: what limit caps */
    uint64_t metadata_bytes;     /* of memory_held: slot table, directory */
    uint64_t limit;              /* current limit in bytes */
    uint64_t puts;               /* successful puts */
    uint64_t gets;               /* successful gets */
    uint64_t invalidations;      /* slots dropped by invalidate/range */
    uint64_t refusals;           /* puts refused with VTMEM_ERR_NOSPACE */
    uint64_t compactions;        /* compaction passes completed */
    uint64_t compacted_objects;  /* objects moved by compaction */
    uint64_t compacted_bytes;    /* bytes of memory returned by compaction */
} VtmemStoreStats;

/*
 * nr_slots: valid slots are 0 .. nr_slots - 1 (at most 2^32).
 * limit: bytes of memory_held allowed; UINT64_MAX for none.
 * Returns NULL only if nr_slots is 0 or too large, or on allocation failure.
 */
VtmemStore *vtmem_store_new(uint64_t nr_slots, uint64_t limit);
void vtmem_store_free(VtmemStore *store);  /* NULL is fine */

uint64_t vtmem_store_nr_slots(const VtmemStore *store);

/*
 * Store a copy of the VTMEM_STORE_PAGE_SIZE bytes at page into slot,
 * replacing what the slot held. On VTMEM_ERR_NOSPACE the slot is left
 * EMPTY (never holds an older copy afterwards) and no other slot changes;
 * metadata the put made on the way (the slot-table leaf of the slot's
 * 253440 slots, a zspage directory segment and a page of its top level, a
 * grown region table), within the limit, stays for reuse as it would after
 * a successful put: memory_held may grow by that much (24 KiB at most
 * seen), never past the limit. On RANGE/INVAL nothing changes at all.
 */
vtmem_status vtmem_store_put(VtmemStore *store, uint64_t slot,
                             const void *page);

/* Copy the page held in slot into buf (VTMEM_STORE_PAGE_SIZE bytes). */
vtmem_status vtmem_store_get(VtmemStore *store, uint64_t slot, void *buf);

/* Drop slot. VTMEM_ERR_NOENT if it held nothing. */
vtmem_status vtmem_store_invalidate(VtmemStore *store, uint64_t slot);

/*
 * Drop slots first .. first + count - 1 (empty ones are skipped).
 * VTMEM_ERR_RANGE (and nothing dropped) if the range leaves 0 .. nr_slots.
 * *dropped (may be NULL) receives the number of slots that held data.
 */
vtmem_status vtmem_store_invalidate_range(VtmemStore *store, uint64_t first,
                                          uint64_t count, uint64_t *dropped);

/* Drop everything (device reset). */
void vtmem_store_invalidate_all(VtmemStore *store);

/*
 * Call fn for every slot holding data, in increasing slot order, with the
 * decompressed page (valid during the call only). Stops early and returns
 * fn's value if fn returns non-zero; else returns 0. fn must not call back
 * into the store; the store is locked against writers meanwhile only per
 * slot, so concurrent puts may or may not be seen. VTMEM_ERR_INVAL if
 * store or fn is NULL.
 */
typedef int (*VtmemStoreIterFn)(uint64_t slot, const void *page, void *opaque);
int vtmem_store_iterate(VtmemStore *store, VtmemStoreIterFn fn, void *opaque);

/*
 * Move objects out of sparsely used allocator pages and release the
 * emptied ones: one full pass (a pass already begun by
 * vtmem_store_compact_step is finished first). Returns the bytes of memory
 * released.
 */
uint64_t vtmem_store_compact(VtmemStore *store);

/*
 * Bytes held by allocator pages beyond what live objects occupy (cheap,
 * lock-free read): the free object slots in the allocator's pages, which
 * compaction can give back in part. Class rounding inside a live object's
 * slot and the unusable tail of a zspage are not counted.
 */
uint64_t vtmem_store_fragmentation(VtmemStore *store);

/*
 * One bounded step of compaction: looks at no more than max_slots slots (or
 * an equivalent amount of work: an untouched stretch of the slot table
 * counts as one slot; 0 counts as 1), moves what it can, releases emptied
 * pages. Returns true when the current pass is complete (the next call
 * starts a new pass). *released (may be NULL) is incremented by the bytes
 * of memory given back. Safe against concurrent put/get/invalidate from
 * other threads; only one compaction (step or full) runs at a time
 * (serialised inside the store). A NULL store returns true.
 */
bool vtmem_store_compact_step(VtmemStore *store, uint64_t max_slots,
                              uint64_t *released);

/*
 * Change the limit. Lowering it below memory_held drops nothing: puts
 * are refused until usage falls below the limit. (Precisely: a put is
 * accepted only if memory_held after it is within the limit; this holds
 * for same-filled pages too, although they take no allocation.)
 */
void vtmem_store_set_limit(VtmemStore *store, uint64_t limit);

void vtmem_store_get_stats(VtmemStore *store, VtmemStoreStats *stats);

/* Cheap: bytes of memory held now (for virtio config space). */
uint64_t vtmem_store_memory_held(VtmemStore *store);

/*
 * Migration support (docs/virtio-tmem.md, "Migration stream").
 *
 * An object as the store holds it, copied out without decompression or put
 * back without recompression. LZ4: len 1 .. VTMEM_STORE_LZ4_MAX bytes of
 * an LZ4 block that decompresses to one page; RAW: len = one page; SAME:
 * the page is word repeated, len 0; EMPTY: nothing, len 0.
 */
#define VTMEM_STORE_LZ4_MAX 3072

typedef enum VtmemObjKind {
    VTMEM_OBJ_EMPTY = 0,
    VTMEM_OBJ_SAME = 1,
    VTMEM_OBJ_LZ4 = 2,
    VTMEM_OBJ_RAW = 3,
} VtmemObjKind;

typedef struct VtmemStoreObj {
    VtmemObjKind kind;
    uint32_t len;   /* bytes of data (LZ4, RAW), else 0 */
    uint64_t word;  /* SAME only */
} VtmemStoreObj;

/*
 * Copy slot's object as stored into *obj and buf (VTMEM_STORE_PAGE_SIZE
 * bytes); an empty slot gives kind EMPTY and VTMEM_OK.
 */
vtmem_status vtmem_store_get_object(VtmemStore *store, uint64_t slot,
                                    VtmemStoreObj *obj, void *buf);

/*
 * Store an object taken from another store (EMPTY drops the slot). Checks
 * kind and length only: the stream decoder checks that LZ4 data
 * decompresses to one page. Otherwise as vtmem_store_put.
 */
vtmem_status vtmem_store_put_object(VtmemStore *store, uint64_t slot,
                                    const VtmemStoreObj *obj,
                                    const void *data);

/*
 * While on, the limit is not enforced (memory is still counted): an
 * incoming migration loads everything the source held, then the device
 * applies its own limit and lets the guest shrink. set_limit still records.
 */
void vtmem_store_set_unlimited(VtmemStore *store, bool on);

/*
 * Dirty log, for the migration source. While it runs, every change of a
 * slot's content (put, refused put that dropped a copy, invalidate,
 * invalidate_range/all, put_object) sets the slot's bit, under the slot's
 * lock. start marks every slot holding data. VTMEM_ERR_INVAL if already
 * running, VTMEM_ERR_NOMEM if the log's directory cannot be allocated.
 * stop must not race with dirty_next (the caller's one harvesting thread).
 */
vtmem_status vtmem_store_dirty_start(VtmemStore *store);
void vtmem_store_dirty_stop(VtmemStore *store);

/*
 * The first dirty slot at or after *cursor: under its lock, copy its
 * object as stored (EMPTY if it holds nothing now) into *obj and buf
 * (VTMEM_STORE_PAGE_SIZE bytes) and clear its bit, so that a later change
 * sets it again. *slot receives its number, *cursor the slot after it.
 * VTMEM_ERR_NOENT (and *cursor = nr_slots) if no slot from *cursor on is
 * dirty; VTMEM_ERR_INVAL if the log is not running; VTMEM_ERR_NOMEM if
 * the log lost a change (a bitmap leaf could not be allocated): the
 * migration must fail. The store's content is never changed.
 */
vtmem_status vtmem_store_dirty_next(VtmemStore *store, uint64_t *cursor,
                                    uint64_t *slot, VtmemStoreObj *obj,
                                    void *buf);

/* Number of dirty slots now (0 if the log is not running). */
uint64_t vtmem_store_dirty_count(VtmemStore *store);

const char *vtmem_status_str(vtmem_status status);

#endif /* VTMEM_STORE_H */
