/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness: the device's request decoding (qemu-device/req, the
 * code virtio-tmem.c runs on every request a guest makes), checked
 * against the protocol's rules as docs/virtio-tmem.md 6.1 and 6.6 state
 * them, written out again here independently (128-bit sizes, no shared
 * code); accepted requests are then carried out on a page store of the
 * device's slot count, which must never find them out of range.
 *
 * QEMU maps the descriptor chain and hands the device two byte streams
 * (virtqueue_pop, iov_size, iov_to_buf): the decoder sees only their
 * sizes, the header and the batch's slot list. So an input is:
 *   byte 0: the device's slot count: 1, 2, 1000, 2^22 (the default),
 *           2^32 (the most), or 1 + a le16 that follows
 *   then requests until the input ends, each:
 *     a flags byte, the 24 header bytes, the device-readable size, the
 *     device-writable size, then as many bytes of the device-readable
 *     part after the header as it has, up to a page and a full batch
 *     (missing bytes read as 0). Each size as flags say (bits 0-1 for
 *     the device-readable part, bits 2-3 for the other): 0 a le16, 1 a
 *     le64, 2 the size the header's type and count call for, computed as
 *     a driver would in 64 bits (24 + 8 * count may wrap around), plus a
 *     signed byte, 3 that size exactly. So the fuzzer reaches the sizes
 *     that match a header, and the wrapped ones, without guessing them.
 *     Bit 4 negates the header's count, bit 5 its slot (mod 2^64): small
 *     numbers become the huge ones that make sums wrap around.
 * The header and the slot list are handed over in buffers of exactly the
 * part's size, so that ASan sees any read past the guest's bytes.
 * VTMEM_FUZZ_TRACE=1 prints each request and its status.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "fuzz.h"
#include "vtmem-req.h"
#include "vtmem-store.h"

#define HDR_BYTES 24
#define TAIL_MAX (VIRTIO_TMEM_PAGE_SIZE + 8 * VIRTIO_TMEM_MAX_BATCH)

#define CHECK(cond) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "fuzz-req: %s:%d: check failed: %s\n", \
                    __FILE__, __LINE__, #cond); \
            abort(); \
        } \
    } while (0)

typedef unsigned __int128 u128;

typedef struct Input {
    const uint8_t *in;
    size_t len, pos;
} Input;

static uint64_t next_le(Input *f, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t b = f->pos < f->len ? f->in[f->pos++] : 0;
        v |= b << (8 * i);
    }
    return v;
}

