/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem backing: blocks carved from the store's own anonymous mappings.
 *
 * Each region has a bitmap of free blocks; regions with a free block are
 * on a doubly linked list (indices into the table, so the table may move
 * when it grows). Blocks are taken lowest first from the list's head.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* MAP_NORESERVE; QEMU's build may define it */
#endif
#include "vtmem-backing.h"

#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#define PAGE 4096u
#define MAX_BLOCKS (VTMEM_BACKING_REGION / PAGE)
#define NONE UINT32_MAX

#ifndef PR_SET_VMA  /* Linux 5.17 */
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

struct VtmemRegion {
    unsigned char *base;   /* NULL: no region mapped for this entry */
    uint32_t prev, next;   /* avail list, or unmapped list (next only) */
    uint32_t used;
    uint32_t on_avail;
    uint64_t free_map[MAX_BLOCKS / 64];  /* bit set: block free */
};

/*
 * Every mapping of the store (regions and reserved tables) is marked:
 * - MADV_NOHUGEPAGE: with transparent huge pages on "always", a 2 MiB
 *   aligned stretch of neighbouring regions could be faulted in, or
 *   collapsed by khugepaged, as one huge page: 2 MiB resident for one
 *   block in use, and MADV_DONTNEED of a block would only split it.
 * - MADV_DONTFORK, as QEMU marks guest RAM: a child of fork() gets no copy
 *   (the guest's data stays out of it, and the parent's writes to store
 *   pages do not copy them while a child lives).
 * - The name VTMEM_BACKING_NAME where the kernel has CONFIG_ANON_VMA_NAME:
 *   "[anon:vtmem-store]" in /proc/PID/maps and smaps.
 * All best effort. The flags also let a reader of /proc/PID/smaps find
 * the store's mappings without the name (VmFlags "nh" and "dc"; nothing
 * else in QEMU has both): the e2e churn scenario does.
 */
static void mapping_mark(void *p, size_t size)
{
    (void)madvise(p, size, MADV_NOHUGEPAGE);
    (void)madvise(p, size, MADV_DONTFORK);
    (void)prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p, size,
                (unsigned long)VTMEM_BACKING_NAME);
}

void vtmem_backing_init(VtmemBacking *b, uint32_t block_bytes,
                        VtmemAccount *acct)
{
    memset(b, 0, sizeof(*b));
    b->acct = acct;
    b->block_bytes = block_bytes;
    b->per_region = (uint32_t)(VTMEM_BACKING_REGION / block_bytes);
    b->avail = b->unmapped = NONE;
}

void vtmem_backing_destroy(VtmemBacking *b)
{
    for (uint32_t i = 0; i < b->nr_regions; i++) {
        if (b->regions[i].base) {
            munmap(b->regions[i].base, VTMEM_BACKING_REGION);
        }
    }
    g_free(b->regions);
    vtmem_account_release(b->acct, b->table_cost, b->table_cost);
    b->regions = NULL;
    b->nr_regions = b->cap_regions = b->mapped = 0;
    b->table_cost = 0;
    b->avail = b->unmapped = NONE;
}

static void avail_add(VtmemBacking *b, uint32_t r)
{
    VtmemRegion *reg = &b->regions[r];

    reg->prev = NONE;
    reg->next = b->avail;
    if (b->avail != NONE) {
        b->regions[b->avail].prev = r;
    }
    b->avail = r;
    reg->on_avail = 1;
}

static void avail_del(VtmemBacking *b, uint32_t r)
{
    VtmemRegion *reg = &b->regions[r];

    if (reg->prev != NONE) {
        b->regions[reg->prev].next = reg->next;
    } else {
        b->avail = reg->next;
    }
    if (reg->next != NONE) {
        b->regions[reg->next].prev = reg->prev;
    }
    reg->on_avail = 0;
}

