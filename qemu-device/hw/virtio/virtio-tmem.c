/*
 * virtio-tmem: transcendent memory (frontswap semantics) over virtio
 *
 * The guest stores swapped-out pages in this device (PUT), reads them back
 * (GET) and drops them when it frees their swap slots (INVALIDATE*). The
 * pages live, compressed, in the vtmem page store in this process. The wire
 * protocol is include/virtio_tmem.h, specified in docs/virtio-tmem.md.
 *
 * With the "pool" property the device takes its budget from the pool
 * daemon vtmemd (docs/vtmemd.md) through the embedded pool client: the
 * store enforces the daemon's lease capped by "limit".
 *
 * Copyright (c) 2026 The vtmem authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or
 * (at your option) any later version.  See the COPYING file in the
 * top-level directory.
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/iov.h"
#include "qemu/bswap.h"
#include "qemu/error-report.h"
#include "qemu/module.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/uuid.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "hw/qdev-properties.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-bus.h"
#include "hw/virtio/virtio-tmem.h"
#include "hw/virtio/vtmem-qemu-compat.h"
#include "block/aio-wait.h"
#include "migration/vmstate.h"
#include "trace.h"
#include "virtio_tmem.h"
#include "vtmem-store.h"
#include "vtmem-stream.h"
#include "vtmem-pool-client.h"
#include "vtmem-req.h"

QEMU_BUILD_BUG_ON(VIRTIO_TMEM_PAGE_SIZE != VTMEM_STORE_PAGE_SIZE);
QEMU_BUILD_BUG_ON(sizeof(struct virtio_tmem_req_hdr) != 24);
QEMU_BUILD_BUG_ON(sizeof(struct virtio_tmem_config) != 40);
QEMU_BUILD_BUG_ON(sizeof(struct virtio_tmem_resp) != 4);

#define RESP_SIZE sizeof(struct virtio_tmem_resp)
#define HDR_SIZE sizeof(struct virtio_tmem_req_hdr)
#define PAGE_SIZE VIRTIO_TMEM_PAGE_SIZE

/* Not a wire status: the request goes on in steps (virtio_tmem_serve) */
#define VIRTIO_TMEM_S_PENDING UINT32_MAX

/*
 * Work one call of the request handler may do before it yields to its
 * event loop (a bottom half goes on), so that QMP, vCPU exits and other
 * devices never wait long behind the guest: at most CALL_REQS requests
 * and CALL_SLOTS slots of INVALIDATE_RANGE/ALL (a dropped page counts as
 * DROP_COST slots). A range is dropped INVAL_STEP slots per store call.
 * Measured in the qtests (stats "longest-call-ns"): see docs/virtio-tmem.md.
 */
#define VIRTIO_TMEM_CALL_REQS       64
#define VIRTIO_TMEM_CALL_SLOTS      (1 << 20)
#define VIRTIO_TMEM_DROP_COST       256
#define VIRTIO_TMEM_INVAL_STEP      8192

/*
 * Compaction policy (docs/virtio-tmem.md). A pass runs in steps of
 * COMPACT_STEP_SLOTS slots from a main-loop bottom half. It starts when the
 * fragmentation (bytes held beyond what the objects occupy) has grown past
 * the base by 1/2^COMPACT_FRAG_SHIFT of memory held and at least
 * COMPACT_MIN_FRAG, or by COMPACT_INVAL_FRAG after an invalidation of at
 * least LARGE_INVAL pages. The base is what the last pass could not cut
 * (0 after a pass that freed at least COMPACT_INVAL_FRAG: then the policy
 * is asked again at once, for what came during the pass), so a remainder
 * that no pass can give back (about one partly used zspage per size class)
 * does not start a pass after every request. A pass also starts when the
 * limit is lowered, and on request (the
 * "compact" property). A PUT arriving less than PUT_ROOM below the limit
 * first runs up to PUT_COMPACT_STEPS steps in the request's own thread.
 * PUT_ROOM is the most one PUT can take: a new zspage (up to 8 pages), a
 * slot-table chunk (a page) and leaf (4 KiB), a zspage directory segment
 * (16 KiB) and a page of the directory's top level.
 */
#define VIRTIO_TMEM_COMPACT_STEP_SLOTS  2048
#define VIRTIO_TMEM_COMPACT_FRAG_SHIFT  5
#define VIRTIO_TMEM_COMPACT_MIN_FRAG    (1 * MiB)
#define VIRTIO_TMEM_COMPACT_INVAL_FRAG  (256 * KiB)
#define VIRTIO_TMEM_LARGE_INVAL         256
#define VIRTIO_TMEM_PUT_COMPACT_STEPS   16
#define VIRTIO_TMEM_PUT_ROOM            (64 * KiB)

/*
 * Migration: bytes of store objects one pre-copy iteration sends (one
 * section of the stream); QEMU's rate limit is checked between sections.
 */
#define VIRTIO_TMEM_MIG_CHUNK           (256 * KiB)

static uint32_t virtio_tmem_status(vtmem_status st)
{
    switch (st) {
    case VTMEM_OK:
        return VIRTIO_TMEM_S_OK;
    case VTMEM_ERR_NOSPACE:
        return VIRTIO_TMEM_S_NOSPACE;
    case VTMEM_ERR_NOENT:
        return VIRTIO_TMEM_S_NOENT;
    case VTMEM_ERR_RANGE:
    case VTMEM_ERR_INVAL:
        return VIRTIO_TMEM_S_INVAL;
    default:
        return VIRTIO_TMEM_S_IOERR;
    }
}

static void virtio_tmem_note_max(int64_t *max, int64_t value)
{
    /* A statistic: a rare lost update between two threads is harmless. */
    if (value > qatomic_read(max)) {
        qatomic_set(max, value);
    }
}

/* One bounded compaction step, in any thread (the store serialises). */
static bool virtio_tmem_compact_step(VirtIOTmem *s, uint64_t *released)
{
    int64_t start = get_clock();
    bool done;

    done = vtmem_store_compact_step(s->store, VIRTIO_TMEM_COMPACT_STEP_SLOTS,
                                    released);
    virtio_tmem_note_max(&s->compact_longest_step_ns, get_clock() - start);
    return done;
}

/* Main loop: start a compaction pass unless one is running. */
static void virtio_tmem_compact_start(VirtIOTmem *s, const char *why)
{
    if (!s->store || s->compacting) {
        return;
    }
    s->compacting = true;
    s->compact_pass_freed = 0;
    trace_virtio_tmem_compact_start(s, why,
                                    vtmem_store_fragmentation(s->store),
                                    vtmem_store_memory_held(s->store));
    qemu_bh_schedule(s->compact_bh);
}

static void virtio_tmem_pool_update(VirtIOTmem *s)
{
    if (s->pool_client) {
        VtmemStoreStats st;
        VtmemPoolCounters cnt;

        vtmem_store_get_stats(s->store, &st);
        cnt.refusals = st.refusals;
        cnt.stored_pages = st.stored_pages;
        trace_virtio_tmem_pool_update(s, st.memory_held);
        /*
         * Sends a message only at granule boundaries, or when puts were
         * refused (vtmemd's demand signal), at most every 100 ms.
         */
        vtmem_pool_client_report(s->pool_client, st.memory_held,
                                 VTMEM_POOL_WANT_AUTO, &cnt);
    }
}

