/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libvtmem-pool-client: what a virtio-tmem device embeds to take its
 * budget from the pool daemon vtmemd (docs/vtmemd.md).
 *
 * GLib only (no GIO: QEMU built --without-default-features has none), POSIX
 * sockets. Single-threaded, non-blocking, driven by a GLib main context (QEMU's
 * main loop dispatches the default context). Call every function from the
 * thread that dispatches that context. Never blocks, never needs threads,
 * reconnects by itself with backoff.
 *
 * The device's limit: the client computes the limit the device must
 * enforce (its store's limit) and hands it over through ops->set_limit or
 * the return values below:
 *  - before the daemon was ever reached: the device's own limit ("cap",
 *    the QOM property `limit`): standalone operation;
 *  - once registered: min(cap, the daemon's lease) -- 0 until the first
 *    lease arrives;
 *  - while the daemon is away after that: the last lease is kept (pages
 *    are never dropped because the daemon went away).
 */
#ifndef VTMEM_POOL_CLIENT_H
#define VTMEM_POOL_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "vtmem-pool-proto.h"

G_BEGIN_DECLS

typedef struct VtmemPoolClient VtmemPoolClient;

typedef struct VtmemPoolClientOps {
    /*
     * Required. The limit the device must enforce is now `limit` bytes:
     * apply it at once (new puts that would exceed it are refused,
     * nothing stored is dropped), then return the bytes the device holds
     * now, read AFTER applying the limit (vtmem_store_set_limit, then
     * vtmem_store_memory_held). The daemon counts the memory above a
     * lowered limit as still in use until the device reports it freed.
     */
    uint64_t (*set_limit)(void *opaque, uint64_t limit);
    /*
     * Optional: bytes held now (used when (re-)registering); if NULL the
     * last value passed to vtmem_pool_client_update() is used.
     */
    uint64_t (*get_held)(void *opaque);
    /* Optional: the connection to vtmemd went up (registered) or down. */
    void (*connection_changed)(void *opaque, bool connected);
} VtmemPoolClientOps;

/* Error domain of vtmem_pool_client_new() (code 0: bad argument). */
#define VTMEM_POOL_CLIENT_ERROR (vtmem_pool_client_error_quark())
GQuark vtmem_pool_client_error_quark(void);

/* Pass as `wanted` to let the client compute the demand from usage. */
#define VTMEM_POOL_WANT_AUTO 0

/*
 * Create the client and try to connect at once (a unix socket connect
 * completes or fails immediately). name: the VM's name (printable ASCII,
 * at most VTMEM_POOL_MAX_NAME bytes; other bytes are replaced by '?');
 * uuid: the VM's UUID (qemu_uuid); cap: the device's own limit in bytes.
 * context: the GMainContext to run in, NULL for the default one.
 * Returns NULL (with *error) only on bad arguments; an unreachable daemon
 * is not an error (the client keeps retrying).
 * After this returns, the device applies vtmem_pool_client_get_limit().
 * ops->set_limit is never called from inside this function.
 */
VtmemPoolClient *vtmem_pool_client_new(const char *socket_path,
                                       const char *name,
                                       const char *uuid, uint64_t cap,
                                       const VtmemPoolClientOps *ops,
                                       void *opaque,
                                       GMainContext *context, GError **error);

/*
 * Report usage: held = bytes the device holds now (what its limit caps);
 * wanted = bytes it would like to be allowed, or VTMEM_POOL_WANT_AUTO
 * (then: held rounded up to a granule plus one granule of headroom).
 * Cheap: call it after every put/invalidate that changes held, or from
 * a timer; it sends a message only when the demand crosses a granule
 * boundary (asks for more when usage comes within a granule of the
 * lease, gives back when the lease exceeds the demand by two granules)
 * or held moved by a granule since the last report.
 */
void vtmem_pool_client_update(VtmemPoolClient *client, uint64_t held,
                              uint64_t wanted);

/* The device's counters, for vtmem_pool_client_report(). */
typedef struct VtmemPoolCounters {
    uint64_t refusals;      /* puts refused for the limit, ever */
    uint64_t stored_pages;  /* pages stored now */
} VtmemPoolCounters;

/*
 * vtmem_pool_client_update() with the device's counters: from the first
 * call on, every UPDATE carries them (the daemon's demand signal and
 * metrics). A grown refusal count is also sent on its own, at most once
 * per VTMEM_POOL_REFUSAL_REPORT_MS after the last UPDATE (later from a
 * timer in the client's context if one was sent more recently).
 * counters NULL: as vtmem_pool_client_update().
 */
void vtmem_pool_client_report(VtmemPoolClient *client, uint64_t held,
                              uint64_t wanted,
                              const VtmemPoolCounters *counters);


/*
 * The operator changed the device's own limit (QOM `limit` set). Returns
 * the limit the device must enforce now (as set_limit would; set_limit is
 * not called).
 */
uint64_t vtmem_pool_client_set_cap(VtmemPoolClient *client, uint64_t cap);

/* The limit the device must enforce now. */
uint64_t vtmem_pool_client_get_limit(VtmemPoolClient *client);

/* Registered with the daemon right now. */
bool vtmem_pool_client_is_connected(VtmemPoolClient *client);

/*
 * Tell the daemon the device is gone (it dropped its pages: device
 * unrealize / VM shutdown) and free everything. NULL is fine.
 */
void vtmem_pool_client_free(VtmemPoolClient *client);

G_END_DECLS

#endif /* VTMEM_POOL_CLIENT_H */
