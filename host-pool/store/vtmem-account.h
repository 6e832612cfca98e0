/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem memory accounting: what the page store holds, and its limit.
 *
 * held = the pages of the store's own mappings that hold data (zspages and
 * slot-table chunks, vtmem-backing.h: each page is given back to the
 * kernel when it no longer holds data, so these are the store's resident
 * pages) + the metadata the store took from the heap (slot-table leaves,
 * zspage directory, region tables, fixed structures), charged at the
 * heap's chunk size (vtmem_heap_cost), and the zspage directory's top
 * level (reserved address space) by the page as it is written. Slack, not
 * counted: heap memory kept after the store freed metadata into it (only
 * the small region tables are freed before the store is; leaves and
 * directory segments stay until then).
 */
#ifndef VTMEM_ACCOUNT_H
#define VTMEM_ACCOUNT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct VtmemAccount {
    _Atomic uint64_t held;      /* all bytes: allocator pages + metadata */
    _Atomic uint64_t metadata;  /* of held: tables, chunks, heap overhead */
    _Atomic uint64_t limit;
} VtmemAccount;

/* Bytes glibc's heap uses for a request of size bytes (metadata only). */
static inline uint64_t vtmem_heap_cost(size_t size)
{
    uint64_t chunk = ((uint64_t)size + 8 + 15) & ~(uint64_t)15;
    return chunk < 32 ? 32 : chunk;
}

/*
 * Take bytes (of which meta are metadata) if held stays within the limit.
 * Lock-free so that reservations from several threads never overshoot.
 */
static inline bool vtmem_account_reserve(VtmemAccount *acct, uint64_t bytes,
                                         uint64_t meta)
{
    uint64_t held = atomic_load_explicit(&acct->held, memory_order_relaxed);
    do {
        uint64_t limit = atomic_load_explicit(&acct->limit,
                                              memory_order_relaxed);
        if (bytes > limit || held > limit - bytes) {
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&acct->held, &held,
                                                    held + bytes,
                                                    memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_fetch_add_explicit(&acct->metadata, meta, memory_order_relaxed);
    return true;
}

/* Take bytes regardless of the limit (fixed costs at creation). */
static inline void vtmem_account_charge(VtmemAccount *acct, uint64_t bytes,
                                        uint64_t meta)
{
    atomic_fetch_add_explicit(&acct->held, bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&acct->metadata, meta, memory_order_relaxed);
}

static inline void vtmem_account_release(VtmemAccount *acct, uint64_t bytes,
                                         uint64_t meta)
{
    atomic_fetch_sub_explicit(&acct->held, bytes, memory_order_relaxed);
    atomic_fetch_sub_explicit(&acct->metadata, meta, memory_order_relaxed);
}

/* True if held already exceeds the limit: puts are refused then. */
static inline bool vtmem_account_over(VtmemAccount *acct)
{
    return atomic_load_explicit(&acct->held, memory_order_relaxed) >
           atomic_load_explicit(&acct->limit, memory_order_relaxed);
}

#endif /* VTMEM_ACCOUNT_H */
