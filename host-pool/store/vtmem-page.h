/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vtmem page helpers: same-filled pages (one machine word repeated). */
#ifndef VTMEM_PAGE_H
#define VTMEM_PAGE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * True if the page is one 8-byte word repeated (zero pages included);
 * *word receives it. Such pages are kept as the word alone.
 */
bool vtmem_page_same_filled(const void *page, uint64_t *word);

/* Fill a page with word. */
void vtmem_page_fill(void *page, uint64_t word);

#endif /* VTMEM_PAGE_H */