/* Main loop: start a pass if the fragmentation calls for one. */
static void virtio_tmem_compact_policy(VirtIOTmem *s, bool large_inval)
{
    uint64_t held = vtmem_store_memory_held(s->store);
    uint64_t frag = vtmem_store_fragmentation(s->store);
    uint64_t grown;

    /* Puts fill free slots too: the base follows the fragmentation down. */
    s->compact_frag_base = MIN(s->compact_frag_base, frag);
    grown = frag - s->compact_frag_base;
    if (large_inval && grown >= VIRTIO_TMEM_COMPACT_INVAL_FRAG) {
        virtio_tmem_compact_start(s, "large invalidation");
    } else if (grown >= VIRTIO_TMEM_COMPACT_MIN_FRAG &&
               grown >= held >> VIRTIO_TMEM_COMPACT_FRAG_SHIFT) {
        virtio_tmem_compact_start(s, "fragmentation");
    }
}

/* Main loop: one step of the pass, then yield to the loop. */
static void virtio_tmem_compact_bh(void *opaque)
{
    VirtIOTmem *s = opaque;
    uint64_t released = 0;

    if (!s->compacting) {
        return;
    }
    if (virtio_tmem_compact_step(s, &released)) {
        s->compact_pass_freed += released;
        s->compacting = false;
        trace_virtio_tmem_compact_done(s, vtmem_store_memory_held(s->store));
        if (s->compact_pass_freed >= VIRTIO_TMEM_COMPACT_INVAL_FRAG) {
            s->compact_frag_base = 0;
            virtio_tmem_compact_policy(s, false);
        } else {
            s->compact_frag_base = vtmem_store_fragmentation(s->store);
        }
    } else {
        s->compact_pass_freed += released;
        qemu_bh_schedule(s->compact_bh);
    }
    if (released) {
        virtio_tmem_pool_update(s);
    }
}

/*
 * Before a PUT close to the limit: compaction may make the room, so run a
 * few steps here rather than refuse the page. A fruitless try is not
 * repeated until the fragmentation has grown by a page.
 */
static void virtio_tmem_make_room(VirtIOTmem *s)
{
    uint64_t limit = qatomic_read(&s->store_limit);
    uint64_t held = vtmem_store_memory_held(s->store);
    uint64_t frag, released = 0;
    int i;

    if (held + VIRTIO_TMEM_PUT_ROOM <= limit) {
        return;
    }
    frag = vtmem_store_fragmentation(s->store);
    if (frag < PAGE_SIZE ||
        frag < qatomic_read(&s->fruitless_frag) + PAGE_SIZE) {
        return;
    }
    for (i = 0; i < VIRTIO_TMEM_PUT_COMPACT_STEPS && released < PAGE_SIZE;
         i++) {
        if (virtio_tmem_compact_step(s, &released)) {
            break;
        }
    }
    qatomic_set(&s->fruitless_frag, released < PAGE_SIZE ? frag : 0);
    trace_virtio_tmem_make_room(s, frag, released);
}

static uint32_t virtio_tmem_put(VirtIOTmem *s, VirtQueueElement *elem,
                                uint64_t slot)
{
    vtmem_status st;

    /* Copy the page out: the guest may change it while we compress. */
    if (iov_to_buf(elem->out_sg, elem->out_num, HDR_SIZE, s->bounce,
                   PAGE_SIZE) != PAGE_SIZE) {
        return VIRTIO_TMEM_S_INVAL;
    }
    virtio_tmem_make_room(s);
    st = vtmem_store_put(s->store, slot, s->bounce);
    if (st != VTMEM_OK && st != VTMEM_ERR_NOSPACE) {
        /* IOERR promises that the slot holds nothing. */
        vtmem_store_invalidate(s->store, slot);
    }
    return virtio_tmem_status(st);
}

static uint32_t virtio_tmem_get(VirtIOTmem *s, VirtQueueElement *elem,
                                uint64_t slot)
{
    vtmem_status st = vtmem_store_get(s->store, slot, s->bounce);

    if (st != VTMEM_OK) {
        return virtio_tmem_status(st);
    }
    iov_from_buf(elem->in_sg, elem->in_num, 0, s->bounce, PAGE_SIZE);
    return VIRTIO_TMEM_S_OK;
}

static uint32_t virtio_tmem_invalidate_batch(VirtIOTmem *s,
                                             VirtQueueElement *elem,
                                             uint64_t count)
{
    size_t len = count * sizeof(uint64_t);
    uint32_t status = VIRTIO_TMEM_S_OK;
    uint64_t i, dropped = 0;

    if (iov_to_buf(elem->out_sg, elem->out_num, HDR_SIZE, s->batch, len) !=
        len) {
        return VIRTIO_TMEM_S_INVAL;
    }
    /* Check every slot first: a bad batch drops nothing. */
    if (vtmem_req_decode_batch(s->batch, count, s->nr_slots) !=
        VIRTIO_TMEM_S_OK) {
        return VIRTIO_TMEM_S_INVAL;
    }
    for (i = 0; i < count; i++) {
        vtmem_status st = vtmem_store_invalidate(s->store, s->batch[i]);

        if (st == VTMEM_OK) {
            dropped++;
        } else if (st != VTMEM_ERR_NOENT) {
            status = VIRTIO_TMEM_S_IOERR;
        }
    }
    if (dropped >= VIRTIO_TMEM_LARGE_INVAL) {
        qatomic_set(&s->large_inval, true);
    }
    return status;
}

/* Start dropping [first, first + count) in steps (virtio_tmem_serve). */
static uint32_t virtio_tmem_inval_begin(VirtIOTmem *s, uint64_t first,
                                        uint64_t count)
{
    s->inval_next = first;
    s->inval_end = first + count;
    s->inval_status = VIRTIO_TMEM_S_OK;
    s->inval_dropped = 0;
    return VIRTIO_TMEM_S_PENDING;
}

/*
 * Carry out one request whose device-writable part is in_len bytes (at
 * least RESP_SIZE). Returns the status to put in the response, or
 * VIRTIO_TMEM_S_PENDING for a range dropped in steps.
 */
static uint32_t virtio_tmem_do_req(VirtIOTmem *s, VirtQueueElement *elem,
                                   size_t out_len, size_t in_len)
{
    struct virtio_tmem_req_hdr hdr;
    vtmem_status st;
    uint32_t status;
    VtmemReq req;

    if (out_len < HDR_SIZE ||
        iov_to_buf(elem->out_sg, elem->out_num, 0, &hdr, HDR_SIZE) !=
        HDR_SIZE) {
        trace_virtio_tmem_bad_req(s, 0, 0, 0, out_len, in_len);
        return VIRTIO_TMEM_S_INVAL;
    }
    /* Type, sizes and slot or range checked (vtmem-req.c). */
    status = vtmem_req_decode(&hdr, out_len, in_len, s->nr_slots, &req);
    trace_virtio_tmem_req(s, req.type, req.slot, req.count);
    if (status != VIRTIO_TMEM_S_OK) {
        trace_virtio_tmem_bad_req(s, req.type, req.slot, req.count, out_len,
                                  in_len);
        return status;
    }

    switch (req.type) {
    case VIRTIO_TMEM_T_PUT:
        return virtio_tmem_put(s, elem, req.slot);

    case VIRTIO_TMEM_T_GET:
        return virtio_tmem_get(s, elem, req.slot);

    case VIRTIO_TMEM_T_INVALIDATE:
        st = vtmem_store_invalidate(s->store, req.slot);
        return st == VTMEM_ERR_NOENT ? VIRTIO_TMEM_S_OK :
               virtio_tmem_status(st);

    case VIRTIO_TMEM_T_INVALIDATE_RANGE:
        if (req.count == 0) {
            return VIRTIO_TMEM_S_OK;
        }
        return virtio_tmem_inval_begin(s, req.slot, req.count);

    case VIRTIO_TMEM_T_INVALIDATE_ALL:
        return virtio_tmem_inval_begin(s, 0, s->nr_slots);

    case VIRTIO_TMEM_T_INVALIDATE_BATCH:
        return virtio_tmem_invalidate_batch(s, elem, req.count);

    default:    /* not accepted by vtmem_req_decode */
        return VIRTIO_TMEM_S_UNSUPP;
    }
}

