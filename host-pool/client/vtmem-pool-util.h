/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by vtmemd, the client library and vtmemctl: strict
 * parsing of the protocol's lines, numbers, sizes and UUIDs.
 */
#ifndef VTMEM_POOL_UTIL_H
#define VTMEM_POOL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vtmem-pool-proto.h"

/* Unsigned decimal, no sign, no leading zeros (except "0"), no overflow. */
bool vtmem_pool_parse_u64(const char *s, uint64_t *out);

/*
 * Sizes: "1048576", "512K", "512M", "2G", "1T" (powers of 1024; suffix
 * in either case, optionally followed by "iB" or "B": "2GiB", "2gb").
 * Rejects empty strings, signs, fractions, spaces and overflow.
 */
bool vtmem_pool_parse_size(const char *s, uint64_t *out);

/* Human-readable size into buf ("1.5 GiB"); returns buf. */
char *vtmem_pool_format_size(uint64_t bytes, char *buf, size_t len);

/* Canonical 8-4-4-4-12 hex UUID (either case). */
bool vtmem_pool_uuid_valid(const char *s);

/*
 * Split line at single spaces into at most max_fields fields; the last
 * field takes the rest of the line (spaces included). Empty fields
 * (double, leading or trailing spaces) are an error: returns NULL.
 * Free with g_strfreev.
 */
char **vtmem_pool_split(const char *line, unsigned max_fields,
                        unsigned *n_fields);


/*
 * Buffered reader of protocol lines from a non-blocking fd.
 */
typedef struct VtmemLineReader {
    char buf[VTMEM_POOL_MAX_LINE];
    size_t len;
} VtmemLineReader;

typedef enum {
    VTMEM_LINE_NONE = 0,    /* no complete line buffered */
    VTMEM_LINE_OK = 1,      /* *line filled (NUL-terminated, no '\n') */
    VTMEM_LINE_ERROR = -1,  /* protocol violation: *why says which */
} VtmemLineResult;

/*
 * Read what the fd has into the buffer (at most the free space).
 * Returns bytes read (>0), 0 at end of file, -1 with errno (EAGAIN when
 * nothing is there).
 */
ssize_t vtmem_line_reader_fill(VtmemLineReader *r, int fd);

/*
 * Take the next complete line out of the buffer. line must hold
 * VTMEM_POOL_MAX_LINE bytes.
 */
VtmemLineResult vtmem_line_reader_next(VtmemLineReader *r, char *line,
                                       const char **why);

#endif /* VTMEM_POOL_UTIL_H */
