/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio-tmem: the QEMU API differences between the series we build
 * against (Debian 12's QEMU 7.2, Debian 13's QEMU 10.0), in one place.
 * Include it right after "qemu/osdep.h" (which brings config-host.h and
 * with it QEMU_VERSION_*). The qtest defines VTMEM_COMPAT_QTEST first: it
 * gets the QObject headers instead of the device's.
 *
 * Gated on the release version: Debian does not backport API changes into
 * a stable series. A series nobody has reviewed is refused; the gates for
 * 10.1 and 10.2 below are known changes, not a review of those series.
 */

#ifndef HW_VIRTIO_VTMEM_QEMU_COMPAT_H
#define HW_VIRTIO_VTMEM_QEMU_COMPAT_H

#ifndef QEMU_VERSION_MAJOR
#error "vtmem-qemu-compat.h: include qemu/osdep.h first"
#endif

/* x.y.9z is a release candidate of x.(y+1) */
#define VTMEM_QEMU_MINOR_EFF \
    (QEMU_VERSION_MINOR + (QEMU_VERSION_MICRO >= 90))
#define VTMEM_QEMU_AT_LEAST(major, minor) \
    (QEMU_VERSION_MAJOR > (major) || \
     (QEMU_VERSION_MAJOR == (major) && VTMEM_QEMU_MINOR_EFF >= (minor)))

#if !(QEMU_VERSION_MAJOR == 7 && VTMEM_QEMU_MINOR_EFF == 2) && \
    !(QEMU_VERSION_MAJOR == 10 && VTMEM_QEMU_MINOR_EFF == 0)
#error "virtio-tmem: this QEMU series is not reviewed (7.2 and 10.0 are)"
#endif

#ifdef VTMEM_COMPAT_QTEST

/* 10.0: include/qapi/qmp/ moved to include/qobject/ */
#if VTMEM_QEMU_AT_LEAST(10, 0)
#include "qobject/qbool.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#else
#include "qapi/qmp/qbool.h"
#include "qapi/qmp/qdict.h"
#include "qapi/qmp/qlist.h"
#include "qapi/qmp/qnum.h"
#include "qapi/qmp/qstring.h"
#endif

#else /* the device */

#include "qapi/error.h"
#include "qemu/error-report.h"
#include "migration/register.h"
#include "migration/qemu-file-types.h"

/* 10.0: include/sysemu/ became include/system/ */
#if VTMEM_QEMU_AT_LEAST(10, 0)
#include "system/iothread.h"
#include "system/kvm.h"
#include "system/runstate.h"
#include "system/system.h"
#else
#include "sysemu/iothread.h"
#include "sysemu/kvm.h"
#include "sysemu/runstate.h"
#include "sysemu/sysemu.h"
#endif

/*
 * 10.0: property arrays are const and have no terminator;
 * device_class_set_props() counts them (and needs them const).
 * VTMEM_PROPERTIES_END ends the list, after the last entry's comma.
 */
#if VTMEM_QEMU_AT_LEAST(10, 0)
#define VTMEM_PROPERTY_CONST const
#define VTMEM_PROPERTIES_END
#else
#define VTMEM_PROPERTY_CONST
#define VTMEM_PROPERTIES_END DEFINE_PROP_END_OF_LIST()
#endif

/* 10.1: TypeInfo::class_init takes const void *data */
#if VTMEM_QEMU_AT_LEAST(10, 1)
#define VTMEM_CLASS_DATA const void
#else
#define VTMEM_CLASS_DATA void
#endif

/* 9.0: no AioContext lock; handlers in an IOThread run without one. */
#if VTMEM_QEMU_AT_LEAST(9, 0)
#define vtmem_aio_lock(ctx) ((void)(ctx))
#define vtmem_aio_unlock(ctx) ((void)(ctx))
#else
#define vtmem_aio_lock(ctx) aio_context_acquire(ctx)
#define vtmem_aio_unlock(ctx) aio_context_release(ctx)
#endif

