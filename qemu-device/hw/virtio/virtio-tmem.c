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
#include "virtio_tmem.h"
#include "vtmem-store.h"
#include "vtmem-pool-client.h"

QEMU_BUILD_BUG_ON(VIRTIO_TMEM_PAGE_SIZE != VTMEM_STORE_PAGE_SIZE);
QEMU_BUILD_BUG_ON(sizeof(struct virtio_tmem_req_hdr) != 24);
QEMU_BUILD_BUG_ON(sizeof(struct virtio_tmem_config) != 40);
QEMU_BUILD_BUG_ON(sizeof(struct virtio_tmem_resp) != 4);

#define RESP_SIZE sizeof(struct virtio_tmem_resp)
#define HDR_SIZE sizeof(struct virtio_tmem_req_hdr)

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

static uint32_t virtio_tmem_put(VirtIOTmem *s, VirtQueueElement *elem,
                                uint64_t slot)
{
    vtmem_status st;

    /* Copy the page out: the guest may change it while we compress. */
    if (iov_to_buf(elem->out_sg, elem->out_num, HDR_SIZE, s->bounce,
                   VIRTIO_TMEM_PAGE_SIZE) != VIRTIO_TMEM_PAGE_SIZE) {
        return VIRTIO_TMEM_S_INVAL;
    }
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
    iov_from_buf(elem->in_sg, elem->in_num, 0, s->bounce,
                 VIRTIO_TMEM_PAGE_SIZE);
    return VIRTIO_TMEM_S_OK;
}

static uint32_t virtio_tmem_invalidate_batch(VirtIOTmem *s,
                                             VirtQueueElement *elem,
                                             uint64_t count)
{
    size_t len = count * sizeof(uint64_t);
    uint32_t status = VIRTIO_TMEM_S_OK;
    uint64_t i;

    if (iov_to_buf(elem->out_sg, elem->out_num, HDR_SIZE, s->batch, len) !=
        len) {
        return VIRTIO_TMEM_S_INVAL;
    }
    /* Check every slot first: a bad batch drops nothing. */
    for (i = 0; i < count; i++) {
        s->batch[i] = le64_to_cpu(s->batch[i]);
        if (s->batch[i] >= s->nr_slots) {
            return VIRTIO_TMEM_S_INVAL;
        }
    }
    for (i = 0; i < count; i++) {
        vtmem_status st = vtmem_store_invalidate(s->store, s->batch[i]);

        if (st != VTMEM_OK && st != VTMEM_ERR_NOENT) {
            status = VIRTIO_TMEM_S_IOERR;
        }
    }
    return status;
}

/*
 * Carry out one request whose device-writable part is in_len bytes (at
 * least RESP_SIZE). Returns the status to put in the response.
 */
static uint32_t virtio_tmem_do_req(VirtIOTmem *s, VirtQueueElement *elem,
                                   size_t out_len, size_t in_len)
{
    struct virtio_tmem_req_hdr hdr;
    uint64_t slot, count;
    vtmem_status st;
    uint32_t type;

    if (out_len < HDR_SIZE ||
        iov_to_buf(elem->out_sg, elem->out_num, 0, &hdr, HDR_SIZE) !=
        HDR_SIZE) {
        return VIRTIO_TMEM_S_INVAL;
    }
    type = le32_to_cpu(hdr.type);
    slot = le64_to_cpu(hdr.slot);
    count = le64_to_cpu(hdr.count);

    switch (type) {
    case VIRTIO_TMEM_T_PUT:
        if (out_len != HDR_SIZE + VIRTIO_TMEM_PAGE_SIZE ||
            in_len != RESP_SIZE || slot >= s->nr_slots) {
            return VIRTIO_TMEM_S_INVAL;
        }
        return virtio_tmem_put(s, elem, slot);

    case VIRTIO_TMEM_T_GET:
        if (out_len != HDR_SIZE ||
            in_len != VIRTIO_TMEM_PAGE_SIZE + RESP_SIZE ||
            slot >= s->nr_slots) {
            return VIRTIO_TMEM_S_INVAL;
        }
        return virtio_tmem_get(s, elem, slot);

    case VIRTIO_TMEM_T_INVALIDATE:
        if (out_len != HDR_SIZE || in_len != RESP_SIZE ||
            slot >= s->nr_slots) {
            return VIRTIO_TMEM_S_INVAL;
        }
        st = vtmem_store_invalidate(s->store, slot);
        return st == VTMEM_ERR_NOENT ? VIRTIO_TMEM_S_OK :
               virtio_tmem_status(st);

    case VIRTIO_TMEM_T_INVALIDATE_RANGE:
        if (out_len != HDR_SIZE || in_len != RESP_SIZE ||
            slot > s->nr_slots || count > s->nr_slots - slot) {
            return VIRTIO_TMEM_S_INVAL;
        }
        if (count == 0) {
            return VIRTIO_TMEM_S_OK;
        }
        return virtio_tmem_status(vtmem_store_invalidate_range(s->store, slot,
                                                               count, NULL));

    case VIRTIO_TMEM_T_INVALIDATE_ALL:
        if (out_len != HDR_SIZE || in_len != RESP_SIZE) {
            return VIRTIO_TMEM_S_INVAL;
        }
        vtmem_store_invalidate_all(s->store);
        return VIRTIO_TMEM_S_OK;

    case VIRTIO_TMEM_T_INVALIDATE_BATCH:
        if (count > VIRTIO_TMEM_MAX_BATCH ||
            out_len != HDR_SIZE + count * sizeof(uint64_t) ||
            in_len != RESP_SIZE) {
            return VIRTIO_TMEM_S_INVAL;
        }
        return virtio_tmem_invalidate_batch(s, elem, count);

    default:
        return VIRTIO_TMEM_S_UNSUPP;
    }
}

