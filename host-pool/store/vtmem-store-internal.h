/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vtmem page store internals for tests and benchmarks, not for devices. */
#ifndef VTMEM_STORE_INTERNAL_H
#define VTMEM_STORE_INTERNAL_H

#include "vtmem-store.h"
#include "vtmem-zpool.h"

/* How the store's allocator uses its memory now. */
void vtmem_store_zpool_usage(VtmemStore *store, VtmemZpoolUsage *usage);

/*
 * Bytes of the store's own mappings (zspages, slot-table chunks) resident
 * in RAM now, as mincore sees them. Metadata from the heap is not in them.
 */
uint64_t vtmem_store_resident_bytes(VtmemStore *store);

#endif /* VTMEM_STORE_INTERNAL_H */
