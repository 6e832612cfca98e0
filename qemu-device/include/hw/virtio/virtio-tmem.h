/*
 * virtio-tmem: transcendent memory (frontswap semantics) over virtio
 *
 * Copyright (c) 2026 The vtmem authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or
 * (at your option) any later version.  See the COPYING file in the
 * top-level directory.
 */

#ifndef QEMU_VIRTIO_TMEM_H
#define QEMU_VIRTIO_TMEM_H

#include "hw/virtio/virtio.h"
#include "qom/object.h"
#include "hw/virtio/vtmem-qemu-compat.h"

#define TYPE_VIRTIO_TMEM "virtio-tmem-device"
OBJECT_DECLARE_SIMPLE_TYPE(VirtIOTmem, VIRTIO_TMEM)

/* Defaults of the "slots", "limit" and "queue-size" properties. */
#define VIRTIO_TMEM_DEFAULT_SLOTS       (1ULL << 22)
#define VIRTIO_TMEM_MAX_SLOTS           (1ULL << 32)
#define VIRTIO_TMEM_DEFAULT_LIMIT       (256 * MiB)
#define VIRTIO_TMEM_DEFAULT_QUEUE_SIZE  256

typedef struct VtmemStore VtmemStore;
typedef struct VtmemPoolClient VtmemPoolClient;

struct VirtIOTmem {
    VirtIODevice parent_obj;

    VirtQueue *vq;
    VtmemStore *store;
    /* Bounce page: guest memory is copied in/out, never kept. */
    uint8_t *bounce;
    /* Slot list of one INVALIDATE_BATCH request. */
    uint64_t *batch;
    Error *migration_blocker;
    /* The request queue is served in iothread's AioContext */
    bool dataplane_started;
    /* Lease from vtmemd (NULL: standalone, no "pool" property) */
    VtmemPoolClient *pool_client;
    /* Reports usage to vtmemd from the main loop after requests */
    QEMUBH *pool_bh;
    /*
     * The limit the store enforces (config space "limit"): the pool's
     * lease capped by "limit", or "limit" when standalone.
     */
    uint64_t store_limit;

    /* Properties */
    uint64_t nr_slots;
    /* The device's own limit (its cap when it takes leases from vtmemd) */
    uint64_t limit;
    /* vtmemd's unix socket; NULL or empty: standalone */
    char *pool;
    uint16_t queue_size;
    IOThread *iothread;
};

/*
 * Make the "limit" property and the statistics of the device vdev
 * readable and settable on its proxy obj too.
 */
void virtio_tmem_add_aliases(Object *obj, Object *vdev);

#endif
