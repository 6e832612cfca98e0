/* SPDX-License-Identifier: GPL-2.0-or-later */
/* virtio-tmem request decoding (vtmem-req.h). */
#include "vtmem-req.h"

#include <string.h>

#define HDR_SIZE sizeof(struct virtio_tmem_req_hdr)
#define RESP_SIZE sizeof(struct virtio_tmem_resp)
#define PAGE_SIZE VIRTIO_TMEM_PAGE_SIZE

_Static_assert(sizeof(struct virtio_tmem_req_hdr) == 24, "wire header");
_Static_assert(sizeof(struct virtio_tmem_resp) == 4, "wire response");

/* Little-endian fields, on any host. */
static uint64_t le_at(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t v = 0;

    while (len--) {
        v = v << 8 | b[len];
    }
    return v;
}

bool vtmem_req_in_len_ok(size_t in_len)
{
    return in_len >= RESP_SIZE && in_len <= PAGE_SIZE + RESP_SIZE;
}

uint32_t vtmem_req_decode(const struct virtio_tmem_req_hdr *hdr,
                          size_t out_len, size_t in_len, uint64_t nr_slots,
                          VtmemReq *req)
{
    size_t want_out = HDR_SIZE, want_in = RESP_SIZE;
    bool in_range;

    memset(req, 0, sizeof(*req));
    if (out_len < HDR_SIZE) {
        return VIRTIO_TMEM_S_INVAL;
    }
    req->type = (uint32_t)le_at(&hdr->type, sizeof(hdr->type));
    req->slot = le_at(&hdr->slot, sizeof(hdr->slot));
    req->count = le_at(&hdr->count, sizeof(hdr->count));

    switch (req->type) {
    case VIRTIO_TMEM_T_PUT:
        want_out = HDR_SIZE + PAGE_SIZE;
        in_range = req->slot < nr_slots;
        break;
    case VIRTIO_TMEM_T_GET:
        want_in = PAGE_SIZE + RESP_SIZE;
        in_range = req->slot < nr_slots;
        break;
    case VIRTIO_TMEM_T_INVALIDATE:
        in_range = req->slot < nr_slots;
        break;
    case VIRTIO_TMEM_T_INVALIDATE_RANGE:
        /* slot + count <= nr_slots, without overflow */
        in_range = req->slot <= nr_slots &&
                   req->count <= nr_slots - req->slot;
        break;
    case VIRTIO_TMEM_T_INVALIDATE_ALL:
        in_range = true;                /* slot and count ignored */
        break;
    case VIRTIO_TMEM_T_INVALIDATE_BATCH:
        /* count checked first: 8 * count may not overflow */
        in_range = req->count <= VIRTIO_TMEM_MAX_BATCH;
        if (in_range) {
            want_out = HDR_SIZE + req->count * sizeof(uint64_t);
        }
        break;
    default:
        return VIRTIO_TMEM_S_UNSUPP;
    }
    if (!in_range || out_len != want_out || in_len != want_in) {
        return VIRTIO_TMEM_S_INVAL;
    }
    return VIRTIO_TMEM_S_OK;
}

uint32_t vtmem_req_decode_batch(uint64_t *slots, uint64_t count,
                                uint64_t nr_slots)
{
    for (uint64_t i = 0; i < count; i++) {
        slots[i] = le_at(&slots[i], sizeof(slots[i]));
        if (slots[i] >= nr_slots) {
            return VIRTIO_TMEM_S_INVAL;
        }
    }
    return VIRTIO_TMEM_S_OK;
}
