/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem migration stream: saver (dirty-log harvest -> records) and loader
 * (records -> validated objects in a destination store). Format in
 * vtmem-stream.h and docs/virtio-tmem.md. All integers are big-endian.
 */
#include "vtmem-stream.h"

#include <lz4.h>
#include <string.h>

#define PAGE VTMEM_STORE_PAGE_SIZE
#define HEADER_BYTES (8 + 4 + 4 + 8 + 8)
#define REC_HEAD_BYTES 8

GQuark vtmem_stream_error_quark(void)
{
    return g_quark_from_static_string("vtmem-stream-error-quark");
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) {
        p[i] = (uint8_t)v;
    }
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < n; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

bool vtmem_stream_write_byte_array(void *opaque, const void *buf, size_t len)
{
    g_byte_array_append(opaque, buf, (guint)len);
    return true;
}

bool vtmem_stream_read_buf(void *opaque, void *buf, size_t len)
{
    VtmemStreamBuf *b = opaque;

    if (b->len - b->pos < len) {
        b->pos = b->len;
        return false;
    }
    memcpy(buf, b->data + b->pos, len);
    b->pos += len;
    return true;
}

/* ---- Source side ---- */

struct VtmemStreamSaver {
    VtmemStore *store;
    VtmemStreamWriteFn write;
    void *opaque;
    uint64_t cursor;      /* next slot of the current round */
    uint64_t run_first;   /* pending EMPTY run */
    uint64_t run_count;
    uint64_t bytes;       /* written so far */
    uint8_t page[PAGE];   /* one object as stored */
};

static bool save_write(VtmemStreamSaver *sv, const void *buf, size_t len,
                       GError **err)
{
    if (!sv->write(sv->opaque, buf, len)) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_IO,
                    "vtmem stream: write of %zu bytes failed", len);
        return false;
    }
    sv->bytes += len;
    return true;
}

/* A record's head and its fixed-size field (n bytes of v). */
static bool save_head(VtmemStreamSaver *sv, uint64_t slot, unsigned kind,
                      uint64_t v, unsigned n, GError **err)
{
    uint8_t b[REC_HEAD_BYTES + 8];

    put_be64(b, slot << 8 | kind);
    if (n == 2) {
        put_be16(b + REC_HEAD_BYTES, (uint16_t)v);
    } else if (n == 4) {
        put_be32(b + REC_HEAD_BYTES, (uint32_t)v);
    } else if (n == 8) {
        put_be64(b + REC_HEAD_BYTES, v);
    }
    return save_write(sv, b, REC_HEAD_BYTES + n, err);
}

static bool save_flush_run(VtmemStreamSaver *sv, GError **err)
{
    bool ok = true;

    if (sv->run_count) {
        ok = save_head(sv, sv->run_first, VTMEM_REC_EMPTY, sv->run_count, 4,
                       err);
        sv->run_count = 0;
    }
    return ok;
}

static bool save_object(VtmemStreamSaver *sv, uint64_t slot,
                        const VtmemStoreObj *obj, GError **err)
{
    if (obj->kind == VTMEM_OBJ_EMPTY) {
        /* Coalesce neighbours (a guest reset empties long runs). */
        if (sv->run_count && sv->run_first + sv->run_count == slot &&
            sv->run_count < UINT32_MAX) {
            sv->run_count++;
            return true;
        }
        if (!save_flush_run(sv, err)) {
            return false;
        }
        sv->run_first = slot;
        sv->run_count = 1;
        return true;
    }
    if (!save_flush_run(sv, err)) {
        return false;
    }
    switch (obj->kind) {
    case VTMEM_OBJ_SAME:
        return save_head(sv, slot, VTMEM_REC_SAME, obj->word, 8, err);
    case VTMEM_OBJ_LZ4:
        return save_head(sv, slot, VTMEM_REC_LZ4, obj->len, 2, err) &&
               save_write(sv, sv->page, obj->len, err);
    default:
        return save_head(sv, slot, VTMEM_REC_RAW, 0, 0, err) &&
               save_write(sv, sv->page, PAGE, err);
    }
}

static bool save_section_end(VtmemStreamSaver *sv, unsigned kind,
                             GError **err)
{
    return save_flush_run(sv, err) && save_head(sv, 0, kind, 0, 0, err);
}