/* Write the response and hand elem back to the driver. */
static void virtio_tmem_complete(VirtIOTmem *s, VirtQueueElement *elem,
                                 size_t in_len, uint32_t status)
{
    struct virtio_tmem_resp resp;

    if (status != VIRTIO_TMEM_S_OK) {
        /* The device writes every byte it reports in the used length. */
        iov_memset(elem->in_sg, elem->in_num, 0, 0, in_len - RESP_SIZE);
    }
    stl_le_p(&resp.status, status);
    iov_from_buf(elem->in_sg, elem->in_num, in_len - RESP_SIZE, &resp,
                 RESP_SIZE);
    trace_virtio_tmem_resp(s, status, in_len);
    virtqueue_push(s->vq, elem, in_len);
    g_free(elem);
}

/* Is every buffer of elem guest RAM, none an MMIO bounce buffer? */
static bool virtio_tmem_elem_in_ram(VirtQueueElement *elem)
{
    ram_addr_t offset;
    unsigned i;

    for (i = 0; i < elem->out_num; i++) {
        if (!memory_region_from_host(elem->out_sg[i].iov_base, &offset)) {
            return false;
        }
    }
    for (i = 0; i < elem->in_num; i++) {
        if (!memory_region_from_host(elem->in_sg[i].iov_base, &offset)) {
            return false;
        }
    }
    return true;
}

/*
 * Checks that make the element unusable: the device is then broken
 * (DEVICE_NEEDS_RESET) and the element is detached with length 0, so
 * nothing is written back (an MMIO write-back could reset the device
 * from inside this handler, in the IOThread).
 */
static bool virtio_tmem_elem_ok(VirtIOTmem *s, VirtQueueElement *elem,
                                size_t in_len)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);

    if (!virtio_tmem_elem_in_ram(elem)) {
        trace_virtio_tmem_bad_elem(s, "buffer outside guest RAM", in_len);
        virtio_error(vdev, "virtio-tmem: request buffer outside guest RAM");
        return false;
    }
    if (!vtmem_req_in_len_ok(in_len)) {
        trace_virtio_tmem_bad_elem(s, "device-writable size", in_len);
        virtio_error(vdev, "virtio-tmem: request with %zu device-writable"
                     " bytes (must be %zu or %zu)", in_len, RESP_SIZE,
                     PAGE_SIZE + RESP_SIZE);
        return false;
    }
    return true;
}

/* One step of the range being dropped; returns the budget it used. */
static uint64_t virtio_tmem_inval_step(VirtIOTmem *s)
{
    uint64_t n = MIN(s->inval_end - s->inval_next, VIRTIO_TMEM_INVAL_STEP);
    uint64_t dropped = 0;
    vtmem_status st;

    st = vtmem_store_invalidate_range(s->store, s->inval_next, n, &dropped);
    if (st != VTMEM_OK) {
        s->inval_status = virtio_tmem_status(st);
    }
    s->inval_next += n;
    s->inval_dropped += dropped;
    return n + dropped * VIRTIO_TMEM_DROP_COST;
}

/* The range is dropped: complete its request (none for a reset). */
static bool virtio_tmem_inval_end(VirtIOTmem *s)
{
    VirtQueueElement *elem = s->inval_elem;

    s->inval_next = s->inval_end = 0;
    if (s->inval_dropped >= VIRTIO_TMEM_LARGE_INVAL) {
        qatomic_set(&s->large_inval, true);
    }
    trace_virtio_tmem_inval_done(s, s->inval_dropped);
    if (!elem) {
        return false;
    }
    s->inval_elem = NULL;
    virtio_tmem_complete(s, elem, s->inval_in_len, s->inval_status);
    return true;
}

/*
 * Give up the request in progress (reset, queue reset). The emptying after
 * a reset (no element) goes on: no page may outlive a reset.
 */
static void virtio_tmem_inval_abort(VirtIOTmem *s)
{
    if (s->inval_elem) {
        virtqueue_detach_element(s->vq, s->inval_elem, 0);
        g_clear_pointer(&s->inval_elem, g_free);
        s->inval_next = s->inval_end = 0;
    }
}

/*
 * Serve the queue within one call's budget, where the queue is served
 * (the main loop or a vCPU thread, or the IOThread with its AioContext
 * held while dataplane). Nothing is popped before DRIVER_OK (virtio 1.x
 * 2.1.2). Requests complete in the order the driver made them available:
 * a queued INVALIDATE never overtakes a later PUT.
 */
static void virtio_tmem_serve(VirtIOTmem *s, bool dataplane)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    int64_t start = get_clock();
    uint64_t slots = 0;
    unsigned reqs = 0;
    bool pushed = false, yield = false;

    for (;;) {
        VirtQueueElement *elem;
        size_t out_len, in_len;
        uint32_t status;

        if (s->inval_next < s->inval_end) {
            if (slots >= VIRTIO_TMEM_CALL_SLOTS) {
                yield = true;
                break;
            }
            slots += virtio_tmem_inval_step(s);
            if (s->inval_next == s->inval_end) {
                pushed |= virtio_tmem_inval_end(s);
            }
            continue;
        }
        if (!(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
            break;
        }
        if (reqs >= VIRTIO_TMEM_CALL_REQS ||
            slots >= VIRTIO_TMEM_CALL_SLOTS) {
            yield = true;
            break;
        }
        elem = virtqueue_pop(s->vq, sizeof(VirtQueueElement));
        if (!elem) {
            break;
        }
        reqs++;
        out_len = iov_size(elem->out_sg, elem->out_num);
        in_len = iov_size(elem->in_sg, elem->in_num);
        if (!virtio_tmem_elem_ok(s, elem, in_len)) {
            virtqueue_detach_element(s->vq, elem, 0);
            g_free(elem);
            break;
        }
        status = virtio_tmem_do_req(s, elem, out_len, in_len);
        if (status == VIRTIO_TMEM_S_PENDING) {
            s->inval_elem = elem;
            s->inval_in_len = in_len;
            continue;
        }
        virtio_tmem_complete(s, elem, in_len, status);
        pushed = true;
    }

    if (pushed) {
        vtmem_notify_vq(vdev, s->vq, dataplane);
    }
    if (pushed || slots) {
        /* Usage may have changed: vtmemd, compaction (main loop). */
        qemu_bh_schedule(s->after_req_bh);
    }
    if (yield) {
        trace_virtio_tmem_yield(s, reqs, slots);
        qemu_bh_schedule(dataplane ? s->req_bh_iothread : s->req_bh);
    }
    virtio_tmem_note_max(&s->longest_call_ns, get_clock() - start);
}

/* The queue handler, and the rest of a call's work from a bottom half. */
static void virtio_tmem_run(VirtIOTmem *s)
{
    /* true: we run in the IOThread (set and cleared in the main loop) */
    bool dataplane = s->dataplane_started;
    AioContext *ctx = dataplane ? iothread_get_aio_context(s->iothread) :
                      NULL;

    if (ctx) {
        vtmem_aio_lock(ctx);
    }
    virtio_tmem_serve(s, dataplane);
    if (ctx) {
        vtmem_aio_unlock(ctx);
    }
}

static void virtio_tmem_handle_req(VirtIODevice *vdev, VirtQueue *vq)
{
    virtio_tmem_run(VIRTIO_TMEM(vdev));
}