static void virtio_tmem_handle_req(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);
    VirtQueueElement *elem;
    bool pushed = false;
    /* true: we run in the IOThread (set and cleared in the main loop) */
    bool dataplane = s->dataplane_started;
    AioContext *ctx = dataplane ? iothread_get_aio_context(s->iothread) :
                      NULL;

    if (ctx) {
        vtmem_aio_lock(ctx);
    }

    /*
     * One request at a time, completed in the order the driver made them
     * available: a queued INVALIDATE never overtakes a later PUT.
     */
    while ((elem = virtqueue_pop(vq, sizeof(VirtQueueElement)))) {
        size_t out_len = iov_size(elem->out_sg, elem->out_num);
        size_t in_len = iov_size(elem->in_sg, elem->in_num);
        struct virtio_tmem_resp resp;
        uint32_t status;

        if (in_len < RESP_SIZE ||
            in_len > VIRTIO_TMEM_PAGE_SIZE + RESP_SIZE) {
            virtio_error(vdev, "virtio-tmem: request with %zu device-writable"
                         " bytes (must be %zu or %zu)", in_len, RESP_SIZE,
                         VIRTIO_TMEM_PAGE_SIZE + RESP_SIZE);
            virtqueue_detach_element(vq, elem, 0);
            g_free(elem);
            break;
        }

        status = virtio_tmem_do_req(s, elem, out_len, in_len);
        if (status != VIRTIO_TMEM_S_OK) {
            /* The device writes every byte it reports in the used length. */
            iov_memset(elem->in_sg, elem->in_num, 0, 0, in_len - RESP_SIZE);
        }
        stl_le_p(&resp.status, status);
        iov_from_buf(elem->in_sg, elem->in_num, in_len - RESP_SIZE, &resp,
                     RESP_SIZE);
        virtqueue_push(vq, elem, in_len);
        g_free(elem);
        pushed = true;
    }
    if (pushed) {
        vtmem_notify_vq(vdev, vq, dataplane);
        /* Usage may have changed: tell vtmemd (from the main loop). */
        if (s->pool_bh) {
            qemu_bh_schedule(s->pool_bh);
        }
    }
    if (ctx) {
        vtmem_aio_unlock(ctx);
    }
}

/*
 * With an IOThread, the request queue is served in its AioContext (as
 * virtio-blk's dataplane does): the host notifier is attached there while
 * the driver is active (DRIVER_OK), and detached before reset.
 */
static int (*virtio_tmem_parent_start_ioeventfd)(VirtIODevice *vdev);
static void (*virtio_tmem_parent_stop_ioeventfd)(VirtIODevice *vdev);

static int virtio_tmem_start_ioeventfd(VirtIODevice *vdev)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);
    BusState *qbus = qdev_get_parent_bus(DEVICE(vdev));
    VirtioBusClass *k = VIRTIO_BUS_GET_CLASS(qbus);
    AioContext *ctx;
    int r;

    if (!s->iothread) {
        return virtio_tmem_parent_start_ioeventfd(vdev);
    }
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
}

static void virtio_tmem_stop_ioeventfd(VirtIODevice *vdev)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);
    BusState *qbus = qdev_get_parent_bus(DEVICE(vdev));
    VirtioBusClass *k = VIRTIO_BUS_GET_CLASS(qbus);
    AioContext *ctx;

    if (!s->iothread) {
        virtio_tmem_parent_stop_ioeventfd(vdev);
        return;
    }
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
}

