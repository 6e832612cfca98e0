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
OBJECT_DECLARE_TYPE(VirtIOTmem, VirtIOTmemClass, VIRTIO_TMEM)

/* Defaults of the "slots", "limit" and "queue-size" properties. */
#define VIRTIO_TMEM_DEFAULT_SLOTS       (1ULL << 22)
#define VIRTIO_TMEM_MAX_SLOTS           (1ULL << 32)
#define VIRTIO_TMEM_DEFAULT_LIMIT       (256 * MiB)
#define VIRTIO_TMEM_DEFAULT_QUEUE_SIZE  256

typedef struct VtmemStore VtmemStore;
typedef struct VtmemPoolClient VtmemPoolClient;
typedef struct VtmemStreamSaver VtmemStreamSaver;
typedef struct VtmemStreamLoader VtmemStreamLoader;

struct VirtIOTmem {
    VirtIODevice parent_obj;

    VirtQueue *vq;
    VtmemStore *store;
    /* Bounce page: guest memory is copied in/out, never kept. */
    uint8_t *bounce;
    /* Slot list of one INVALIDATE_BATCH request. */
    uint64_t *batch;
    /* The request queue is served in iothread's AioContext */
    bool dataplane_started;
    /*
     * The rest of a handler call's work when it ran out of budget: in the
     * main loop, or in the IOThread while dataplane_started.
     */
    QEMUBH *req_bh;
    QEMUBH *req_bh_iothread;
    /*
     * A range of slots being dropped in steps (inval_next < inval_end):
     * for the request inval_elem (of inval_in_len device-writable bytes;
     * status so far in inval_status), or for a device reset (no element).
     * Owned by whoever serves the queue; requests wait behind it.
     */
    VirtQueueElement *inval_elem;
    size_t inval_in_len;
    uint32_t inval_status;
    uint64_t inval_next;
    uint64_t inval_end;
    uint64_t inval_dropped;
    /* Q_RESET seen: the next Q_ENABLE may configure the queue again */
    bool queue_was_reset;
    /* An invalidation dropped many pages (any thread; read in main loop) */
    bool large_inval;
    /* Fragmentation when compacting before a PUT last freed nothing */
    uint64_t fruitless_frag;
    /* Main loop, after requests: usage to vtmemd, compaction policy */
    QEMUBH *after_req_bh;
    /* Lease from vtmemd (NULL: standalone, no "pool" property) */
    VtmemPoolClient *pool_client;
    /*
     * The limit the store enforces (config space "limit"): the pool's
     * lease capped by "limit", or "limit" when standalone.
     */
    uint64_t store_limit;
    /* Compaction pass running in steps from compact_bh (main loop) */
    QEMUBH *compact_bh;
    bool compacting;
    /* Bytes the running pass freed; fragmentation a pass could not cut */
    uint64_t compact_pass_freed;
    uint64_t compact_frag_base;
    /* Longest compaction step and handler call (ns), for the stats */
    int64_t compact_longest_step_ns;
    int64_t longest_call_ns;

    /*
     * Migration of the store (docs/virtio-tmem.md, "Migration"): a live
     * section of its own, registered as mig_id. Source: the stream saver
     * from save_setup to save_cleanup, writing to mig_out; mig_bytes are
     * the bytes of the last outgoing stream so far (stats).
     */
    char *mig_id;
    VtmemStreamSaver *mig_saver;
    QEMUFile *mig_out;
    uint64_t mig_bytes;
    /*
     * Destination: the loader from load_setup to load_cleanup, reading
     * mig_in; mig_loaded once the stream's END was read; mig_nr_slots is
     * the source's slot count (device vmstate); mig_notify: tell the
     * driver about the new config when the VM runs.
     */
    VtmemStreamLoader *mig_loader;
    QEMUFile *mig_in;
    bool mig_loaded;
    bool mig_notify;
    uint64_t mig_nr_slots;
    VMChangeStateEntry *vm_state;

    /* Properties */
    uint64_t nr_slots;
    /* The device's own limit (its cap when it takes leases from vtmemd) */
    uint64_t limit;
    /* vtmemd's unix socket; NULL or empty: standalone */
    char *pool;
    uint16_t queue_size;
    IOThread *iothread;
};

struct VirtIOTmemClass {
    VirtioDeviceClass parent_class;

    /* The virtio bus's ioeventfd handlers (used without an IOThread) */
    int (*parent_start_ioeventfd)(VirtIODevice *vdev);
    void (*parent_stop_ioeventfd)(VirtIODevice *vdev);
};

/*
 * Make the "limit" property and the statistics of the device vdev
 * readable and settable on its proxy obj too.
 */
void virtio_tmem_add_aliases(Object *obj, Object *vdev);

#endif
