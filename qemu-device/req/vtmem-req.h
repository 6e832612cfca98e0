/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-tmem request decoding: the checks of one request against the
 * protocol (include/virtio_tmem.h; docs/virtio-tmem.md 6.1 and 6.6) and
 * the device's slot count. Plain C, no QEMU: build-qemu.sh compiles it
 * into the device (hw/virtio/virtio-tmem.c), tests/fuzz/fuzz-req.c and
 * tests/unit/test-req.c link it as it is. The guest is untrusted: every
 * size and number here comes from it.
 */
#ifndef VTMEM_REQ_H
#define VTMEM_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio_tmem.h"

/* One request's header fields, in host byte order. */
typedef struct VtmemReq {
    uint32_t type;
    uint64_t slot;
    uint64_t count;
} VtmemReq;

/*
 * Can the device answer a request whose device-writable part is in_len
 * bytes (room for the response, no more than a GET's)? If not, the device
 * cannot complete it and sets DEVICE_NEEDS_RESET.
 */
bool vtmem_req_in_len_ok(size_t in_len);

/*
 * Decode and check one request. hdr: the first bytes of its
 * device-readable part as the driver wrote them, read only if out_len
 * (that part's size) holds a whole header; in_len: the size of the
 * device-writable part. Fills *req (zeros if there is no header) and
 * returns VIRTIO_TMEM_S_OK if the request may be carried out: its type is
 * known, both parts have exactly the type's sizes, its slot or range lies
 * within nr_slots, an INVALIDATE_BATCH's count within the batch maximum.
 * Else VIRTIO_TMEM_S_UNSUPP (unknown type) or VIRTIO_TMEM_S_INVAL.
 */
uint32_t vtmem_req_decode(const struct virtio_tmem_req_hdr *hdr,
                          size_t out_len, size_t in_len, uint64_t nr_slots,
                          VtmemReq *req);

/*
 * An INVALIDATE_BATCH's slot list, count (<= VIRTIO_TMEM_MAX_BATCH)
 * little-endian entries as read from after the header: converted in place
 * to host order. VIRTIO_TMEM_S_INVAL if any entry is >= nr_slots (the
 * whole batch is then refused: the list is partly converted, unusable).
 */
uint32_t vtmem_req_decode_batch(uint64_t *slots, uint64_t count,
                                uint64_t nr_slots);

#endif /* VTMEM_REQ_H */