VtmemStreamSaver *vtmem_stream_save_begin(VtmemStore *store,
                                          VtmemStreamWriteFn write,
                                          void *opaque, GError **err)
{
    VtmemStreamSaver *sv;
    uint8_t h[HEADER_BYTES];
    vtmem_status st;

    g_return_val_if_fail(store && write, NULL);
    st = vtmem_store_dirty_start(store);
    if (st != VTMEM_OK) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_STORE,
                    "vtmem stream: cannot start the dirty log: %s",
                    vtmem_status_str(st));
        return NULL;
    }
    sv = g_new0(VtmemStreamSaver, 1);
    sv->store = store;
    sv->write = write;
    sv->opaque = opaque;
    memcpy(h, VTMEM_STREAM_MAGIC, 8);
    put_be32(h + 8, VTMEM_STREAM_VERSION);
    put_be32(h + 12, PAGE);
    put_be64(h + 16, vtmem_store_nr_slots(store));
    put_be64(h + 24, vtmem_store_memory_held(store));
    if (!save_write(sv, h, sizeof(h), err) ||
        !save_section_end(sv, VTMEM_REC_SECTION_END, err)) {
        vtmem_stream_save_end(sv);
        return NULL;
    }
    return sv;
}

/*
 * Send dirty slots until budget bytes are written (UINT64_MAX: until none
 * is dirty). True with *all_sent set when no slot was dirty at the end.
 */
static bool save_dirty(VtmemStreamSaver *sv, uint64_t budget,
                       bool *all_sent, GError **err)
{
    uint64_t start = sv->bytes, slot;
    bool wrapped = false;
    VtmemStoreObj obj;

    *all_sent = false;
    while (sv->bytes - start < budget) {
        vtmem_status st = vtmem_store_dirty_next(sv->store, &sv->cursor,
                                                 &slot, &obj, sv->page);
        if (st == VTMEM_ERR_NOENT) {
            /* End of a round: go on from slot 0 if anything is dirty. */
            sv->cursor = 0;
            if (wrapped && vtmem_store_dirty_count(sv->store) == 0) {
                *all_sent = true;
                return true;
            }
            wrapped = true;
            continue;
        }
        if (st != VTMEM_OK) {
            g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_STORE,
                        "vtmem stream: dirty log failed: %s",
                        vtmem_status_str(st));
            return false;
        }
        if (!save_object(sv, slot, &obj, err)) {
            return false;
        }
    }
    return true;
}

int vtmem_stream_save_iterate(VtmemStreamSaver *sv, uint64_t budget,
                              GError **err)
{
    bool all_sent;

    g_return_val_if_fail(sv, -1);
    if (!save_dirty(sv, MAX(budget, 1), &all_sent, err) ||
        !save_section_end(sv, VTMEM_REC_SECTION_END, err)) {
        return -1;
    }
    return all_sent || vtmem_store_dirty_count(sv->store) == 0;
}

bool vtmem_stream_save_complete(VtmemStreamSaver *sv, GError **err)
{
    bool all_sent;

    g_return_val_if_fail(sv, false);
    return save_dirty(sv, UINT64_MAX, &all_sent, err) &&
           save_section_end(sv, VTMEM_REC_END, err);
}

uint64_t vtmem_stream_save_pending(VtmemStreamSaver *sv)
{
    VtmemStoreStats s;
    uint64_t dirty, avg;

    if (!sv) {
        return 0;
    }
    dirty = vtmem_store_dirty_count(sv->store);
    vtmem_store_get_stats(sv->store, &s);
    avg = s.stored_pages
          ? (s.compressed_bytes + s.raw_bytes) / s.stored_pages : 0;
    return dirty * (REC_HEAD_BYTES + 2 + avg);
}

uint64_t vtmem_stream_save_bytes(VtmemStreamSaver *sv)
{
    return sv ? sv->bytes : 0;
}

void vtmem_stream_save_end(VtmemStreamSaver *sv)
{
    if (sv) {
        vtmem_store_dirty_stop(sv->store);
        g_free(sv);
    }
}

/* ---- Destination side ---- */