/* Main loop; while the dataplane runs, the IOThread owns the queue. */
static void virtio_tmem_req_bh(void *opaque)
{
    VirtIOTmem *s = opaque;

    if (!s->dataplane_started) {
        virtio_tmem_serve(s, false);
    }
}

/* IOThread (cancelled there before the dataplane stops) */
static void virtio_tmem_req_bh_iothread(void *opaque)
{
    virtio_tmem_run(opaque);
}

/*
 * With an IOThread, the request queue is served in its AioContext (as
 * virtio-blk's dataplane does): the host notifier is attached there while
 * the driver is active (DRIVER_OK), and detached before reset.
 */
static int virtio_tmem_start_dataplane(VirtIOTmem *s)
{
    BusState *qbus = qdev_get_parent_bus(DEVICE(s));
    VirtioBusClass *k = VIRTIO_BUS_GET_CLASS(qbus);
    AioContext *ctx;
    int r;

    if (s->dataplane_started) {
        return 0;
    }
    r = k->set_guest_notifiers(qbus->parent, 1, true);
    if (r != 0) {
        error_report("virtio-tmem: cannot set up the guest notifier (%d),"
                     " serving requests in the main loop", r);
        return -ENOSYS;
    }
    memory_region_transaction_begin();
    r = virtio_bus_set_host_notifier(VIRTIO_BUS(qbus), 0, true);
    memory_region_transaction_commit();
    if (r != 0) {
        error_report("virtio-tmem: cannot set up the host notifier (%d),"
                     " serving requests in the main loop", r);
        virtio_bus_cleanup_host_notifier(VIRTIO_BUS(qbus), 0);
        k->set_guest_notifiers(qbus->parent, 1, false);
        return -ENOSYS;
    }
    s->dataplane_started = true;
    trace_virtio_tmem_dataplane(s, true);

    ctx = iothread_get_aio_context(s->iothread);
    /* Requests already in the ring */
    event_notifier_set(virtio_queue_get_host_notifier(s->vq));
    vtmem_aio_lock(ctx);
    virtio_queue_aio_attach_host_notifier(s->vq, ctx);
    vtmem_aio_unlock(ctx);
    return 0;
}

static void virtio_tmem_stop_bh(void *opaque)
{
    VirtIOTmem *s = opaque;
    AioContext *ctx = iothread_get_aio_context(s->iothread);

    virtio_queue_aio_detach_host_notifier(s->vq, ctx);
    qemu_bh_cancel(s->req_bh_iothread);
}

static void virtio_tmem_stop_dataplane(VirtIOTmem *s)
{
    BusState *qbus = qdev_get_parent_bus(DEVICE(s));
    VirtioBusClass *k = VIRTIO_BUS_GET_CLASS(qbus);
    AioContext *ctx;

    if (!s->dataplane_started) {
        return;
    }

    /* After this, no request runs in the IOThread any more. */
    ctx = iothread_get_aio_context(s->iothread);
    vtmem_aio_lock(ctx);
    aio_wait_bh_oneshot(ctx, virtio_tmem_stop_bh, s);
    vtmem_aio_unlock(ctx);

    memory_region_transaction_begin();
    virtio_bus_set_host_notifier(VIRTIO_BUS(qbus), 0, false);
    memory_region_transaction_commit();
    virtio_bus_cleanup_host_notifier(VIRTIO_BUS(qbus), 0);
    k->set_guest_notifiers(qbus->parent, 1, false);
    s->dataplane_started = false;
    trace_virtio_tmem_dataplane(s, false);
    if (s->inval_next < s->inval_end) {
        /* The range in progress goes on in the main loop. */
        qemu_bh_schedule(s->req_bh);
    }
}

static int virtio_tmem_start_ioeventfd(VirtIODevice *vdev)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);

    if (!s->iothread) {
        return VIRTIO_TMEM_GET_CLASS(s)->parent_start_ioeventfd(vdev);
    }
    return virtio_tmem_start_dataplane(s);
}

static void virtio_tmem_stop_ioeventfd(VirtIODevice *vdev)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);

    if (!s->iothread) {
        VIRTIO_TMEM_GET_CLASS(s)->parent_stop_ioeventfd(vdev);
        return;
    }
    virtio_tmem_stop_dataplane(s);
}

/*
 * Queue reset (VIRTIO_F_RING_RESET; virtio-pci lets the guest write
 * Q_RESET and Q_ENABLE at any time, from a vCPU thread): the IOThread
 * stops serving before the ring is cleared, and the request in progress
 * is dropped. Enabling the queue again restarts it. Enabling a queue
 * that is in use without a reset first is a driver error: refused.
 */
static void virtio_tmem_queue_reset(VirtIODevice *vdev, uint32_t index)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);

    trace_virtio_tmem_queue_reset(s, index);
    virtio_tmem_stop_dataplane(s);
    virtio_tmem_inval_abort(s);
    s->queue_was_reset = true;
}

static void virtio_tmem_queue_enable(VirtIODevice *vdev, uint32_t index)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);
    BusState *qbus = qdev_get_parent_bus(DEVICE(vdev));

    trace_virtio_tmem_queue_enable(s, index);
    if ((vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) && !s->queue_was_reset) {
        virtio_error(vdev, "virtio-tmem: queue enabled while in use"
                     " (without a queue reset)");
        return;
    }
    s->queue_was_reset = false;
    if (s->iothread && VIRTIO_BUS(qbus)->ioeventfd_started) {
        virtio_tmem_start_dataplane(s);
    }
    qemu_bh_schedule(s->req_bh);
}

/* DRIVER_OK: serve what is already in the ring (also without ioeventfd). */
static void virtio_tmem_set_status(VirtIODevice *vdev, uint8_t status)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);

    trace_virtio_tmem_set_status(s, status);
    if (status & VIRTIO_CONFIG_S_DRIVER_OK) {
        qemu_bh_schedule(s->req_bh);
    }
}

static void virtio_tmem_get_config(VirtIODevice *vdev, uint8_t *config_data)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);
    struct virtio_tmem_config config = {};

    stl_le_p(&config.page_size, PAGE_SIZE);
    stl_le_p(&config.max_batch, VIRTIO_TMEM_MAX_BATCH);
    stq_le_p(&config.nr_slots, s->nr_slots);
    stq_le_p(&config.limit, s->store_limit);
    stq_le_p(&config.usage, s->store ? vtmem_store_memory_held(s->store) : 0);
    /*
     * VIRTIO_TMEM_F_SHRINK: shrink_target is the limit the store enforces;
     * a driver that negotiated the feature moves pages away while usage
     * is above it. Every change bumps the config generation (and is
     * notified after DRIVER_OK: virtio_tmem_apply_limit()), so the
     * driver's two 32-bit reads of limit or shrink_target are never torn.
     */
    stq_le_p(&config.shrink_target, s->store_limit);
    memcpy(config_data, &config, sizeof(config));
}

static uint64_t virtio_tmem_get_features(VirtIODevice *vdev, uint64_t features,
                                         Error **errp)
{
    virtio_add_feature(&features, VIRTIO_TMEM_F_SHRINK);
    return features;
}

/*
 * The IOThread is stopped by now (virtio-pci stops ioeventfd first). The
 * store is emptied in steps like INVALIDATE_ALL: one call's budget now,
 * the rest from the main loop; no request is served before it is empty.
 */
static void virtio_tmem_reset(VirtIODevice *vdev)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);

    trace_virtio_tmem_reset(s);
    virtio_tmem_inval_abort(s);
    s->queue_was_reset = false;
    if (s->store) {
        virtio_tmem_inval_begin(s, 0, s->nr_slots);
        virtio_tmem_serve(s, false);
    }
}

