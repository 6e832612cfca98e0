/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl's private interfaces between its files:
 *   vtmemctl.c         options, the command table, the commands
 *   vtmemctl-status.c  status: collection, and text/JSON from one table
 *   vtmemctl-top.c     top: vtmemd's view, redrawn in the terminal
 *   vtmemctl-virt.c    libvirt: domains, QMP qom-get/qom-set, the device
 *   vtmemctl-meta.c    the per-VM settings in the domain metadata
 *   vtmemctl-daemon.c  the request to vtmemd
 *   vtmemctl-reply.c   untrusted replies into checked values (pure)
 */
#ifndef VTMEMCTL_H
#define VTMEMCTL_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libvirt/libvirt.h>

#include "vtmem-pool-proto.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

/* The global options. */
typedef struct Vtmemctl {
    char *uri;          /* libvirt URI; NULL: libvirt's default */
    char *socket_path;  /* vtmemd's socket */
} Vtmemctl;

/* Print "vtmemctl: message" (and a hint for usage errors); returns code. */
int vtmemctl_fail(int code, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* ---- vtmemd (vtmemctl-daemon.c) ---- */

/*
 * The one blocking request to vtmemd: send cmd, collect the reply's lines
 * up to OK or END into lines. Returns 0, VTMEMCTL_EXIT_DAEMON
 * (unreachable, bad reply) or VTMEMCTL_EXIT_REFUSED (ERROR) with *err.
 */
int vtmemctl_daemon_request(const Vtmemctl *ctl, const char *cmd,
                            GPtrArray *lines, char **err);
/* A command answered by OK alone; an error is printed and returned. */
int vtmemctl_daemon_command(const Vtmemctl *ctl, const char *cmd);

/* ---- libvirt (vtmemctl-virt.c) ---- */

/* libvirt reports errors to vtmemctl only, not on stderr by itself. */
void vtmemctl_virt_init(void);
/* libvirt's last error as text safe for the terminal. */
char *vtmemctl_virt_error(void);
/* "cannot connect to libvirt at URI: why", after virConnectOpen failed. */
char *vtmemctl_connect_error(const Vtmemctl *ctl);

typedef int (*VtmemctlDomainFn)(const Vtmemctl *ctl, virDomainPtr dom,
                                const char *name, void *opaque);
/*
 * Open libvirt, look the domain up (name, UUID or id), run fn, clean up.
 * wait_s > 0: wait up to that many seconds for the domain to run.
 */
int vtmemctl_with_domain(const Vtmemctl *ctl, const char *name,
                         unsigned wait_s, VtmemctlDomainFn fn, void *opaque);
/* fn's check that the domain runs (exit 2 if not). */
int vtmemctl_need_running(virDomainPtr dom, const char *name);

/* The device's QOM path (NULL: none; *err set on a QMP failure). */
char *vtmemctl_find_device(virDomainPtr dom, char **err);
/* The same with errors printed: 0, or the exit code. */
int vtmemctl_get_device(virDomainPtr dom, const char *name, char **path);
bool vtmemctl_qom_get_u64(virDomainPtr dom, const char *path,
                          const char *prop, uint64_t *out);
bool vtmemctl_qom_get_bool(virDomainPtr dom, const char *path,
                           const char *prop, bool *out);
/* qom-set path.prop = value (taken); errors printed: 0 or exit code. */
int vtmemctl_qom_set(virDomainPtr dom, const char *name, const char *path,
                     const char *prop, JsonNode *value);

/* ---- metadata (vtmemctl-meta.c) ---- */

typedef struct VtmemctlMeta {
    bool has_limit, has_weight;
    uint64_t limit, weight;
} VtmemctlMeta;

/* The settings in the domain's metadata (flags: VIR_DOMAIN_AFFECT_*). */
void vtmemctl_meta_read(virDomainPtr dom, unsigned flags, VtmemctlMeta *m);
/*
 * Replace the settings present in set, keep the others; live (if running)
 * and config (if persistent). Errors printed: 0 or the exit code.
 */
int vtmemctl_meta_write(virDomainPtr dom, const char *name,
                        const VtmemctlMeta *set);

/* ---- status (vtmemctl-status.c) ---- */

int vtmemctl_status(const Vtmemctl *ctl, bool json);

/* ---- top (vtmemctl-top.c) ---- */

/*
 * Redraw vtmemd's view every interval_ms until 'q', SIGINT or SIGTERM
 * (iterations > 0: after that many frames). Returns the last refresh's
 * code (0, or VTMEMCTL_EXIT_DAEMON/REFUSED).
 */
int vtmemctl_top(const Vtmemctl *ctl, guint interval_ms, int iterations);

#endif /* VTMEMCTL_H */