struct VtmemStreamLoader {
    VtmemStore *dest;
    VtmemStreamReadFn read;
    void *opaque;
    uint64_t offset;       /* stream bytes read so far */
    uint64_t nr_slots;
    uint64_t source_held;
    bool header_read;
    bool done;
    bool failed;
    uint8_t data[PAGE];    /* an object's bytes */
    uint8_t check[PAGE];   /* an LZ4 object decompressed */
};

static bool load_read(VtmemStreamLoader *ld, void *buf, size_t len,
                      GError **err)
{
    if (!ld->read(ld->opaque, buf, len)) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_IO,
                    "vtmem stream: truncated or unreadable at byte %"
                    G_GUINT64_FORMAT " (%zu bytes wanted)", ld->offset, len);
        return false;
    }
    ld->offset += len;
    return true;
}

static bool load_header(VtmemStreamLoader *ld, GError **err)
{
    uint8_t h[HEADER_BYTES];
    VtmemStoreStats s;
    uint64_t version, page, slots;

    if (!load_read(ld, h, sizeof(h), err)) {
        return false;
    }
    version = get_be(h + 8, 4);
    page = get_be(h + 12, 4);
    slots = get_be(h + 16, 8);
    if (memcmp(h, VTMEM_STREAM_MAGIC, 8) != 0) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_FORMAT,
                    "vtmem stream: bad magic (not a vtmem stream)");
        return false;
    }
    if (version != VTMEM_STREAM_VERSION) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_FORMAT,
                    "vtmem stream: format version %" G_GUINT64_FORMAT
                    ", this build reads %u", version, VTMEM_STREAM_VERSION);
        return false;
    }
    if (page != PAGE) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_MISMATCH,
                    "vtmem stream: page size %" G_GUINT64_FORMAT
                    ", this store's is %d", page, PAGE);
        return false;
    }
    if (slots != ld->nr_slots) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_MISMATCH,
                    "vtmem stream: source has %" G_GUINT64_FORMAT
                    " slots, destination %" G_GUINT64_FORMAT,
                    slots, ld->nr_slots);
        return false;
    }
    vtmem_store_get_stats(ld->dest, &s);
    if (s.stored_pages) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_STORE,
                    "vtmem stream: destination store is not empty");
        return false;
    }
    ld->source_held = get_be(h + 24, 8);
    ld->header_read = true;
    return true;
}

VtmemStreamLoader *vtmem_stream_load_begin(VtmemStore *dest,
                                           VtmemStreamReadFn read,
                                           void *opaque)
{
    VtmemStreamLoader *ld;

    g_return_val_if_fail(dest && read, NULL);
    ld = g_new0(VtmemStreamLoader, 1);
    ld->dest = dest;
    ld->read = read;
    ld->opaque = opaque;
    ld->nr_slots = vtmem_store_nr_slots(dest);
    vtmem_store_set_unlimited(dest, true);
    return ld;
}

static bool load_fail(GError **err, uint64_t at, const char *what,
                      uint64_t slot)
{
    g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_FORMAT,
                "vtmem stream: record at byte %" G_GUINT64_FORMAT
                " (slot %" G_GUINT64_FORMAT "): %s", at, slot, what);
    return false;
}

