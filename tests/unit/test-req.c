/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests for the device's request decoding (qemu-device/req): every
 * rule of docs/virtio-tmem.md 6.1 and 6.6, at and around its bounds,
 * headers written byte by byte as little-endian.
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "vtmem-req.h"

#define HDR 24
#define RESP 4
#define PAGE VIRTIO_TMEM_PAGE_SIZE
#define NR_SLOTS 1000

static void put_le(uint8_t *p, uint64_t v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static struct virtio_tmem_req_hdr make_hdr(uint32_t type, uint64_t slot,
                                           uint64_t count)
{
    struct virtio_tmem_req_hdr h;
    uint8_t *b = (uint8_t *)&h;

    put_le(b, type, 4);
    put_le(b + 4, 0x5a5a5a5a, 4);       /* reserved: ignored */
    put_le(b + 8, slot, 8);
    put_le(b + 16, count, 8);
    return h;
}

static uint32_t decode(uint32_t type, uint64_t slot, uint64_t count,
                       size_t out_len, size_t in_len)
{
    struct virtio_tmem_req_hdr h = make_hdr(type, slot, count);
    VtmemReq req;
    uint32_t st = vtmem_req_decode(&h, out_len, in_len, NR_SLOTS, &req);

    g_assert_cmpuint(req.type, ==, type);
    g_assert_cmpuint(req.slot, ==, slot);
    g_assert_cmpuint(req.count, ==, count);
    return st;
}

static void test_in_len(void)
{
    g_assert_false(vtmem_req_in_len_ok(0));
    g_assert_false(vtmem_req_in_len_ok(RESP - 1));
    g_assert_true(vtmem_req_in_len_ok(RESP));
    g_assert_true(vtmem_req_in_len_ok(PAGE + RESP));
    g_assert_false(vtmem_req_in_len_ok(PAGE + RESP + 1));
    g_assert_false(vtmem_req_in_len_ok(SIZE_MAX));
}

static void test_short_header(void)
{
    VtmemReq req = { .type = 9, .slot = 9, .count = 9 };

    /* Not read at all: NULL would crash if it were. */
    for (size_t len = 0; len < HDR; len++) {
        g_assert_cmpuint(vtmem_req_decode(NULL, len, RESP, NR_SLOTS, &req),
                         ==, VIRTIO_TMEM_S_INVAL);
        g_assert_cmpuint(req.type, ==, 0);
        g_assert_cmpuint(req.slot, ==, 0);
        g_assert_cmpuint(req.count, ==, 0);
    }
}

static void test_put_get_invalidate(void)
{
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_PUT, 0, 0, HDR + PAGE, RESP), ==,
                     VIRTIO_TMEM_S_OK);
    /* count is ignored where it has no meaning */
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_PUT, NR_SLOTS - 1, 77, HDR + PAGE,
                            RESP), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_PUT, NR_SLOTS, 0, HDR + PAGE, RESP),
                     ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_PUT, UINT64_MAX, 0, HDR + PAGE,
                            RESP), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_PUT, 1, 0, HDR + PAGE - 1, RESP),
                     ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_PUT, 1, 0, HDR + PAGE + 1, RESP),
                     ==, VIRTIO_TMEM_S_INVAL);
    /* the page on the wrong side */
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_PUT, 1, 0, HDR, PAGE + RESP), ==,
                     VIRTIO_TMEM_S_INVAL);

    g_assert_cmpuint(decode(VIRTIO_TMEM_T_GET, 5, 0, HDR, PAGE + RESP), ==,
                     VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_GET, NR_SLOTS, 0, HDR,
                            PAGE + RESP), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_GET, 5, 0, HDR, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_GET, 5, 0, HDR + PAGE, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_GET, 5, 0, HDR + 1, PAGE + RESP),
                     ==, VIRTIO_TMEM_S_INVAL);

    g_assert_cmpuint(decode(VIRTIO_TMEM_T_INVALIDATE, NR_SLOTS - 1, 0, HDR,
                            RESP), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_INVALIDATE, NR_SLOTS, 0, HDR,
                            RESP), ==, VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_INVALIDATE, 0, 0, HDR, RESP + 1),
                     ==, VIRTIO_TMEM_S_INVAL);
}