/* The config space changed: tell the driver (main loop). */
static void virtio_tmem_notify_config(VirtIOTmem *s)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);

    s->mig_notify = false;
    if (vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) {
        virtio_notify_config(vdev);
    } else {
        /* virtio_notify_config() does nothing before DRIVER_OK */
        vdev->generation++;
    }
}

/*
 * Make the store enforce limit (the config space shows it). Lowering it
 * drops nothing: new PUTs are refused, and a compaction pass starts.
 * Main loop only.
 */
static void virtio_tmem_apply_limit(VirtIOTmem *s, uint64_t limit,
                                    const char *source)
{
    uint64_t old = s->store_limit;

    if (!s->store || limit == old) {
        return;
    }
    trace_virtio_tmem_limit(s, source, old, limit);
    qatomic_set(&s->store_limit, limit);
    vtmem_store_set_limit(s->store, limit);
    virtio_tmem_notify_config(s);
    if (limit < old) {
        virtio_tmem_compact_start(s, "limit lowered");
    }
}

/* The pool client (main loop): vtmemd granted a new lease. */
static uint64_t virtio_tmem_pool_set_limit(void *opaque, uint64_t limit)
{
    VirtIOTmem *s = opaque;

    virtio_tmem_apply_limit(s, limit, "pool");
    /* Read after applying the limit: the daemon charges this much. */
    return vtmem_store_memory_held(s->store);
}

static uint64_t virtio_tmem_pool_get_held(void *opaque)
{
    VirtIOTmem *s = opaque;

    return vtmem_store_memory_held(s->store);
}

static const VtmemPoolClientOps virtio_tmem_pool_ops = {
    .set_limit = virtio_tmem_pool_set_limit,
    .get_held = virtio_tmem_pool_get_held,
};

/*
 * Main loop, scheduled after requests (also from the IOThread): report
 * usage to vtmemd, and start compaction when the policy says so.
 */
static void virtio_tmem_after_req_bh(void *opaque)
{
    VirtIOTmem *s = opaque;

    if (!s->store) {
        return;
    }
    if (s->mig_notify && runstate_is_running()) {
        virtio_tmem_notify_config(s);
    }
    virtio_tmem_pool_update(s);
    virtio_tmem_compact_policy(s, qatomic_xchg(&s->large_inval, false));
}

static void virtio_tmem_get_limit(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);
    uint64_t value = s->limit;

    visit_type_size(v, name, &value, errp);
}

/*
 * Settable at any time, also while the guest runs (QMP qom-set). With a
 * pool it is the device's cap: the store enforces min(lease, limit).
 */
static void virtio_tmem_set_limit(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);
    uint64_t value;

    if (!visit_type_size(v, name, &value, errp)) {
        return;
    }
    if (value == s->limit) {
        return;
    }
    s->limit = value;
    if (!s->store) {
        s->store_limit = value;
        return;
    }
    virtio_tmem_apply_limit(s, s->pool_client ?
                            vtmem_pool_client_set_cap(s->pool_client, value) :
                            value, "limit");
}

/* The limit the store enforces: vtmemd's lease capped by "limit". */
static void virtio_tmem_get_pool_limit(Object *obj, Visitor *v,
                                       const char *name, void *opaque,
                                       Error **errp)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);
    uint64_t value = s->store_limit;

    visit_type_size(v, name, &value, errp);
}

static bool virtio_tmem_get_pool_connected(Object *obj, Error **errp)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);

    return s->pool_client && vtmem_pool_client_is_connected(s->pool_client);
}

/* "compact": true while a pass runs; setting true starts one. */
static bool virtio_tmem_get_compact(Object *obj, Error **errp)
{
    return VIRTIO_TMEM(obj)->compacting;
}

static void virtio_tmem_set_compact(Object *obj, bool value, Error **errp)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);

    if (!s->store) {
        error_setg(errp, "the device is not realized");
        return;
    }
    if (value) {
        virtio_tmem_compact_start(s, "requested");
    }
}

/* The statistics: one table for the single properties and "stats". */
typedef struct VirtIOTmemStats {
    VtmemStoreStats store;
    uint64_t fragmentation;
    uint64_t compact_longest_step_ns;
    uint64_t longest_call_ns;
    uint64_t migration_bytes;
} VirtIOTmemStats;

static void virtio_tmem_collect_stats(VirtIOTmem *s, VirtIOTmemStats *st)
{
    memset(st, 0, sizeof(*st));
    if (s->store) {
        vtmem_store_get_stats(s->store, &st->store);
        st->fragmentation = vtmem_store_fragmentation(s->store);
    }
    st->compact_longest_step_ns = qatomic_read(&s->compact_longest_step_ns);
    st->longest_call_ns = qatomic_read(&s->longest_call_ns);
    st->migration_bytes = qatomic_read(&s->mig_bytes);
}

#define VIRTIO_TMEM_STAT(name, field) \
    { name, offsetof(VirtIOTmemStats, field) }

static const struct {
    const char *name;
    size_t offset;
} virtio_tmem_stats[] = {
    VIRTIO_TMEM_STAT("stored-pages", store.stored_pages),
    VIRTIO_TMEM_STAT("same-filled-pages", store.same_filled_pages),
    VIRTIO_TMEM_STAT("raw-pages", store.raw_pages),
    VIRTIO_TMEM_STAT("compressed-bytes", store.compressed_bytes),
    VIRTIO_TMEM_STAT("memory-held", store.memory_held),
    VIRTIO_TMEM_STAT("metadata-bytes", store.metadata_bytes),
    VIRTIO_TMEM_STAT("puts", store.puts),
    VIRTIO_TMEM_STAT("gets", store.gets),
    VIRTIO_TMEM_STAT("invalidations", store.invalidations),
    VIRTIO_TMEM_STAT("refusals", store.refusals),
    VIRTIO_TMEM_STAT("fragmentation", fragmentation),
    VIRTIO_TMEM_STAT("compactions", store.compactions),
    VIRTIO_TMEM_STAT("compact-objects-moved", store.compacted_objects),
    VIRTIO_TMEM_STAT("compact-bytes-freed", store.compacted_bytes),
    VIRTIO_TMEM_STAT("compact-longest-step-ns", compact_longest_step_ns),
    VIRTIO_TMEM_STAT("longest-call-ns", longest_call_ns),
    VIRTIO_TMEM_STAT("migration-bytes", migration_bytes),
};

static uint64_t virtio_tmem_stat_value(const VirtIOTmemStats *st, size_t i)
{
    uint64_t value;

    memcpy(&value, (const uint8_t *)st + virtio_tmem_stats[i].offset,
           sizeof(value));
    return value;
}

static void virtio_tmem_get_stat(Object *obj, Visitor *v, const char *name,
                                 void *opaque, Error **errp)
{
    VirtIOTmemStats st;
    uint64_t value;

    virtio_tmem_collect_stats(VIRTIO_TMEM(obj), &st);
    value = virtio_tmem_stat_value(&st, (uintptr_t)opaque);
    visit_type_uint64(v, name, &value, errp);
}

/* All statistics in one struct, from one snapshot (one QMP round trip). */
static void virtio_tmem_get_all_stats(Object *obj, Visitor *v,
                                      const char *name, void *opaque,
                                      Error **errp)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);
    VirtIOTmemStats st;
    uint64_t value;
    bool ok = true;
    size_t i;

    virtio_tmem_collect_stats(s, &st);
    if (!visit_start_struct(v, name, NULL, 0, errp)) {
        return;
    }
    for (i = 0; ok && i < ARRAY_SIZE(virtio_tmem_stats); i++) {
        value = virtio_tmem_stat_value(&st, i);
        ok = visit_type_uint64(v, virtio_tmem_stats[i].name, &value, errp);
    }
    value = s->store_limit;
    ok = ok && visit_type_uint64(v, "pool-limit", &value, errp);
    ok = ok && visit_check_struct(v, errp);
    visit_end_struct(v, NULL);
}

