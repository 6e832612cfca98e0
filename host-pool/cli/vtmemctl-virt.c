/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl and libvirt: connection, domain lookup, and the device's QOM
 * properties through QMP (virDomainQemuMonitorCommand). Every QMP reply
 * goes through vtmemctl-reply.c: the guest may own the QEMU that wrote it.
 */
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include "vtmem-pool-util.h"
#include "vtmemctl-reply.h"
#include "vtmemctl.h"

/* apply --wait polls the domain's state this often */
#define VTMEMCTL_WAIT_POLL_US (200 * 1000)

static void silent_error(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

char *vtmemctl_virt_error(void)
{
    const char *m = virGetLastErrorMessage();

    return vtmemctl_safe_text(m ? m : "unknown libvirt error");
}

void vtmemctl_virt_init(void)
{
    virSetErrorFunc(NULL, silent_error);
}

char *vtmemctl_connect_error(const Vtmemctl *ctl)
{
    g_autofree char *why = vtmemctl_virt_error();

    return g_strdup_printf("cannot connect to libvirt%s%s: %s",
                           ctl->uri ? " at " : "", ctl->uri ? ctl->uri : "",
                           why);
}

static int open_libvirt(const Vtmemctl *ctl, virConnectPtr *conn)
{
    g_autofree char *why = NULL;

    *conn = virConnectOpen(ctl->uri);
    if (*conn) {
        return 0;
    }
    why = vtmemctl_connect_error(ctl);
    return vtmemctl_fail(VTMEMCTL_EXIT_LIBVIRT, "%s", why);
}

/* The domain, or NULL with the exit code in *rc (nothing printed). */
static virDomainPtr lookup_domain(virConnectPtr conn, const char *name,
                                  int *rc)
{
    virDomainPtr dom = virDomainLookupByName(conn, name);
    virErrorPtr e;
    uint64_t id;

    if (!dom && vtmem_pool_uuid_valid(name)) {
        dom = virDomainLookupByUUIDString(conn, name);
    }
    if (!dom && vtmem_pool_parse_u64(name, &id) && id <= INT32_MAX) {
        dom = virDomainLookupByID(conn, (int)id);
    }
    if (!dom) {
        e = virGetLastError();
        *rc = e && e->code != VIR_ERR_NO_DOMAIN ? VTMEMCTL_EXIT_LIBVIRT
                                                : VTMEMCTL_EXIT_NOT_FOUND;
    }
    return dom;
}

static int lookup_failed(int rc, const char *name)
{
    g_autofree char *why = NULL;

    if (rc == VTMEMCTL_EXIT_NOT_FOUND) {
        return vtmemctl_fail(rc, "no domain '%s'", name);
    }
    why = vtmemctl_virt_error();
    return vtmemctl_fail(rc, "looking up domain '%s': %s", name, why);
}

int vtmemctl_with_domain(const Vtmemctl *ctl, const char *name,
                         unsigned wait_s, VtmemctlDomainFn fn, void *opaque)
{
    g_autoptr(virConnect) conn = NULL;
    g_autoptr(virDomain) dom = NULL;
    gint64 deadline = g_get_monotonic_time() +
                     (gint64)wait_s * G_USEC_PER_SEC;
    int rc = open_libvirt(ctl, &conn);

    if (rc) {
        return rc;
    }
    for (;;) {
        dom = lookup_domain(conn, name, &rc);
        if ((dom && virDomainIsActive(dom) == 1) ||
            g_get_monotonic_time() >= deadline) {
            break;
        }
        g_clear_pointer(&dom, virDomainFree);
        g_usleep(VTMEMCTL_WAIT_POLL_US);
    }
    if (!dom) {
        return lookup_failed(rc, name);
    }
    return fn(ctl, dom, name, opaque);
}

int vtmemctl_need_running(virDomainPtr dom, const char *name)
{
    if (virDomainIsActive(dom) != 1) {
        return vtmemctl_fail(VTMEMCTL_EXIT_NOT_FOUND,
                             "domain '%s' is not running", name);
    }
    return 0;
}

/* ---- QMP ---- */

/*
 * Run a QMP command built in b (taken); the "return" member or NULL with
 * *err (safe text).
 */
static JsonNode *qmp(virDomainPtr dom, JsonBuilder *b, char **err)
{
    g_autoptr(JsonBuilder) builder = b;
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *cmd = NULL;
    char *result = NULL;
    JsonNode *ret;

    json_builder_end_object(builder);   /* arguments */
    json_builder_end_object(builder);
    root = json_builder_get_root(builder);
    json_generator_set_root(gen, root);
    cmd = json_generator_to_data(gen, NULL);
    if (virDomainQemuMonitorCommand(dom, cmd, &result, 0) < 0) {
        *err = vtmemctl_virt_error();
        return NULL;
    }
    ret = vtmemctl_qmp_reply(result, err);
    free(result);
    return ret;
}

/* {"execute": execute, "arguments": {"path": path, ...: qmp() ends it. */
static JsonBuilder *qmp_begin(const char *execute, const char *path)
{
    JsonBuilder *b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "execute");
    json_builder_add_string_value(b, execute);
    json_builder_set_member_name(b, "arguments");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "path");
    json_builder_add_string_value(b, path);
    return b;
}

