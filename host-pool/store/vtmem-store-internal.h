/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vtmem page store internals for tests and benchmarks, not for devices. */
#ifndef VTMEM_STORE_INTERNAL_H
#define VTMEM_STORE_INTERNAL_H

#include "vtmem-store.h"
#include "vtmem-zpool.h"

/* How the store's allocator uses its memory now. */
void vtmem_store_zpool_usage(VtmemStore *store, VtmemZpoolUsage *usage);

#endif /* VTMEM_STORE_INTERNAL_H */