/* Read one record and apply it; *kind receives its kind. */
static bool load_record(VtmemStreamLoader *ld, unsigned *kind, GError **err)
{
    uint64_t at = ld->offset, slot;
    uint8_t b[REC_HEAD_BYTES + 8];
    VtmemStoreObj obj = { 0 };
    vtmem_status st;

    if (!load_read(ld, b, REC_HEAD_BYTES, err)) {
        return false;
    }
    *kind = b[7];
    slot = get_be(b, 8) >> 8;
    switch (*kind) {
    case VTMEM_REC_SECTION_END:
    case VTMEM_REC_END:
        return slot == 0 || load_fail(err, at, "end record with a slot", slot);
    case VTMEM_REC_LZ4:
    case VTMEM_REC_RAW:
    case VTMEM_REC_SAME:
    case VTMEM_REC_EMPTY:
        break;
    default:
        return load_fail(err, at, "unknown record kind", slot);
    }
    if (slot >= ld->nr_slots) {
        return load_fail(err, at, "slot beyond the store", slot);
    }
    if (*kind == VTMEM_REC_EMPTY) {
        uint64_t count;

        if (!load_read(ld, b, 4, err)) {
            return false;
        }
        count = get_be(b, 4);
        if (count == 0 || count > ld->nr_slots - slot) {
            return load_fail(err, at, "empty run of bad length", slot);
        }
        st = vtmem_store_invalidate_range(ld->dest, slot, count, NULL);
    } else if (*kind == VTMEM_REC_SAME) {
        if (!load_read(ld, b, 8, err)) {
            return false;
        }
        obj.kind = VTMEM_OBJ_SAME;
        obj.word = get_be(b, 8);
        st = vtmem_store_put_object(ld->dest, slot, &obj, NULL);
    } else {
        obj.kind = *kind == VTMEM_REC_RAW ? VTMEM_OBJ_RAW : VTMEM_OBJ_LZ4;
        obj.len = PAGE;
        if (*kind == VTMEM_REC_LZ4) {
            if (!load_read(ld, b, 2, err)) {
                return false;
            }
            obj.len = (uint32_t)get_be(b, 2);
            if (obj.len == 0 || obj.len > VTMEM_STORE_LZ4_MAX) {
                return load_fail(err, at, "LZ4 object of bad length", slot);
            }
        }
        if (!load_read(ld, ld->data, obj.len, err)) {
            return false;
        }
        if (*kind == VTMEM_REC_LZ4 &&
            LZ4_decompress_safe((const char *)ld->data, (char *)ld->check,
                                (int)obj.len, PAGE) != PAGE) {
            return load_fail(err, at,
                             "LZ4 object does not decompress to one page",
                             slot);
        }
        st = vtmem_store_put_object(ld->dest, slot, &obj, ld->data);
    }
    if (st != VTMEM_OK) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_STORE,
                    "vtmem stream: record at byte %" G_GUINT64_FORMAT
                    " (slot %" G_GUINT64_FORMAT "): store: %s",
                    at, slot, vtmem_status_str(st));
        return false;
    }
    return true;
}

int vtmem_stream_load_section(VtmemStreamLoader *ld, GError **err)
{
    unsigned kind;

    g_return_val_if_fail(ld, -1);
    if (ld->failed || ld->done) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_FORMAT,
                    "vtmem stream: %s", ld->done ? "data after the end"
                                                 : "stream already failed");
        ld->failed = true;
        return -1;
    }
    if (!ld->header_read && !load_header(ld, err)) {
        ld->failed = true;
        return -1;
    }
    do {
        if (!load_record(ld, &kind, err)) {
            ld->failed = true;
            return -1;
        }
    } while (kind != VTMEM_REC_SECTION_END && kind != VTMEM_REC_END);
    ld->done = kind == VTMEM_REC_END;
    return ld->done;
}

uint64_t vtmem_stream_load_source_held(VtmemStreamLoader *ld)
{
    return ld ? ld->source_held : 0;
}

bool vtmem_stream_load_end(VtmemStreamLoader *ld)
{
    bool ok;

    if (!ld) {
        return false;
    }
    ok = ld->done && !ld->failed;
    if (!ok) {
        vtmem_store_invalidate_all(ld->dest);
    }
    vtmem_store_set_unlimited(ld->dest, false);
    g_free(ld);
    return ok;
}

bool vtmem_stream_load_bytes(VtmemStore *dest, const void *data, size_t len,
                             GError **err)
{
    VtmemStreamBuf buf = { .data = data, .len = len };
    VtmemStreamLoader *ld;
    int r;

    g_return_val_if_fail(dest && (data || !len), false);
    ld = vtmem_stream_load_begin(dest, vtmem_stream_read_buf, &buf);
    do {
        r = vtmem_stream_load_section(ld, err);
    } while (r == 0);
    if (r == 1 && buf.pos != buf.len) {
        g_set_error(err, VTMEM_STREAM_ERROR, VTMEM_STREAM_ERR_FORMAT,
                    "vtmem stream: %zu bytes after the end",
                    buf.len - buf.pos);
        ld->failed = true;
    }
    return vtmem_stream_load_end(ld);
}