static void virtio_tmem_get_config(VirtIODevice *vdev, uint8_t *config_data)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);
    struct virtio_tmem_config config = {};

    stl_le_p(&config.page_size, VIRTIO_TMEM_PAGE_SIZE);
    stl_le_p(&config.max_batch, VIRTIO_TMEM_MAX_BATCH);
    stq_le_p(&config.nr_slots, s->nr_slots);
    stq_le_p(&config.limit, s->store_limit);
    stq_le_p(&config.usage, s->store ? vtmem_store_memory_held(s->store) : 0);
    /*
     * VIRTIO_TMEM_F_SHRINK: shrink_target is the limit the store enforces;
     * a driver that negotiated the feature moves pages away while usage
     * is above it. Every change is notified (virtio_tmem_apply_limit(); the
     * notification bumps the config generation, so the driver's two 32-bit
     * reads of limit or shrink_target are never torn).
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

static void virtio_tmem_reset(VirtIODevice *vdev)
{
    VirtIOTmem *s = VIRTIO_TMEM(vdev);

    if (s->store) {
        vtmem_store_invalidate_all(s->store);
    }
    if (s->pool_bh) {
        qemu_bh_schedule(s->pool_bh);
    }
}

/*
 * Make the store enforce limit (the config space shows it). Lowering it
 * drops nothing: new PUTs are refused. Main loop only.
 */
static void virtio_tmem_apply_limit(VirtIOTmem *s, uint64_t limit)
{
    if (!s->store || limit == s->store_limit) {
        return;
    }
    s->store_limit = limit;
    vtmem_store_set_limit(s->store, limit);
    virtio_notify_config(VIRTIO_DEVICE(s));
}

/* The pool client (main loop): vtmemd granted a new lease. */
static uint64_t virtio_tmem_pool_set_limit(void *opaque, uint64_t limit)
{
    VirtIOTmem *s = opaque;

    virtio_tmem_apply_limit(s, limit);
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

/* Scheduled after requests (also from the IOThread): report usage. */
static void virtio_tmem_pool_bh(void *opaque)
{
    VirtIOTmem *s = opaque;

    if (s->pool_client) {
        /* Sends a message only at granule boundaries. */
        vtmem_pool_client_update(s->pool_client,
                                 vtmem_store_memory_held(s->store),
                                 VTMEM_POOL_WANT_AUTO);
    }
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
                            value);
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

static void virtio_tmem_get_stat(Object *obj, Visitor *v, const char *name,
                                 void *opaque, Error **errp)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);
    VtmemStoreStats stats = {};
    uint64_t value;

    if (s->store) {
        vtmem_store_get_stats(s->store, &stats);
    }
    memcpy(&value, (uint8_t *)&stats + (uintptr_t)opaque, sizeof(value));
    visit_type_uint64(v, name, &value, errp);
}

#define VIRTIO_TMEM_STAT(name, field) \
    { name, offsetof(VtmemStoreStats, field) }

static const struct {
    const char *name;
    size_t offset;
} virtio_tmem_stats[] = {
    VIRTIO_TMEM_STAT("stored-pages", stored_pages),
    VIRTIO_TMEM_STAT("same-filled-pages", same_filled_pages),
    VIRTIO_TMEM_STAT("raw-pages", raw_pages),
    VIRTIO_TMEM_STAT("compressed-bytes", compressed_bytes),
    VIRTIO_TMEM_STAT("memory-held", memory_held),
    VIRTIO_TMEM_STAT("metadata-bytes", metadata_bytes),
    VIRTIO_TMEM_STAT("puts", puts),
    VIRTIO_TMEM_STAT("gets", gets),
    VIRTIO_TMEM_STAT("invalidations", invalidations),
    VIRTIO_TMEM_STAT("refusals", refusals),
};

void virtio_tmem_add_aliases(Object *obj, Object *vdev)
{
    size_t i;

    object_property_add_alias(obj, "limit", vdev, "limit");
    object_property_add_alias(obj, "pool-limit", vdev, "pool-limit");
    object_property_add_alias(obj, "pool-connected", vdev, "pool-connected");
    for (i = 0; i < ARRAY_SIZE(virtio_tmem_stats); i++) {
        object_property_add_alias(obj, virtio_tmem_stats[i].name, vdev,
                                  virtio_tmem_stats[i].name);
    }
}