void virtio_tmem_add_aliases(Object *obj, Object *vdev)
{
    static const char *const props[] = {
        "limit", "pool-limit", "pool-connected", "compact", "stats",
    };
    size_t i;

    /*
     * QEMU 10.0's virtio_instance_init_common() aliases every class
     * property of the backend already; 7.2's only its qdev Properties.
     */
    for (i = 0; i < ARRAY_SIZE(props); i++) {
        if (!object_property_find(obj, props[i])) {
            object_property_add_alias(obj, props[i], vdev, props[i]);
        }
    }
    for (i = 0; i < ARRAY_SIZE(virtio_tmem_stats); i++) {
        if (!object_property_find(obj, virtio_tmem_stats[i].name)) {
            object_property_add_alias(obj, virtio_tmem_stats[i].name, vdev,
                                      virtio_tmem_stats[i].name);
        }
    }
}

/*
 * Migration (docs/virtio-tmem.md, "Migration"): the store travels in a
 * live section of its own, in the vtmem stream format (vtmem-stream.h),
 * objects as stored. Source: save_setup starts the store's dirty log and
 * writes the header; each pre-copy iteration sends dirty slots, about
 * VIRTIO_TMEM_MIG_CHUNK bytes; the pending size (dirty slots times the
 * average record) is data that must go before the destination starts;
 * complete (VM stopped) sends every slot still dirty and END; cleanup
 * stops the log. Migration never changes the source store: after a
 * cancel or failure the VM goes on with all its pages.
 * Destination: load_setup empties the store, the loader validates every
 * record and loads without the limit; load_cleanup enforces the limit
 * again (the guest shrinks any excess: VIRTIO_TMEM_F_SHRINK) and, unless
 * the whole stream was read, leaves the store empty. The device's vmstate
 * (after the live section in the stream) fails the load if END was not
 * read or the slot count differs.
 */

/* VtmemStreamWriteFn: the outgoing migration stream */
static bool virtio_tmem_mig_write(void *opaque, const void *buf, size_t len)
{
    VirtIOTmem *s = opaque;

    qemu_put_buffer(s->mig_out, buf, len);
    return qemu_file_get_error(s->mig_out) == 0;
}

/* VtmemStreamReadFn: the incoming migration stream */
static bool virtio_tmem_mig_read(void *opaque, void *buf, size_t len)
{
    VirtIOTmem *s = opaque;

    return qemu_get_buffer(s->mig_in, buf, len) == len &&
           qemu_file_get_error(s->mig_in) == 0;
}

static void virtio_tmem_mig_note_bytes(VirtIOTmem *s)
{
    qatomic_set(&s->mig_bytes, vtmem_stream_save_bytes(s->mig_saver));
}

static int virtio_tmem_save_setup_errp(QEMUFile *f, void *opaque,
                                       Error **errp)
{
    VirtIOTmem *s = opaque;
    GError *gerr = NULL;

    /*
     * A background snapshot saves the devices first and the live
     * sections while the guest runs on: pages would be saved as they are
     * later. COLO checkpoints leave live sections out.
     */
    if (vtmem_migrate_background_snapshot()) {
        error_setg(errp, "virtio-tmem: background snapshots are not"
                   " supported (the device's pages would not be saved as"
                   " of the snapshot)");
        return -ENOTSUP;
    }
    if (vtmem_migrate_colo()) {
        error_setg(errp, "virtio-tmem: COLO is not supported (its"
                   " checkpoints do not carry the device's pages)");
        return -ENOTSUP;
    }
    g_clear_pointer(&s->mig_saver, vtmem_stream_save_end);
    s->mig_out = f;
    qatomic_set(&s->mig_bytes, 0);
    s->mig_saver = vtmem_stream_save_begin(s->store, virtio_tmem_mig_write,
                                           s, &gerr);
    if (!s->mig_saver) {
        error_setg(errp, "virtio-tmem: %s", gerr->message);
        g_error_free(gerr);
        return -EIO;
    }
    virtio_tmem_mig_note_bytes(s);
    trace_virtio_tmem_mig_save_setup(s, vtmem_store_dirty_count(s->store),
                                     vtmem_store_memory_held(s->store));
    return 0;
}

VTMEM_SAVE_SETUP_FN(virtio_tmem_save_setup, virtio_tmem_save_setup_errp)

/* Migration thread, without the BQL: the guest runs and PUTs meanwhile. */
static int virtio_tmem_save_iterate(QEMUFile *f, void *opaque)
{
    VirtIOTmem *s = opaque;
    uint64_t before = vtmem_stream_save_bytes(s->mig_saver);
    GError *gerr = NULL;
    int ret;

    if (!s->mig_saver) {
        return -EINVAL;
    }
    s->mig_out = f;
    ret = vtmem_stream_save_iterate(s->mig_saver, VIRTIO_TMEM_MIG_CHUNK,
                                    &gerr);
    if (ret < 0) {
        error_report("virtio-tmem: migration: %s", gerr->message);
        g_error_free(gerr);
        return -EIO;
    }
    virtio_tmem_mig_note_bytes(s);
    trace_virtio_tmem_mig_save_iterate(s, qatomic_read(&s->mig_bytes) - before,
                                       ret);
    return ret;
}

static uint64_t virtio_tmem_save_pending_bytes(void *opaque)
{
    VirtIOTmem *s = opaque;
    uint64_t bytes = vtmem_stream_save_pending(s->mig_saver);

    trace_virtio_tmem_mig_pending(s, bytes);
    return bytes;
}

VTMEM_PENDING_FN(virtio_tmem_save_pending, virtio_tmem_save_pending_bytes)

/*
 * The VM is stopped (the IOThread too) and the BQL held: send every slot
 * still dirty and END. A range still being dropped in steps is dropped
 * to its end first, so that the destination gets the final contents; its
 * request (not completed: guest RAM is already sent) stays in the ring
 * and the destination runs it again (virtio_tmem_post_load).
 */
static int virtio_tmem_save_complete(QEMUFile *f, void *opaque)
{
    VirtIOTmem *s = opaque;
    GError *gerr = NULL;

    if (!s->mig_saver) {
        return -EINVAL;
    }
    if (s->inval_next < s->inval_end) {
        vtmem_store_invalidate_range(s->store, s->inval_next,
                                     s->inval_end - s->inval_next, NULL);
    }
    s->mig_out = f;
    if (!vtmem_stream_save_complete(s->mig_saver, &gerr)) {
        error_report("virtio-tmem: migration: %s", gerr->message);
        g_error_free(gerr);
        return -EIO;
    }
    virtio_tmem_mig_note_bytes(s);
    trace_virtio_tmem_mig_save_complete(s, qatomic_read(&s->mig_bytes),
                                        vtmem_store_memory_held(s->store));
    return 0;
}

/* After success, failure or cancel: the dirty log stops, nothing else. */
static void virtio_tmem_save_cleanup(void *opaque)
{
    VirtIOTmem *s = opaque;

    trace_virtio_tmem_mig_save_cleanup(s, qatomic_read(&s->mig_bytes));
    g_clear_pointer(&s->mig_saver, vtmem_stream_save_end);
    s->mig_out = NULL;
}

/*
 * Main loop (BQL), before any record: the store must be empty. An
 * incoming QEMU was reset at start and loadvm resets the machine, but
 * the reset empties the store in steps from a bottom half: finish that
 * here so that it never drops loaded pages.
 */
