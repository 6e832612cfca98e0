/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem migration stream: a store's objects, as stored, in a format of our
 * own (docs/virtio-tmem.md, "Migration stream"), independent of QEMU's
 * version. The saver harvests the source store's dirty log and writes
 * records through a caller's write function; the loader reads them through
 * a read function, validates everything and fills a destination store.
 * QEMU's device maps the two functions to qemu_put_buffer/qemu_get_buffer.
 */
#ifndef VTMEM_STREAM_H
#define VTMEM_STREAM_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vtmem-store.h"

#define VTMEM_STREAM_MAGIC "VTMEMMIG"  /* 8 bytes, no NUL in the stream */
#define VTMEM_STREAM_VERSION 1u

/* Record kinds: low 8 bits of a record's first big-endian 64-bit word. */
enum {
    VTMEM_REC_LZ4 = 0x01,          /* be16 len (1..3072), len bytes */
    VTMEM_REC_RAW = 0x02,          /* one page */
    VTMEM_REC_SAME = 0x03,         /* be64 word */
    VTMEM_REC_EMPTY = 0x04,        /* be32 count (>= 1): slots now empty */
    VTMEM_REC_SECTION_END = 0x10,  /* end of one save call's records */
    VTMEM_REC_END = 0x11,          /* end of the stream */
};

#define VTMEM_STREAM_ERROR (vtmem_stream_error_quark())
GQuark vtmem_stream_error_quark(void);

typedef enum VtmemStreamError {
    VTMEM_STREAM_ERR_IO,        /* the write or read function failed */
    VTMEM_STREAM_ERR_FORMAT,    /* malformed stream */
    VTMEM_STREAM_ERR_MISMATCH,  /* page size or slot count differ */
    VTMEM_STREAM_ERR_STORE,     /* a store operation failed */
} VtmemStreamError;

/* Write len bytes; false on failure. */
typedef bool (*VtmemStreamWriteFn)(void *opaque, const void *buf,
                                   size_t len);
/* Read exactly len bytes into buf; false if they are not there. */
typedef bool (*VtmemStreamReadFn)(void *opaque, void *buf, size_t len);

/* A VtmemStreamWriteFn appending to the GByteArray opaque. */
bool vtmem_stream_write_byte_array(void *opaque, const void *buf,
                                   size_t len);

/* A memory source for the loader: VtmemStreamReadFn with opaque = this. */
typedef struct VtmemStreamBuf {
    const uint8_t *data;
    size_t len;
    size_t pos;
} VtmemStreamBuf;
bool vtmem_stream_read_buf(void *opaque, void *buf, size_t len);

/* ---- Source side ---- */

typedef struct VtmemStreamSaver VtmemStreamSaver;

/*
 * Start the store's dirty log (every stored slot marked) and write the
 * header section. NULL with *err set on failure (nothing left running).
 */
VtmemStreamSaver *vtmem_stream_save_begin(VtmemStore *store,
                                          VtmemStreamWriteFn write,
                                          void *opaque, GError **err);

/*
 * One section: records for dirty slots, until about budget bytes are
 * written (at least one record), then SECTION_END. Returns 1 if no slot
 * was dirty when it stopped, 0 if more remain, -1 with *err on failure
 * (the store's log lost a change, or the write function failed).
 */
int vtmem_stream_save_iterate(VtmemStreamSaver *saver, uint64_t budget,
                              GError **err);

/*
 * Final section, writers stopped (VM paused): every dirty slot, then END.
 * false with *err on failure.
 */
bool vtmem_stream_save_complete(VtmemStreamSaver *saver, GError **err);

/* Estimated bytes still to send: dirty slots x average record size. */
uint64_t vtmem_stream_save_pending(VtmemStreamSaver *saver);

/* Bytes written so far. */
uint64_t vtmem_stream_save_bytes(VtmemStreamSaver *saver);

/* Stop the dirty log and free the saver (NULL is fine). */
void vtmem_stream_save_end(VtmemStreamSaver *saver);

/* ---- Destination side ---- */

typedef struct VtmemStreamLoader VtmemStreamLoader;

/*
 * Prepare to load into dest, which must be empty when the header is read.
 * The store's limit is not enforced until vtmem_stream_load_end.
 */
VtmemStreamLoader *vtmem_stream_load_begin(VtmemStore *dest,
                                           VtmemStreamReadFn read,
                                           void *opaque);

/*
 * Read one section (the first one is the header section): 0 at
 * SECTION_END, 1 at END, -1 with *err on any error. After an error or END
 * every further call fails.
 */
int vtmem_stream_load_section(VtmemStreamLoader *loader, GError **err);

/* The source's memory_held, from the header (0 before it is read). */
uint64_t vtmem_stream_load_source_held(VtmemStreamLoader *loader);

/*
 * Enforce the limit again and free the loader. Unless END was read
 * without error, the destination store is emptied: it never keeps part of
 * a stream. Returns true if the whole stream was loaded.
 */
bool vtmem_stream_load_end(VtmemStreamLoader *loader);

/*
 * A whole stream in memory (tests, fuzzing, files): header, sections, END,
 * nothing after it. On failure *err is set and dest is left empty.
 */
bool vtmem_stream_load_bytes(VtmemStore *dest, const void *data, size_t len,
                             GError **err);

#endif /* VTMEM_STREAM_H */