static void test_range_all(void)
{
    const uint32_t r = VIRTIO_TMEM_T_INVALIDATE_RANGE;

    g_assert_cmpuint(decode(r, 0, NR_SLOTS, HDR, RESP), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(r, NR_SLOTS, 0, HDR, RESP), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(r, 10, NR_SLOTS - 10, HDR, RESP), ==,
                     VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(r, 0, NR_SLOTS + 1, HDR, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(r, NR_SLOTS + 1, 0, HDR, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(r, 11, NR_SLOTS - 10, HDR, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    /* slot + count wraps around to a small number */
    g_assert_cmpuint(decode(r, 2, UINT64_MAX, HDR, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(r, UINT64_MAX, 2, HDR, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(r, 0, 1, HDR + 8, RESP), ==, VIRTIO_TMEM_S_INVAL);

    /* ALL ignores slot and count */
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_INVALIDATE_ALL, UINT64_MAX,
                            UINT64_MAX, HDR, RESP), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(VIRTIO_TMEM_T_INVALIDATE_ALL, 0, 0, HDR,
                            PAGE + RESP), ==, VIRTIO_TMEM_S_INVAL);
}

static void test_batch(void)
{
    const uint32_t b = VIRTIO_TMEM_T_INVALIDATE_BATCH;
    const uint64_t max = VIRTIO_TMEM_MAX_BATCH;

    g_assert_cmpuint(decode(b, 0, 0, HDR, RESP), ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(b, UINT64_MAX, 3, HDR + 24, RESP), ==,
                     VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(b, 0, max, HDR + 8 * max, RESP), ==,
                     VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(decode(b, 0, max + 1, HDR + 8 * (max + 1), RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(b, 0, 3, HDR + 23, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(b, 0, 3, HDR + 25, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    /* 24 + 8 * count wraps around to the size of the part */
    g_assert_cmpuint(decode(b, 0, UINT64_C(1) << 61, HDR, RESP), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(decode(b, 0, (UINT64_C(1) << 61) + 1, HDR + 8, RESP),
                     ==, VIRTIO_TMEM_S_INVAL);
}

static void test_batch_slots(void)
{
    uint64_t slots[4];
    uint8_t *bytes = (uint8_t *)slots;

    put_le(bytes, 0, 8);
    put_le(bytes + 8, NR_SLOTS - 1, 8);
    put_le(bytes + 16, 0x0102030405ULL, 8);
    put_le(bytes + 24, 0, 8);
    /* 0x0102030405 is out of range for NR_SLOTS, fine for 2^40 */
    g_assert_cmpuint(vtmem_req_decode_batch(slots, 4, UINT64_C(1) << 40),
                     ==, VIRTIO_TMEM_S_OK);
    g_assert_cmpuint(slots[0], ==, 0);
    g_assert_cmpuint(slots[1], ==, NR_SLOTS - 1);
    g_assert_cmpuint(slots[2], ==, 0x0102030405ULL);
    g_assert_cmpuint(slots[3], ==, 0);

    put_le(bytes, 7, 8);
    put_le(bytes + 8, NR_SLOTS, 8);
    g_assert_cmpuint(vtmem_req_decode_batch(slots, 2, NR_SLOTS), ==,
                     VIRTIO_TMEM_S_INVAL);
    put_le(bytes + 8, UINT64_MAX, 8);
    g_assert_cmpuint(vtmem_req_decode_batch(slots, 2, NR_SLOTS), ==,
                     VIRTIO_TMEM_S_INVAL);
    g_assert_cmpuint(vtmem_req_decode_batch(NULL, 0, NR_SLOTS), ==,
                     VIRTIO_TMEM_S_OK);
}

static void test_unknown_type(void)
{
    static const uint32_t types[] = { 0, 7, 0x100, 0x01000000, UINT32_MAX };

    for (size_t i = 0; i < G_N_ELEMENTS(types); i++) {
        /* UNSUPP whatever the sizes, once there is a header */
        g_assert_cmpuint(decode(types[i], 0, 0, HDR, RESP), ==,
                         VIRTIO_TMEM_S_UNSUPP);
        g_assert_cmpuint(decode(types[i], UINT64_MAX, 1, HDR + 1000,
                                PAGE + RESP), ==, VIRTIO_TMEM_S_UNSUPP);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/req/in-len", test_in_len);
    g_test_add_func("/req/short-header", test_short_header);
    g_test_add_func("/req/put-get-invalidate", test_put_get_invalidate);
    g_test_add_func("/req/range-all", test_range_all);
    g_test_add_func("/req/batch", test_batch);
    g_test_add_func("/req/batch-slots", test_batch_slots);
    g_test_add_func("/req/unknown-type", test_unknown_type);
    return g_test_run();
}