static void virtio_tmem_device_realize(DeviceState *dev, Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOTmem *s = VIRTIO_TMEM(dev);

    if (s->nr_slots == 0 || s->nr_slots > VIRTIO_TMEM_MAX_SLOTS) {
        error_setg(errp, "virtio-tmem: 'slots' must be 1 .. %llu",
                   VIRTIO_TMEM_MAX_SLOTS);
        return;
    }
    if (s->queue_size < 2 || s->queue_size > VIRTQUEUE_MAX_SIZE ||
        !is_power_of_2(s->queue_size)) {
        error_setg(errp, "virtio-tmem: 'queue-size' must be a power of 2"
                   " in 2 .. %d", VIRTQUEUE_MAX_SIZE);
        return;
    }

    error_setg(&s->migration_blocker, "virtio-tmem does not support"
               " migration yet: the guest's pages held by the device would"
               " be lost");
    if (vtmem_migrate_add_blocker(&s->migration_blocker, errp) < 0) {
        return;
    }

    s->store = vtmem_store_new(s->nr_slots, s->limit);
    if (!s->store) {
        error_setg(errp, "virtio-tmem: cannot create a page store of %"
                   PRIu64 " slots", s->nr_slots);
        vtmem_migrate_del_blocker(&s->migration_blocker);
        return;
    }
    s->store_limit = s->limit;

    if (s->pool && s->pool[0]) {
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
            error_setg(errp, "virtio-tmem: pool: %s", gerr->message);
            g_error_free(gerr);
            vtmem_store_free(s->store);
            s->store = NULL;
            vtmem_migrate_del_blocker(&s->migration_blocker);
            return;
        }
        s->pool_bh = qemu_bh_new_guarded(virtio_tmem_pool_bh, s,
                                          &DEVICE(s)->mem_reentrancy_guard);
        s->store_limit = vtmem_pool_client_get_limit(s->pool_client);
        vtmem_store_set_limit(s->store, s->store_limit);
    }

    s->bounce = g_malloc(VIRTIO_TMEM_PAGE_SIZE);
    s->batch = g_new(uint64_t, VIRTIO_TMEM_MAX_BATCH);

    virtio_init(vdev, VIRTIO_ID_TMEM, sizeof(struct virtio_tmem_config));
    s->vq = virtio_add_queue(vdev, s->queue_size, virtio_tmem_handle_req);
}

static void virtio_tmem_device_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOTmem *s = VIRTIO_TMEM(dev);

    virtio_delete_queue(s->vq);
    virtio_cleanup(vdev);
    if (s->pool_bh) {
        qemu_bh_delete(s->pool_bh);
        s->pool_bh = NULL;
    }
    /* Sends BYE: the VM's budget returns to the pool at once. */
    vtmem_pool_client_free(s->pool_client);
    s->pool_client = NULL;
    vtmem_store_free(s->store);
    s->store = NULL;
    g_free(s->bounce);
    s->bounce = NULL;
    g_free(s->batch);
    s->batch = NULL;
    vtmem_migrate_del_blocker(&s->migration_blocker);
}

static void virtio_tmem_instance_init(Object *obj)
{
    VirtIOTmem *s = VIRTIO_TMEM(obj);

    s->limit = VIRTIO_TMEM_DEFAULT_LIMIT;
    s->store_limit = s->limit;
}

/*
 * Live migration is not implemented yet (the store's pages would have to be
 * sent): the migration blocker added at realize refuses migrate and savevm
 * with a clear error. The VMState is the standard virtio one for when the
 * pages are sent along.
 */
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
    size_t i;

    device_class_set_props(dc, virtio_tmem_properties);
    dc->vmsd = &vmstate_virtio_tmem;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    vdc->realize = virtio_tmem_device_realize;
    vdc->unrealize = virtio_tmem_device_unrealize;
    vdc->get_config = virtio_tmem_get_config;
    vdc->get_features = virtio_tmem_get_features;
    vdc->reset = virtio_tmem_reset;
    virtio_tmem_parent_start_ioeventfd = vdc->start_ioeventfd;
    virtio_tmem_parent_stop_ioeventfd = vdc->stop_ioeventfd;
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
    for (i = 0; i < ARRAY_SIZE(virtio_tmem_stats); i++) {
        object_class_property_add(klass, virtio_tmem_stats[i].name, "uint64",
                                  virtio_tmem_get_stat, NULL, NULL,
                                  (void *)virtio_tmem_stats[i].offset);
    }
}

static const TypeInfo virtio_tmem_info = {
    .name = TYPE_VIRTIO_TMEM,
    .parent = TYPE_VIRTIO_DEVICE,
    .instance_size = sizeof(VirtIOTmem),
    .instance_init = virtio_tmem_instance_init,
    .class_init = virtio_tmem_class_init,
};

static void virtio_tmem_register_types(void)
{
    type_register_static(&virtio_tmem_info);
}

type_init(virtio_tmem_register_types)