/* A table entry for a new region: a spare one, or grow the table. */
static vtmem_status entry_take(VtmemBacking *b, uint32_t *r)
{
    if (b->unmapped != NONE) {
        *r = b->unmapped;
        b->unmapped = b->regions[*r].next;
        return VTMEM_OK;
    }
    if (b->nr_regions == b->cap_regions) {
        uint32_t cap = b->cap_regions ? b->cap_regions * 2 : 4;
        uint64_t cost = vtmem_heap_cost(cap * sizeof(VtmemRegion));
        VtmemRegion *t;

        if (cap > UINT32_MAX / MAX_BLOCKS) {
            return VTMEM_ERR_NOMEM;
        }
        if (!vtmem_account_reserve(b->acct, cost, cost)) {
            return VTMEM_ERR_NOSPACE;
        }
        t = g_try_renew(VtmemRegion, b->regions, cap);
        if (!t) {
            vtmem_account_release(b->acct, cost, cost);
            return VTMEM_ERR_NOMEM;
        }
        vtmem_account_release(b->acct, b->table_cost, b->table_cost);
        b->table_cost = cost;
        b->regions = t;
        b->cap_regions = cap;
    }
    *r = b->nr_regions++;
    return VTMEM_OK;
}

static vtmem_status region_map(VtmemBacking *b)
{
    vtmem_status st;
    uint32_t r;
    void *base;

    st = entry_take(b, &r);
    if (st != VTMEM_OK) {
        return st;
    }
    /* NORESERVE: only the blocks handed out are ever touched. */
    base = mmap(NULL, VTMEM_BACKING_REGION, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    VtmemRegion *reg = &b->regions[r];
    memset(reg, 0, sizeof(*reg));
    if (base == MAP_FAILED) {
        reg->next = b->unmapped;
        b->unmapped = r;
        return VTMEM_ERR_NOMEM;
    }
    mapping_mark(base, VTMEM_BACKING_REGION);
    reg->base = base;
    for (uint32_t i = 0; i < b->per_region; i++) {
        reg->free_map[i / 64] |= UINT64_C(1) << (i % 64);
    }
    b->mapped++;
    avail_add(b, r);
    return VTMEM_OK;
}

vtmem_status vtmem_backing_alloc(VtmemBacking *b, void **block,
                                 uint32_t *ref)
{
    if (b->avail == NONE) {
        vtmem_status st = region_map(b);
        if (st != VTMEM_OK) {
            return st;
        }
    }
    uint32_t r = b->avail;
    VtmemRegion *reg = &b->regions[r];
    uint32_t w = 0;

    while (!reg->free_map[w]) {
        w++;
    }
    uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(reg->free_map[w]);
    reg->free_map[w] &= ~(UINT64_C(1) << (i % 64));
    if (++reg->used == b->per_region) {
        avail_del(b, r);
    }
    *block = reg->base + (size_t)i * b->block_bytes;
    *ref = r * MAX_BLOCKS + i;
    return VTMEM_OK;
}

void vtmem_backing_free(VtmemBacking *b, uint32_t ref)
{
    uint32_t r = ref / MAX_BLOCKS, i = ref % MAX_BLOCKS;
    VtmemRegion *reg = &b->regions[r];

    reg->free_map[i / 64] |= UINT64_C(1) << (i % 64);
    if (!reg->on_avail) {
        avail_add(b, r);
    }
    if (--reg->used > 0) {
        /* The pages go back to the kernel now; they read as zeros later. */
        (void)madvise(reg->base + (size_t)i * b->block_bytes,
                      b->block_bytes, MADV_DONTNEED);
        return;
    }
    /* An empty region goes; the table goes with the last one. */
    avail_del(b, r);
    munmap(reg->base, VTMEM_BACKING_REGION);
    reg->base = NULL;
    reg->next = b->unmapped;
    b->unmapped = r;
    if (--b->mapped == 0) {
        vtmem_backing_destroy(b);
    }
}

uint64_t vtmem_backing_resident(VtmemBacking *b)
{
    unsigned char vec[MAX_BLOCKS];
    uint64_t pages = 0;

    for (uint32_t r = 0; r < b->nr_regions; r++) {
        if (!b->regions[r].base ||
            mincore(b->regions[r].base, VTMEM_BACKING_REGION, vec) != 0) {
            continue;
        }
        for (uint32_t i = 0; i < MAX_BLOCKS; i++) {
            pages += vec[i] & 1;
        }
    }
    return pages * PAGE;
}

void *vtmem_backing_reserve(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

    if (p == MAP_FAILED) {
        return NULL;
    }
    mapping_mark(p, size);
    return p;
}

void vtmem_backing_unreserve(void *table, size_t size)
{
    if (table) {
        munmap(table, size);
    }
}
