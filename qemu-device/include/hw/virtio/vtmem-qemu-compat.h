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
#include "migration/blocker.h"

/* 10.0: include/sysemu/ became include/system/ */
#if VTMEM_QEMU_AT_LEAST(10, 0)
#include "system/iothread.h"
#include "system/system.h"
#else
#include "sysemu/iothread.h"
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
 * Migration blockers, in the >= 8.2 form: on failure, and on removal, the
 * reason is freed and *reasonp set to NULL; removing NULL does nothing.
 * 7.2 took the Error itself and left freeing it to the caller.
 */
static inline int vtmem_migrate_add_blocker(Error **reasonp, Error **errp)
{
#if VTMEM_QEMU_AT_LEAST(8, 2)
    return migrate_add_blocker(reasonp, errp);
#else
    if (migrate_add_blocker(*reasonp, errp) < 0) {
        error_free(*reasonp);
        *reasonp = NULL;
        return -1;
    }
    return 0;
#endif
}

static inline void vtmem_migrate_del_blocker(Error **reasonp)
{
#if VTMEM_QEMU_AT_LEAST(8, 2)
    migrate_del_blocker(reasonp);
#else
    if (*reasonp) {
        migrate_del_blocker(*reasonp);
        error_free(*reasonp);
        *reasonp = NULL;
    }
#endif
}

#endif /* VTMEM_COMPAT_QTEST */

#endif