/*
 * Notify the driver about a used buffer: through the irqfd when the
 * request ran in the IOThread; 10.2 removed virtio_notify_irqfd() and
 * virtio_notify() does that itself.
 */
#if VTMEM_QEMU_AT_LEAST(10, 2)
#define vtmem_notify_vq(vdev, vq, in_iothread) virtio_notify(vdev, vq)
#else
#define vtmem_notify_vq(vdev, vq, in_iothread) \
    ((in_iothread) ? virtio_notify_irqfd(vdev, vq) : virtio_notify(vdev, vq))
#endif

/*
 * Migration capabilities the device refuses (background snapshots,
 * COLO). 8.1 moved the capability getters to migration/options.h and
 * renamed migrate_colo_enabled() to migrate_colo().
 */
#if VTMEM_QEMU_AT_LEAST(8, 1)
#include "qapi/qapi-types-migration.h"  /* options.h uses its types */
#include "migration/options.h"
#define vtmem_migrate_background_snapshot() migrate_background_snapshot()
#define vtmem_migrate_colo() migrate_colo()
#else
#include "migration/migration.h"
#define vtmem_migrate_background_snapshot() migrate_background_snapshot()
#define vtmem_migrate_colo() migrate_colo_enabled()
#endif

/*
 * SaveVMHandlers whose signatures differ. The device writes save_setup
 * and load_setup with an Error **errp, and the pending size as one
 * function of opaque returning bytes that must go before the destination
 * starts; these macros define the callbacks QEMU calls (name) around the
 * device's functions (impl), and VTMEM_SAVEVM_* fill the handler table.
 * 9.x added errp to save_setup and load_setup (7.2: the adapter reports
 * the error). 8.0 split save_live_pending into state_pending_estimate
 * and state_pending_exact (one function serves both: ours is exact and
 * cheap). 10.1 renamed save_live_complete_precopy to save_complete.
 */
#if VTMEM_QEMU_AT_LEAST(9, 1)
#define VTMEM_SAVE_SETUP_FN(name, impl) \
    static int name(QEMUFile *f, void *opaque, Error **errp) \
    { \
        return impl(f, opaque, errp); \
    }
#define VTMEM_LOAD_SETUP_FN(name, impl) \
    static int name(QEMUFile *f, void *opaque, Error **errp) \
    { \
        return impl(f, opaque, errp); \
    }
#else
#define VTMEM_SAVE_SETUP_FN(name, impl) \
    static int name(QEMUFile *f, void *opaque) \
    { \
        Error *err = NULL; \
        int ret = impl(f, opaque, &err); \
        if (err) { \
            error_report_err(err); \
        } \
        return ret; \
    }
#define VTMEM_LOAD_SETUP_FN VTMEM_SAVE_SETUP_FN
#endif

#if VTMEM_QEMU_AT_LEAST(8, 0)
#define VTMEM_PENDING_FN(name, impl) \
    static void name(void *opaque, uint64_t *must_precopy, \
                     uint64_t *can_postcopy) \
    { \
        *must_precopy += impl(opaque); \
    }
#define VTMEM_SAVEVM_PENDING(name) \
    .state_pending_estimate = name, \
    .state_pending_exact = name
#else
#define VTMEM_PENDING_FN(name, impl) \
    static void name(QEMUFile *f, void *opaque, uint64_t threshold_size, \
                     uint64_t *res_precopy_only, uint64_t *res_compatible, \
                     uint64_t *res_postcopy_only) \
    { \
        *res_precopy_only += impl(opaque); \
    }
#define VTMEM_SAVEVM_PENDING(name) .save_live_pending = name
#endif

#if VTMEM_QEMU_AT_LEAST(10, 1)
#define VTMEM_SAVEVM_COMPLETE(name) .save_complete = name
#else
#define VTMEM_SAVEVM_COMPLETE(name) .save_live_complete_precopy = name
#endif

#endif /* VTMEM_COMPAT_QTEST */

#endif