static int virtio_tmem_load_setup_errp(QEMUFile *f, void *opaque,
                                       Error **errp)
{
    VirtIOTmem *s = opaque;

    virtio_tmem_inval_abort(s);
    s->inval_next = s->inval_end = 0;
    vtmem_store_invalidate_all(s->store);
    g_clear_pointer(&s->mig_loader, vtmem_stream_load_end);
    s->mig_in = f;
    s->mig_loaded = false;
    s->mig_loader = vtmem_stream_load_begin(s->store, virtio_tmem_mig_read,
                                            s);
    trace_virtio_tmem_mig_load_setup(s, s->nr_slots);
    return 0;
}

VTMEM_LOAD_SETUP_FN(virtio_tmem_load_setup, virtio_tmem_load_setup_errp)

/* One section of the stream (main loop, BQL). */
static int virtio_tmem_load_state(QEMUFile *f, void *opaque, int version_id)
{
    VirtIOTmem *s = opaque;
    GError *gerr = NULL;
    uint64_t held;
    int ret;

    if (!s->mig_loader) {
        error_report("virtio-tmem: migration data without its setup");
        return -EINVAL;
    }
    s->mig_in = f;
    ret = vtmem_stream_load_section(s->mig_loader, &gerr);
    if (ret < 0) {
        error_report("virtio-tmem: incoming migration refused: %s",
                     gerr->message);
        g_error_free(gerr);
        return -EINVAL;
    }
    s->mig_loaded = ret == 1;
    held = vtmem_store_memory_held(s->store);
    if (s->pool_client) {
        /*
         * vtmemd learns early how much is coming (the header has the
         * source's usage); the client sends only at granule boundaries.
         */
        vtmem_pool_client_update(s->pool_client, held,
                                 MAX(held, vtmem_stream_load_source_held(
                                                s->mig_loader)));
    }
    trace_virtio_tmem_mig_load_section(s, ret, held);
    return 0;
}

/*
 * After the whole incoming stream (also after a failure): the limit is
 * enforced again. A store the guest no longer fits in is shrunk by the
 * guest (shrink_target); the driver is told the new config once the VM
 * runs, vtmemd the usage now.
 */
static int virtio_tmem_load_cleanup(void *opaque)
{
    VirtIOTmem *s = opaque;
    bool ok;

    if (!s->mig_loader) {
        return 0;
    }
    ok = vtmem_stream_load_end(s->mig_loader);
    s->mig_loader = NULL;
    s->mig_in = NULL;
    trace_virtio_tmem_mig_load_done(s, ok, vtmem_store_memory_held(s->store),
                                    s->store_limit);
    s->mig_notify = ok;
    qemu_bh_schedule(s->after_req_bh);
    return 0;
}

static const SaveVMHandlers virtio_tmem_savevm_handlers = {
    .save_setup = virtio_tmem_save_setup,
    .save_live_iterate = virtio_tmem_save_iterate,
    VTMEM_SAVEVM_PENDING(virtio_tmem_save_pending),
    VTMEM_SAVEVM_COMPLETE(virtio_tmem_save_complete),
    .save_cleanup = virtio_tmem_save_cleanup,
    .load_setup = virtio_tmem_load_setup,
    .load_state = virtio_tmem_load_state,
    .load_cleanup = virtio_tmem_load_cleanup,
};

/* The VM runs (again): the driver may have a new config to read. */
static void virtio_tmem_vm_state_change(void *opaque, bool running,
                                        RunState state)
{
    VirtIOTmem *s = opaque;

    if (running && s->mig_notify) {
        qemu_bh_schedule(s->after_req_bh);
    }
}

/* realize: one live section per device, named after its qdev path */
static void virtio_tmem_mig_register(VirtIOTmem *s)
{
    g_autofree char *path = vmstate_if_get_id(VMSTATE_IF(s));

    s->mig_id = g_strdup_printf("%s/virtio-tmem-store", path ? path : "");
    register_savevm_live(s->mig_id, VMSTATE_INSTANCE_ID_ANY, 1,
                         &virtio_tmem_savevm_handlers, s);
    s->vm_state = qemu_add_vm_change_state_handler(
                      virtio_tmem_vm_state_change, s);
}

static void virtio_tmem_mig_unregister(VirtIOTmem *s)
{
    if (s->mig_id) {
        unregister_savevm(VMSTATE_IF(s), "virtio-tmem-store", s);
        g_clear_pointer(&s->mig_id, g_free);
    }
    g_clear_pointer(&s->vm_state, qemu_del_vm_change_state_handler);
    g_clear_pointer(&s->mig_saver, vtmem_stream_save_end);
    g_clear_pointer(&s->mig_loader, vtmem_stream_load_end);
}

/*
 * Everything realize acquires, freed in reverse; NULL-safe, so realize's
 * failure paths and unrealize share it.
 */
static void virtio_tmem_free_resources(VirtIOTmem *s)
{
    g_clear_pointer(&s->compact_bh, qemu_bh_delete);
    g_clear_pointer(&s->after_req_bh, qemu_bh_delete);
    g_clear_pointer(&s->req_bh_iothread, qemu_bh_delete);
    g_clear_pointer(&s->req_bh, qemu_bh_delete);
    /* Sends BYE: the VM's budget returns to the pool at once. */
    g_clear_pointer(&s->pool_client, vtmem_pool_client_free);
    g_clear_pointer(&s->store, vtmem_store_free);
    g_clear_pointer(&s->bounce, g_free);
    g_clear_pointer(&s->batch, g_free);
}

static bool virtio_tmem_connect_pool(VirtIOTmem *s, Error **errp)
{
    g_autofree char *uuid = qemu_uuid_unparse_strdup(&qemu_uuid);
    GError *gerr = NULL;

    if (!qemu_uuid_set) {
        warn_report("virtio-tmem: no -uuid: the VM registers with vtmemd"
                    " as %s; give every VM its own -uuid", uuid);
    }
    /* An unreachable daemon is not an error: the client retries. */
    s->pool_client = vtmem_pool_client_new(s->pool,
                                           qemu_name ? qemu_name : "",
                                           uuid, s->limit,
                                           &virtio_tmem_pool_ops, s,
                                           NULL, &gerr);
    if (!s->pool_client) {
        error_setg(errp, "pool: %s", gerr->message);
        g_error_free(gerr);
        return false;
    }
    s->store_limit = vtmem_pool_client_get_limit(s->pool_client);
    vtmem_store_set_limit(s->store, s->store_limit);
    trace_virtio_tmem_limit(s, "pool", s->limit, s->store_limit);
    return true;
}

static void virtio_tmem_device_realize(DeviceState *dev, Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOTmem *s = VIRTIO_TMEM(dev);

    if (s->nr_slots == 0 || s->nr_slots > VIRTIO_TMEM_MAX_SLOTS) {
        error_setg(errp, "'slots' must be 1 .. %llu", VIRTIO_TMEM_MAX_SLOTS);
        return;
    }
    if (s->queue_size < 2 || s->queue_size > VIRTQUEUE_MAX_SIZE ||
        !is_power_of_2(s->queue_size)) {
        error_setg(errp, "'queue-size' must be a power of 2 in 2 .. %d",
                   VIRTQUEUE_MAX_SIZE);
        return;
    }

    s->store = vtmem_store_new(s->nr_slots, s->limit);
    if (!s->store) {
        error_setg(errp, "cannot create a page store of %" PRIu64 " slots",
                   s->nr_slots);
        goto fail;
    }
    s->store_limit = s->limit;
    if (s->pool && s->pool[0] && !virtio_tmem_connect_pool(s, errp)) {
        goto fail;
    }

    s->bounce = g_malloc(PAGE_SIZE);
    s->batch = g_new(uint64_t, VIRTIO_TMEM_MAX_BATCH);
    s->req_bh = qemu_bh_new_guarded(virtio_tmem_req_bh, s,
                                    &dev->mem_reentrancy_guard);
    if (s->iothread) {
        s->req_bh_iothread =
            aio_bh_new_guarded(iothread_get_aio_context(s->iothread),
                               virtio_tmem_req_bh_iothread, s,
                               &dev->mem_reentrancy_guard);
    }
    s->after_req_bh = qemu_bh_new_guarded(virtio_tmem_after_req_bh, s,
                                          &dev->mem_reentrancy_guard);
    s->compact_bh = qemu_bh_new_guarded(virtio_tmem_compact_bh, s,
                                        &dev->mem_reentrancy_guard);

    virtio_init(vdev, VIRTIO_ID_TMEM, sizeof(struct virtio_tmem_config));
    s->vq = virtio_add_queue(vdev, s->queue_size, virtio_tmem_handle_req);
    virtio_tmem_mig_register(s);
    return;

fail:
    virtio_tmem_free_resources(s);
}