static JsonNode *qom_get(virDomainPtr dom, const char *path,
                         const char *prop, char **err)
{
    JsonBuilder *b = qmp_begin("qom-get", path);

    json_builder_set_member_name(b, "property");
    json_builder_add_string_value(b, prop);
    return qmp(dom, b, err);
}

bool vtmemctl_qom_get_u64(virDomainPtr dom, const char *path,
                          const char *prop, uint64_t *out)
{
    g_autofree char *err = NULL;
    g_autoptr(JsonNode) n = qom_get(dom, path, prop, &err);

    return vtmemctl_json_u64(n, out);
}

bool vtmemctl_qom_get_bool(virDomainPtr dom, const char *path,
                           const char *prop, bool *out)
{
    g_autofree char *err = NULL;
    g_autoptr(JsonNode) n = qom_get(dom, path, prop, &err);

    return vtmemctl_json_bool(n, out);
}

int vtmemctl_qom_set(virDomainPtr dom, const char *name, const char *path,
                     const char *prop, JsonNode *value)
{
    JsonBuilder *b = qmp_begin("qom-set", path);
    g_autoptr(JsonNode) r = NULL;
    g_autofree char *err = NULL;
    g_autofree char *shown = NULL;

    json_builder_set_member_name(b, "property");
    json_builder_add_string_value(b, prop);
    json_builder_set_member_name(b, "value");
    json_builder_add_value(b, value);
    r = qmp(dom, b, &err);
    if (!r) {
        shown = vtmemctl_safe_text(path);
        return vtmemctl_fail(VTMEMCTL_EXIT_LIBVIRT,
                             "domain '%s': qom-set %s %s: %s",
                             name, shown, prop, err);
    }
    return 0;
}

/*
 * The device's child name under parent (qom-list), or NULL: *err is set
 * when the list could not be read.
 */
static char *find_child(virDomainPtr dom, const char *parent, char **err)
{
    JsonBuilder *b = qmp_begin("qom-list", parent);
    g_autoptr(JsonNode) list = qmp(dom, b, err);

    return list ? vtmemctl_qom_list_find(list, VTMEM_QOM_TYPE) : NULL;
}

/*
 * A child<virtio-tmem-pci> under /machine/peripheral (devices with an id,
 * conventionally vtmem0) or peripheral-anon. The properties may live on
 * the proxy or on its virtio-backend child: the path returned is the one
 * that has "limit" (the proxy if neither has).
 */
char *vtmemctl_find_device(virDomainPtr dom, char **err)
{
    static const char *const parents[] = { "/machine/peripheral",
                                           "/machine/peripheral-anon" };
    static const char *const suffixes[] = { "", "/virtio-backend" };
    g_autofree char *child = NULL;
    uint64_t limit;
    size_t i;

    *err = NULL;
    for (i = 0; i < G_N_ELEMENTS(parents) && !child; i++) {
        child = find_child(dom, parents[i], err);
        if (*err) {
            return NULL;
        }
    }
    if (!child) {
        return NULL;
    }
    for (size_t j = 0; j < G_N_ELEMENTS(suffixes); j++) {
        g_autofree char *path = g_strdup_printf("%s/%s%s", parents[i - 1],
                                                child, suffixes[j]);

        if (vtmemctl_qom_get_u64(dom, path, "limit", &limit)) {
            return g_steal_pointer(&path);
        }
    }
    return g_strdup_printf("%s/%s", parents[i - 1], child);
}

int vtmemctl_get_device(virDomainPtr dom, const char *name, char **path)
{
    g_autofree char *err = NULL;

    *path = vtmemctl_find_device(dom, &err);
    if (*path) {
        return 0;
    }
    if (err) {
        return vtmemctl_fail(VTMEMCTL_EXIT_LIBVIRT, "domain '%s': QMP: %s",
                             name, err);
    }
    return vtmemctl_fail(VTMEMCTL_EXIT_NOT_FOUND,
                         "domain '%s' has no %s device", name, VTMEM_QOM_TYPE);
}
