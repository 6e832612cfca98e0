/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem zpool: a size-class allocator that packs compressed pages densely.
 *
 * In the spirit of Linux zsmalloc: objects of 1..4096 bytes are rounded up
 * to a size class (32-byte steps; neighbours with the same zspage shape are
 * merged); each class carves "zspages" of 1..8 contiguous 4 KiB pages into
 * equal slots: the fewest pages within 1% of the least tail waste that hold
 * at least 8 objects (to share the 32-byte per-zspage cost). Objects may
 * straddle page boundaries since a zspage is one contiguous block of the
 * store's own mappings (vtmem-backing.h), given back to the kernel when
 * the zspage is freed.
 *
 * Why up to 8 pages, not 4 (Linux also went to 8 in 6.3,
 * ZSMALLOC_CHAIN_SIZE): with 4, objects of 2-3 KiB, common in real memory,
 * waste up to 15% in zspage tails. Why 32-byte steps, not 16: after
 * compaction each class keeps about one partly filled zspage, so fewer
 * classes waste less. Measured with bench/vtmem-store-bench on captured
 * real pages (payload / memory held after dropping half and compacting):
 * 4 pages + 16 B steps 0.927; 8 + 16 B 0.937-0.946; 16 pages + 16 B 0.892;
 * this choice 0.949-0.950 (0.952-0.954 with the synthetic mix).
 *
 * An object is named by a handle (zspage id, index); the caller keeps the
 * handle and the object's exact size.
 *
 * Concurrency: one lock per class. vtmem_zpool_map needs no lock: the caller
 * must own the handle (hold whatever lock keeps it from being freed or
 * moved), which is enough because a zspage holding a live object is never
 * freed and objects only move through vtmem_zpool_compact_move, which the
 * caller also serialises against its own use of that handle.
 */
#ifndef VTMEM_ZPOOL_H
#define VTMEM_ZPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vtmem-account.h"
#include "vtmem-store.h"

typedef struct VtmemZpool VtmemZpool;

/* (zspage id << VTMEM_ZPOOL_IDX_BITS) | object index; fits in 42 bits. */
typedef uint64_t VtmemZhandle;
#define VTMEM_ZPOOL_IDX_BITS 10
#define VTMEM_ZPOOL_HANDLE_BITS (32 + VTMEM_ZPOOL_IDX_BITS)
#define VTMEM_ZPOOL_MAX_SIZE 4096
/* Objects above this size all share one class of 4096-byte slots. */
#define VTMEM_ZPOOL_HUGE_SIZE 3072

/*
 * max_objects bounds how many objects can be live at once (it sizes the
 * zspage directory). All memory is charged to acct.
 */
VtmemZpool *vtmem_zpool_new(uint64_t max_objects, VtmemAccount *acct);
void vtmem_zpool_destroy(VtmemZpool *pool);

/*
 * Allocate an object of size bytes. May take a new zspage:
 * VTMEM_ERR_NOSPACE if that would exceed acct's limit, VTMEM_ERR_NOMEM if
 * the host refuses memory, VTMEM_ERR_INVAL for a size outside 1..4096.
 */
vtmem_status vtmem_zpool_alloc(VtmemZpool *pool, size_t size,
                               VtmemZhandle *handle);

/* The object's bytes (size must be what it was allocated with). */
void *vtmem_zpool_map(VtmemZpool *pool, VtmemZhandle handle, size_t size);

void vtmem_zpool_free(VtmemZpool *pool, VtmemZhandle handle, size_t size);

/*
 * Compaction, in three steps (the caller serialises compactions):
 * begin_class marks, for each class c < nr_classes, the sparsest zspages
 * whose objects fit into the free room of the others (it returns how many
 * zspages it looked at, a measure of its work); once every class is begun
 * the caller offers every live object to
 * compact_move (with the handle locked against its other users), which
 * moves it if it sits in a marked zspage and updates *handle; end unmarks
 * what could not be emptied. Returns of compact_move: true if moved;
 * *released grows by the bytes given back when a zspage empties.
 */
uint32_t vtmem_zpool_nr_classes(VtmemZpool *pool);
uint64_t vtmem_zpool_compact_begin_class(VtmemZpool *pool, uint32_t c);
bool vtmem_zpool_compact_move(VtmemZpool *pool, VtmemZhandle *handle,
                              size_t size, uint64_t *released);
void vtmem_zpool_compact_end(VtmemZpool *pool);

/* Introspection for tests and benchmarks. */
size_t vtmem_zpool_class_size(size_t size);     /* slot size for size */
unsigned vtmem_zpool_class_pages(size_t size);  /* pages per zspage */
uint64_t vtmem_zpool_zspages(VtmemZpool *pool); /* zspages held now */
/* Bytes of free slots in the zspages held now; lock-free, may lag. */
uint64_t vtmem_zpool_free_slot_bytes(VtmemZpool *pool);
/* Bytes of the pool's mappings resident in RAM now (mincore). */
uint64_t vtmem_zpool_resident_bytes(VtmemZpool *pool);

/* Where the allocator's bytes go (for benchmarks and tuning). */
typedef struct VtmemZpoolUsage {
    uint64_t classes;        /* size classes after merging */
    uint64_t zspages;
    uint64_t partial_zspages;
    uint64_t page_bytes;     /* zspage pages */
    uint64_t slot_bytes;     /* slots of live objects */
    uint64_t free_slot_bytes;/* free slots in partial zspages */
    uint64_t objects;
} VtmemZpoolUsage;
void vtmem_zpool_usage(VtmemZpool *pool, VtmemZpoolUsage *usage);

#endif /* VTMEM_ZPOOL_H */