static void virtio_tmem_device_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOTmem *s = VIRTIO_TMEM(dev);

    virtio_tmem_mig_unregister(s);
    g_clear_pointer(&s->inval_elem, g_free);
    virtio_delete_queue(s->vq);
    virtio_cleanup(vdev);
    virtio_tmem_free_resources(s);
}

static void virtio_tmem_instance_init(Object *obj)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);

    s->limit = VIRTIO_TMEM_DEFAULT_LIMIT;
    s->store_limit = s->limit;
}

/*
 * The device's own state, after the live section in the stream: the
 * slot count must be the source's (the driver read it), and the live
 * section must have been read to its END.
 */
static int virtio_tmem_pre_save(void *opaque)
{
    VirtIOTmem *s = opaque;

    s->mig_nr_slots = s->nr_slots;
    return 0;
}

static int virtio_tmem_dev_post_load(void *opaque, int version_id)
{
    VirtIOTmem *s = opaque;

    if (s->mig_nr_slots != s->nr_slots) {
        error_report("virtio-tmem: the source device has %" PRIu64
                     " slots, this one %" PRIu64 " ('slots' must be equal)",
                     s->mig_nr_slots, s->nr_slots);
        return -EINVAL;
    }
    if (!s->mig_loaded) {
        error_report("virtio-tmem: the device's pages are missing from the"
                     " migration stream (its live section was not read to"
                     " the end)");
        return -EINVAL;
    }
    return 0;
}

static const VMStateDescription vmstate_virtio_tmem_device = {
    .name = "virtio-tmem-device",
    .minimum_version_id = 1,
    .version_id = 1,
    .pre_save = virtio_tmem_pre_save,
    .post_load = virtio_tmem_dev_post_load,
    .fields = (VMStateField[]) {
        VMSTATE_UINT64(mig_nr_slots, VirtIOTmem),
        VMSTATE_END_OF_LIST()
    },
};

/*
 * After virtio_load: a request popped on the source but not completed
 * (a range dropped in steps) is in use; make it available again so that
 * it runs here. Every request type is idempotent.
 */
static int virtio_tmem_post_load(VirtIODevice *vdev)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);

    while (virtqueue_rewind(s->vq, 1)) {
        continue;
    }
    return 0;
}

static const VMStateDescription vmstate_virtio_tmem = {
    .name = "virtio-tmem",
    .minimum_version_id = 1,
    .version_id = 1,
    .fields = (VMStateField[]) {
        VMSTATE_VIRTIO_DEVICE,
        VMSTATE_END_OF_LIST()
    },
};

static VTMEM_PROPERTY_CONST Property virtio_tmem_properties[] = {
    DEFINE_PROP_UINT64("slots", VirtIOTmem, nr_slots,
                       VIRTIO_TMEM_DEFAULT_SLOTS),
    DEFINE_PROP_UINT16("queue-size", VirtIOTmem, queue_size,
                       VIRTIO_TMEM_DEFAULT_QUEUE_SIZE),
    DEFINE_PROP_LINK("iothread", VirtIOTmem, iothread, TYPE_IOTHREAD,
                     IOThread *),
    /* vtmemd's socket; unset or empty: standalone on "limit" */
    DEFINE_PROP_STRING("pool", VirtIOTmem, pool),
    VTMEM_PROPERTIES_END
};

static void virtio_tmem_class_init(ObjectClass *klass,
                                   VTMEM_CLASS_DATA *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioDeviceClass *vdc = VIRTIO_DEVICE_CLASS(klass);
    VirtIOTmemClass *tc = VIRTIO_TMEM_CLASS(klass);
    size_t i;

    device_class_set_props(dc, virtio_tmem_properties);
    dc->vmsd = &vmstate_virtio_tmem;
    vdc->vmsd = &vmstate_virtio_tmem_device;
    vdc->post_load = virtio_tmem_post_load;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    vdc->realize = virtio_tmem_device_realize;
    vdc->unrealize = virtio_tmem_device_unrealize;
    vdc->get_config = virtio_tmem_get_config;
    vdc->get_features = virtio_tmem_get_features;
    vdc->set_status = virtio_tmem_set_status;
    vdc->reset = virtio_tmem_reset;
    vdc->queue_reset = virtio_tmem_queue_reset;
    vdc->queue_enable = virtio_tmem_queue_enable;
    tc->parent_start_ioeventfd = vdc->start_ioeventfd;
    tc->parent_stop_ioeventfd = vdc->stop_ioeventfd;
    vdc->start_ioeventfd = virtio_tmem_start_ioeventfd;
    vdc->stop_ioeventfd = virtio_tmem_stop_ioeventfd;

    object_class_property_add(klass, "limit", "size", virtio_tmem_get_limit,
                              virtio_tmem_set_limit, NULL, NULL);
    object_class_property_set_description(klass, "limit",
        "Bytes of host memory the device may hold (settable at run time)");
    object_class_property_add(klass, "pool-limit", "size",
                              virtio_tmem_get_pool_limit, NULL, NULL, NULL);
    object_class_property_set_description(klass, "pool-limit",
        "Bytes the device may hold now: the lease from vtmemd capped by"
        " 'limit' ('limit' when standalone)");
    object_class_property_add_bool(klass, "pool-connected",
                                   virtio_tmem_get_pool_connected, NULL);
    object_class_property_set_description(klass, "pool-connected",
        "Registered with vtmemd right now");
    object_class_property_add_bool(klass, "compact", virtio_tmem_get_compact,
                                   virtio_tmem_set_compact);
    object_class_property_set_description(klass, "compact",
        "A compaction pass is running; set to true to start one");
    object_class_property_add(klass, "stats", "VirtioTmemStats",
                              virtio_tmem_get_all_stats, NULL, NULL, NULL);
    object_class_property_set_description(klass, "stats",
        "All statistics and pool-limit, from one snapshot");
    for (i = 0; i < ARRAY_SIZE(virtio_tmem_stats); i++) {
        object_class_property_add(klass, virtio_tmem_stats[i].name, "uint64",
                                  virtio_tmem_get_stat, NULL, NULL,
                                  (void *)i);
    }
}

static const TypeInfo virtio_tmem_info = {
    .name = TYPE_VIRTIO_TMEM,
    .parent = TYPE_VIRTIO_DEVICE,
    .instance_size = sizeof(VirtIOTmem),
    .instance_init = virtio_tmem_instance_init,
    .class_size = sizeof(VirtIOTmemClass),
    .class_init = virtio_tmem_class_init,
};

static void virtio_tmem_register_types(void)
{
    type_register_static(&virtio_tmem_info);
}

type_init(virtio_tmem_register_types)
