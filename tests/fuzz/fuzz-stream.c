/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness: the migration stream loader (vtmem-stream.h) on
 * arbitrary bytes, into a store of 1000 slots (the seeds' slot count).
 * Oracle beyond "no crash, no sanitizer report": a rejected stream leaves
 * the store empty; an accepted one leaves every stored slot readable as
 * exactly one page. A store per input: LeakSanitizer does not scan the
 * store's own mappings, where a long-lived store keeps heap pointers.
 */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz.h"
#include "vtmem-store.h"
#include "vtmem-stream.h"

#define FUZZ_SLOTS 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t page[VTMEM_STORE_PAGE_SIZE];
    VtmemStore *dest = vtmem_store_new(FUZZ_SLOTS, 1 << 20);
    VtmemStoreStats stats;
    GError *err = NULL;
    bool ok;

    ok = vtmem_stream_load_bytes(dest, data, size, &err);
    if (ok == (err != NULL)) {
        abort();  /* an error exactly when loading failed */
    }
    g_clear_error(&err);
    vtmem_store_get_stats(dest, &stats);
    if (!ok && stats.stored_pages) {
        abort();  /* half-loaded */
    }
    for (uint64_t slot = 0; ok && slot < FUZZ_SLOTS; slot++) {
        vtmem_status st = vtmem_store_get(dest, slot, page);
        if (st != VTMEM_OK && st != VTMEM_ERR_NOENT) {
            abort();  /* an object that is not one page got in */
        }
    }
    vtmem_store_free(dest);
    return 0;
}