static uint64_t le_bytes(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static void put_le(uint8_t *p, uint64_t v)
{
    for (size_t i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* A part's size, as the flags' two bits for it say (see the top). */
static uint64_t next_size(Input *f, unsigned mode, const uint8_t *hdr,
                          bool out)
{
    uint32_t type = (uint32_t)le_bytes(hdr, 4);
    uint64_t count = le_bytes(hdr + 16, 8), size;

    if (mode < 2) {
        return next_le(f, mode ? 8 : 2);
    }
    if (out) {
        size = type == VIRTIO_TMEM_T_PUT ? 24 + VIRTIO_TMEM_PAGE_SIZE :
               type == VIRTIO_TMEM_T_INVALIDATE_BATCH ? 24 + 8 * count : 24;
    } else {
        size = type == VIRTIO_TMEM_T_GET ? VIRTIO_TMEM_PAGE_SIZE + 4 : 4;
    }
    if (mode == 2) {
        size += (uint64_t)(int64_t)(int8_t)next_le(f, 1);
    }
    return size;
}

/*
 * The spec: the status a request with this header (at least 24 bytes)
 * and these part sizes must get. Sizes in 128 bits: nothing wraps.
 */
static uint32_t spec_status(const uint8_t *hdr, u128 out, u128 in,
                            uint64_t nr_slots)
{
    uint32_t type = (uint32_t)le_bytes(hdr, 4);
    u128 slot = le_bytes(hdr + 8, 8), count = le_bytes(hdr + 16, 8);
    u128 page = VIRTIO_TMEM_PAGE_SIZE;
    bool ok;

    switch (type) {
    case 1:     /* PUT: header, page; response */
        ok = out == 24 + page && in == 4 && slot < nr_slots;
        break;
    case 2:     /* GET: header; page, response */
        ok = out == 24 && in == page + 4 && slot < nr_slots;
        break;
    case 3:     /* INVALIDATE */
        ok = out == 24 && in == 4 && slot < nr_slots;
        break;
    case 4:     /* INVALIDATE_RANGE: slot .. slot + count - 1 */
        ok = out == 24 && in == 4 && slot + count <= nr_slots;
        break;
    case 5:     /* INVALIDATE_ALL: slot and count ignored */
        ok = out == 24 && in == 4;
        break;
    case 6:     /* INVALIDATE_BATCH: header, le64 slot[count] */
        ok = count <= 512 && out == 24 + 8 * count && in == 4;
        break;
    default:
        return VIRTIO_TMEM_S_UNSUPP;
    }
    return ok ? VIRTIO_TMEM_S_OK : VIRTIO_TMEM_S_INVAL;
}

/* An accepted request on the store: never out of range. */
static void carry_out(VtmemStore *store, const VtmemReq *req,
                      const uint8_t *tail, const uint64_t *batch)
{
    uint8_t page[VTMEM_STORE_PAGE_SIZE];
    uint64_t dropped;
    vtmem_status st;

    switch (req->type) {
    case VIRTIO_TMEM_T_PUT:
        st = vtmem_store_put(store, req->slot, tail);
        CHECK(st == VTMEM_OK || st == VTMEM_ERR_NOSPACE);
        break;
    case VIRTIO_TMEM_T_GET:
        st = vtmem_store_get(store, req->slot, page);
        CHECK(st == VTMEM_OK || st == VTMEM_ERR_NOENT);
        break;
    case VIRTIO_TMEM_T_INVALIDATE:
        st = vtmem_store_invalidate(store, req->slot);
        CHECK(st == VTMEM_OK || st == VTMEM_ERR_NOENT);
        break;
    case VIRTIO_TMEM_T_INVALIDATE_RANGE:
        CHECK(vtmem_store_invalidate_range(store, req->slot, req->count,
                                           &dropped) == VTMEM_OK);
        break;
    case VIRTIO_TMEM_T_INVALIDATE_ALL:
        vtmem_store_invalidate_all(store);
        break;
    case VIRTIO_TMEM_T_INVALIDATE_BATCH:
        for (uint64_t i = 0; i < req->count; i++) {
            st = vtmem_store_invalidate(store, batch[i]);
            CHECK(st == VTMEM_OK || st == VTMEM_ERR_NOENT);
        }
        break;
    default:
        CHECK(!"accepted a request of unknown type");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t slot_counts[] = {
        1, 2, 1000, UINT64_C(1) << 22, UINT64_C(1) << 32,
    };
    Input f = { .in = data, .len = size };
    uint8_t pick = (uint8_t)next_le(&f, 1) % 6;
    uint64_t nr_slots = pick < 5 ? slot_counts[pick] : 1 + next_le(&f, 2);
    VtmemStore *store = vtmem_store_new(nr_slots, 1 << 20);
    bool trace = getenv("VTMEM_FUZZ_TRACE") != NULL;

    CHECK(store);
    while (f.pos < f.len) {
        uint8_t flags = (uint8_t)next_le(&f, 1);
        uint8_t hdr_bytes[HDR_BYTES];
        uint64_t out_len, in_len;
        size_t have, tail_len;
        uint8_t *hdr, *tail;
        uint64_t *batch = NULL;
        uint32_t status, want;
        VtmemReq req;

        for (size_t i = 0; i < HDR_BYTES; i++) {
            hdr_bytes[i] = (uint8_t)next_le(&f, 1);
        }
        if (flags & 0x10) {
            put_le(hdr_bytes + 16, -le_bytes(hdr_bytes + 16, 8));
        }
        if (flags & 0x20) {
            put_le(hdr_bytes + 8, -le_bytes(hdr_bytes + 8, 8));
        }
        out_len = next_size(&f, flags & 3, hdr_bytes, true);
        in_len = next_size(&f, (flags >> 2) & 3, hdr_bytes, false);
        have = MIN(out_len, HDR_BYTES);
        tail_len = out_len > HDR_BYTES ?
                   MIN(out_len - HDR_BYTES, TAIL_MAX) : 0;
        tail = g_malloc(tail_len + 1);
        for (size_t i = 0; i < tail_len; i++) {
            tail[i] = (uint8_t)next_le(&f, 1);
        }

        /* The element's device-writable size: else DEVICE_NEEDS_RESET. */
        CHECK(vtmem_req_in_len_ok(in_len) == (in_len >= 4 &&
                                              in_len <= 4100));
        hdr = g_malloc(have + 1);
        memcpy(hdr, hdr_bytes, have);
        status = vtmem_req_decode((const struct virtio_tmem_req_hdr *)hdr,
                                  out_len, in_len, nr_slots, &req);
        g_free(hdr);
        if (out_len < HDR_BYTES) {
            CHECK(status == VIRTIO_TMEM_S_INVAL);
            CHECK(req.type == 0 && req.slot == 0 && req.count == 0);
            g_free(tail);
            continue;
        }
        want = spec_status(hdr_bytes, out_len, in_len, nr_slots);
        if (trace) {
            fprintf(stderr, "type %u slot %" PRIu64 " count %" PRIu64
                    " out %" PRIu64 " in %" PRIu64 ": status %u\n",
                    req.type, req.slot, req.count, out_len, in_len, status);
        }
        CHECK(status == want);
        CHECK(req.type == le_bytes(hdr_bytes, 4));
        CHECK(req.slot == le_bytes(hdr_bytes + 8, 8));
        CHECK(req.count == le_bytes(hdr_bytes + 16, 8));
        if (status == VIRTIO_TMEM_S_OK && vtmem_req_in_len_ok(in_len)) {
            if (req.type == VIRTIO_TMEM_T_INVALIDATE_BATCH) {
                bool all_in = true;

                CHECK(tail_len == 8 * req.count);
                batch = g_malloc(tail_len + 1);
                memcpy(batch, tail, tail_len);
                status = vtmem_req_decode_batch(batch, req.count, nr_slots);
                for (uint64_t i = 0; i < req.count; i++) {
                    all_in &= le_bytes(tail + 8 * i, 8) < nr_slots;
                }
                CHECK(status == (all_in ? VIRTIO_TMEM_S_OK :
                                 VIRTIO_TMEM_S_INVAL));
                for (uint64_t i = 0; all_in && i < req.count; i++) {
                    CHECK(batch[i] == le_bytes(tail + 8 * i, 8));
                }
            }
            if (status == VIRTIO_TMEM_S_OK) {
                carry_out(store, &req, tail, batch);
            }
        }
        g_free(batch);
        g_free(tail);
    }
    vtmem_store_free(store);
    return 0;
}
