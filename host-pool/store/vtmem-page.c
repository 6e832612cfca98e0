/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vtmem page helpers: same-filled detection and fill. */
#include "vtmem-page.h"

#include <string.h>

#include "vtmem-store.h"

#define WORDS (VTMEM_STORE_PAGE_SIZE / sizeof(uint64_t))

bool vtmem_page_same_filled(const void *page, uint64_t *word)
{
    const unsigned char *bytes = page;
    uint64_t first, last;

    /* memcpy: the caller's buffer need not be 8-byte aligned. */
    memcpy(&first, bytes, sizeof(first));
    memcpy(&last, bytes + VTMEM_STORE_PAGE_SIZE - sizeof(last), sizeof(last));
    if (first != last) {
        return false;  /* cheap early exit for most ordinary pages */
    }
    /* Page is periodic with period 8 iff it equals itself shifted by 8. */
    if (memcmp(bytes, bytes + sizeof(uint64_t),
               VTMEM_STORE_PAGE_SIZE - sizeof(uint64_t)) != 0) {
        return false;
    }
    *word = first;
    return true;
}

void vtmem_page_fill(void *page, uint64_t word)
{
    unsigned char *bytes = page;

    for (size_t i = 0; i < WORDS; i++) {
        memcpy(bytes + i * sizeof(word), &word, sizeof(word));
    }
}
