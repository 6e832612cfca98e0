/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem backing: page-granular memory owned by one page store.
 *
 * A VtmemBacking hands out blocks of one size (a whole number of 4 KiB
 * pages) carved from anonymous mappings of VTMEM_BACKING_REGION bytes that
 * it maps itself. A freed block's pages go back to the kernel at once
 * (MADV_DONTNEED), whichever thread frees it; a region whose blocks are
 * all free is unmapped, and the region table is freed with the last
 * region. So the store's resident memory is exactly the blocks in use: no
 * malloc arena keeps freed pages, and vtmem_backing_resident() can check
 * it with mincore.
 * A block comes back zero-filled (fresh or discarded anonymous pages).
 *
 * Not thread-safe: the caller serialises calls on one VtmemBacking.
 */
#ifndef VTMEM_BACKING_H
#define VTMEM_BACKING_H

#include <stddef.h>
#include <stdint.h>

#include "vtmem-account.h"
#include "vtmem-store.h"

#define VTMEM_BACKING_REGION (UINT64_C(1) << 20)  /* 256 pages */
/*
 * Every mapping of the store is marked (vtmem-backing.c): no transparent
 * huge pages, not inherited by fork(), and named "[anon:vtmem-store]" in
 * /proc/PID/smaps where the kernel can (CONFIG_ANON_VMA_NAME).
 */
#define VTMEM_BACKING_NAME "vtmem-store"

typedef struct VtmemRegion VtmemRegion;

typedef struct VtmemBacking {
    VtmemAccount *acct;    /* charged for the region table (metadata) */
    uint32_t block_bytes;  /* a multiple of 4096, at most a region */
    uint32_t per_region;   /* blocks per region */
    VtmemRegion *regions;  /* table; an entry's region may be unmapped */
    uint32_t nr_regions, cap_regions;
    uint32_t avail;        /* list of mapped regions with a free block */
    uint32_t unmapped;     /* list of table entries without a region */
    uint32_t mapped;       /* regions mapped now */
    uint64_t table_cost;   /* charged for the table */
} VtmemBacking;

void vtmem_backing_init(VtmemBacking *b, uint32_t block_bytes,
                        VtmemAccount *acct);
/* Unmaps everything (blocks still in use included). */
void vtmem_backing_destroy(VtmemBacking *b);

/*
 * A zero-filled block; *ref names it for vtmem_backing_free. The block's
 * bytes are the caller's to charge. VTMEM_ERR_NOSPACE if growing the
 * region table would pass the account's limit, VTMEM_ERR_NOMEM if the
 * host refuses memory.
 */
vtmem_status vtmem_backing_alloc(VtmemBacking *b, void **block,
                                 uint32_t *ref);
void vtmem_backing_free(VtmemBacking *b, uint32_t ref);

/* Bytes of this backing's mappings resident in RAM now (mincore). */
uint64_t vtmem_backing_resident(VtmemBacking *b);

/*
 * Reserve size bytes of address space for a table that is touched from its
 * start as it grows (no memory until written; charge what is written),
 * marked as the regions are.
 * NULL on failure. vtmem_backing_unreserve gives it back.
 */
void *vtmem_backing_reserve(size_t size);
void vtmem_backing_unreserve(void *table, size_t size);

#endif /* VTMEM_BACKING_H */
