/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl: the operator's CLI for vtmem. Talks to libvirt (per-VM limits
 * through QMP qom-get/qom-set, settings persisted in the domain metadata)
 * and to the pool daemon vtmemd (pool limit, weights). See docs/vtmemd.md
 * and docs/libvirt.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vtmem-pool-proto.h"
#include "vtmem-pool-util.h"

static const char *usage_text =
    "Usage: vtmemctl [--connect URI] [--socket PATH] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  status [--json]            pool budget (from vtmemd) and every running\n"
    "                             domain with a virtio-tmem device\n"
    "  set-limit DOMAIN SIZE      device limit: live (QMP) and persisted\n"
    "  set-weight DOMAIN N        share under contention (1..10000): live\n"
    "                             (vtmemd) and persisted\n"
    "  set-pool-limit SIZE        host-wide budget of vtmemd\n"
    "  apply DOMAIN [--wait SECS] apply the persisted settings to a running\n"
    "                             domain (at VM start)\n"
    "\n"
    "SIZE: bytes, or with a suffix K, M, G, T (powers of 1024): 512M, 2G.\n"
    "DOMAIN: name, UUID or id.\n"
    "Options:\n"
    "  -c, --connect URI   libvirt URI (default: $LIBVIRT_DEFAULT_URI or libvirt's)\n"
    "  -s, --socket PATH   vtmemd socket (default: $" VTMEM_POOL_SOCKET_ENV " or\n"
    "                      " VTMEM_POOL_DEFAULT_SOCKET ")\n"
    "Exit status: 0 ok, 1 usage or bad value, 2 domain or device not found,\n"
    "3 vtmemd unreachable, 4 libvirt or QMP error, 5 vtmemd refused.\n";

static const char *socket_path;
static const char *uri;

static int fail(int code, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static int fail(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("vtmemctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (code == VTMEMCTL_EXIT_USAGE) {
        fputs("Try 'vtmemctl --help'.\n", stderr);
    }
    return code;
}

static bool parse_size_arg(const char *s, uint64_t *out)
{
    return vtmem_pool_parse_size(s, out) && *out <= VTMEM_POOL_MAX_BYTES;
}

static bool parse_weight_arg(const char *s, uint64_t *out)
{
    return vtmem_pool_parse_u64(s, out) && *out >= 1 && *out <= VTMEM_POOL_MAX_WEIGHT;
}

/* ---- vtmemd ---- */

/* Send one command; fill lines with the reply (up to OK/ERR/END).
 * Returns 0, VTMEMCTL_EXIT_DAEMON (unreachable) or _REFUSED (ERR).
 */
static int daemon_cmd(const char *cmd, GPtrArray *lines, char **err_text)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = 5 };
    VtmemLineReader rd = { .len = 0 };
    char line[VTMEM_POOL_MAX_LINE];
    g_autofree char *msg = g_strdup_printf("%s\n", cmd);
    int s;

    if (strlen(socket_path) >= sizeof(sa.sun_path)) {
        *err_text = g_strdup("socket path too long");
        return VTMEMCTL_EXIT_DAEMON;
    }
    g_strlcpy(sa.sun_path, socket_path, sizeof(sa.sun_path));
    s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        *err_text = g_strdup_printf("vtmemd is not running: cannot connect to %s: %s",
                                    socket_path, g_strerror(errno));
        if (s >= 0) {
            close(s);
        }
        return VTMEMCTL_EXIT_DAEMON;
    }
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (send(s, msg, strlen(msg), MSG_NOSIGNAL) != (ssize_t)strlen(msg)) {
        *err_text = g_strdup_printf("writing to vtmemd: %s", g_strerror(errno));
        close(s);
        return VTMEMCTL_EXIT_DAEMON;
    }
    for (;;) {
        const char *why = NULL;
        VtmemLineResult r = vtmem_line_reader_next(&rd, line, &why);
        ssize_t n;

        if (r == VTMEM_LINE_ERROR) {
            *err_text = g_strdup_printf("bad reply from vtmemd: %s", why);
            close(s);
            return VTMEMCTL_EXIT_DAEMON;
        }
        if (r == VTMEM_LINE_OK) {
            if (strcmp(line, VTMEM_POOL_MSG_OK) == 0 || strcmp(line, VTMEM_POOL_MSG_END) == 0) {
                close(s);
                return 0;
            }
            if (g_str_has_prefix(line, VTMEM_POOL_MSG_ERR " ") ||
                g_str_has_prefix(line, VTMEM_POOL_MSG_ERROR " ")) {
                *err_text = g_strdup_printf("vtmemd refused: %s", strchr(line, ' ') + 1);
                close(s);
                return VTMEMCTL_EXIT_REFUSED;
            }
            g_ptr_array_add(lines, g_strdup(line));
            continue;
        }
        n = vtmem_line_reader_fill(&rd, s);
        if (n <= 0) {
            *err_text = g_strdup_printf("vtmemd closed the connection%s%s",
                                        n < 0 ? ": " : "", n < 0 ? g_strerror(errno) : "");
            close(s);
            return VTMEMCTL_EXIT_DAEMON;
        }
    }
}

/* "key=value key=value ... name=rest" into a table (name takes the rest). */
static GHashTable *parse_kv(const char *line)
{
    GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    const char *p = strchr(line, ' ');

    while (p && *p == ' ') {
        const char *k = p + 1;
        const char *eq = strchr(k, '=');
        const char *end;

        if (!eq) {
            break;
        }
        if (strncmp(k, "name=", 5) == 0) {
            end = k + strlen(k);
        } else {
            end = strchr(eq, ' ');
            if (!end) {
                end = eq + strlen(eq);
            }
        }
        g_hash_table_insert(h, g_strndup(k, (gsize)(eq - k)),
                            g_strndup(eq + 1, (gsize)(end - eq - 1)));
        p = *end ? end : NULL;
    }
    return h;
}

static uint64_t kv_u64(GHashTable *h, const char *key)
{
    const char *v = h ? g_hash_table_lookup(h, key) : NULL;
    uint64_t n = 0;

    if (v) {
        vtmem_pool_parse_u64(v, &n);
    }
    return n;
}

/* ---- libvirt ---- */

static void silent_error(void *opaque, virErrorPtr err)
{
    (void)opaque;
    (void)err;
}

static const char *virt_err(void)
{
    const char *m = virGetLastErrorMessage();

    return m ? m : "unknown libvirt error";
}

static int open_libvirt(virConnectPtr *conn)
{
    virSetErrorFunc(NULL, silent_error);
    *conn = virConnectOpen(uri);
    if (!*conn) {
        return fail(VTMEMCTL_EXIT_LIBVIRT, "cannot connect to libvirt%s%s: %s",
                    uri ? " at " : "", uri ? uri : "", virt_err());
    }
    return 0;
}

static int lookup_domain(virConnectPtr conn, const char *name, virDomainPtr *dom)
{
    uint64_t id;

    *dom = virDomainLookupByName(conn, name);
    if (!*dom && vtmem_pool_uuid_valid(name)) {
        *dom = virDomainLookupByUUIDString(conn, name);
    }
    if (!*dom && vtmem_pool_parse_u64(name, &id) && id <= INT32_MAX) {
        *dom = virDomainLookupByID(conn, (int)id);
    }
    if (!*dom) {
        virErrorPtr e = virGetLastError();

        if (e && e->code != VIR_ERR_NO_DOMAIN) {
            return fail(VTMEMCTL_EXIT_LIBVIRT, "looking up domain '%s': %s", name, virt_err());
        }
        return fail(VTMEMCTL_EXIT_NOT_FOUND, "no domain '%s'", name);
    }
    return 0;
}

/* Run a QMP command; returns the "return" member (a new node) or NULL with *err. */
static JsonNode *qmp(virDomainPtr dom, JsonBuilder *b, char **err)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    g_autofree char *cmd = NULL;
    g_autoptr(GError) jerr = NULL;
    char *result = NULL;
    JsonObject *obj;

    json_generator_set_root(gen, root);
    cmd = json_generator_to_data(gen, NULL);
    if (virDomainQemuMonitorCommand(dom, cmd, &result, 0) < 0) {
        *err = g_strdup(virt_err());
        return NULL;
    }
    if (!json_parser_load_from_data(parser, result, -1, &jerr) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        *err = g_strdup_printf("bad QMP reply: %s", result);
        free(result);
        return NULL;
    }
    free(result);
    obj = json_node_get_object(json_parser_get_root(parser));
    if (json_object_has_member(obj, "error")) {
        JsonObject *e = json_object_get_object_member(obj, "error");
        const char *desc = e && json_object_has_member(e, "desc")
                               ? json_object_get_string_member(e, "desc") : "QMP error";

        *err = g_strdup(desc);
        return NULL;
    }
    if (!json_object_has_member(obj, "return")) {
        *err = g_strdup("QMP reply without return");
        return NULL;
    }
    return json_node_copy(json_object_get_member(obj, "return"));
}

static JsonBuilder *qmp_begin(const char *execute)
{
    JsonBuilder *b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "execute");
    json_builder_add_string_value(b, execute);
    json_builder_set_member_name(b, "arguments");
    json_builder_begin_object(b);
    return b;
}

static JsonNode *qmp_end(virDomainPtr dom, JsonBuilder *b, char **err)
{
    JsonNode *r;

    json_builder_end_object(b);
    json_builder_end_object(b);
    r = qmp(dom, b, err);
    g_object_unref(b);
    return r;
}

static JsonNode *qom_get(virDomainPtr dom, const char *path, const char *prop, char **err)
{
    JsonBuilder *b = qmp_begin("qom-get");

    json_builder_set_member_name(b, "path");
    json_builder_add_string_value(b, path);
    json_builder_set_member_name(b, "property");
    json_builder_add_string_value(b, prop);
    return qmp_end(dom, b, err);
}

/*
 * Find the device: a child<virtio-tmem-pci> under /machine/peripheral
 * (devices with an id, conventionally vtmem0) or peripheral-anon. The
 * stats may live on the proxy or on its virtio-backend child: the path
 * returned is the one that has "limit".
 */
static char *find_device(virDomainPtr dom, char **err)
{
    static const char *const parents[] = { "/machine/peripheral", "/machine/peripheral-anon" };
    const char *want = "child<" VTMEM_QOM_TYPE ">";

    for (size_t i = 0; i < G_N_ELEMENTS(parents); i++) {
        JsonBuilder *b = qmp_begin("qom-list");
        g_autoptr(JsonNode) list = NULL;
        JsonArray *arr;

        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, parents[i]);
        list = qmp_end(dom, b, err);
        if (!list) {
            return NULL;
        }
        if (!JSON_NODE_HOLDS_ARRAY(list)) {
            continue;
        }
        arr = json_node_get_array(list);
        for (guint j = 0; j < json_array_get_length(arr); j++) {
            JsonObject *o = json_array_get_object_element(arr, j);
            const char *type = o ? json_object_get_string_member_with_default(o, "type", "") : "";
            const char *name = o ? json_object_get_string_member_with_default(o, "name", "") : "";
            g_autofree char *path = NULL;
            g_autofree char *backend = NULL;
            char *e = NULL;
            JsonNode *probe;

            if (strcmp(type, want) != 0) {
                continue;
            }
            path = g_strdup_printf("%s/%s", parents[i], name);
            probe = qom_get(dom, path, "limit", &e);
            if (probe) {
                json_node_unref(probe);
                return g_steal_pointer(&path);
            }
            g_free(e);
            backend = g_strdup_printf("%s/virtio-backend", path);
            probe = qom_get(dom, backend, "limit", &e);
            if (probe) {
                json_node_unref(probe);
                return g_steal_pointer(&backend);
            }
            g_free(e);
            /* the device without a limit property: report the proxy */
            return g_steal_pointer(&path);
        }
    }
    *err = NULL;
    return NULL;
}

static int get_device(virDomainPtr dom, const char *name, char **path)
{
    char *err = NULL;

    *path = find_device(dom, &err);
    if (!*path) {
        if (err) {
            int r = fail(VTMEMCTL_EXIT_LIBVIRT, "domain '%s': QMP: %s", name, err);

            g_free(err);
            return r;
        }
        return fail(VTMEMCTL_EXIT_NOT_FOUND, "domain '%s' has no %s device", name,
                    VTMEM_QOM_TYPE);
    }
    return 0;
}

static bool qom_get_u64(virDomainPtr dom, const char *path, const char *prop, uint64_t *out)
{
    char *err = NULL;
    g_autoptr(JsonNode) n = qom_get(dom, path, prop, &err);

    g_free(err);
    if (!n || !JSON_NODE_HOLDS_VALUE(n)) {
        return false;
    }
    if (json_node_get_value_type(n) == G_TYPE_INT64) {
        *out = (uint64_t)json_node_get_int(n);
        return true;
    }
    if (json_node_get_value_type(n) == G_TYPE_DOUBLE) {
        /* json-glib reads integers above INT64_MAX (e.g. a limit of
         * UINT64_MAX: none) as doubles
         */
        double d = json_node_get_double(n);

        *out = d >= 18446744073709551615.0 ? UINT64_MAX : d <= 0 ? 0 : (uint64_t)d;
        return true;
    }
    return false;
}

static bool qom_get_bool(virDomainPtr dom, const char *path, const char *prop, bool *out)
{
    char *err = NULL;
    g_autoptr(JsonNode) n = qom_get(dom, path, prop, &err);

    g_free(err);
    if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
        return false;
    }
    *out = json_node_get_boolean(n);
    return true;
}

static int qom_set_limit(virDomainPtr dom, const char *name, const char *path, uint64_t limit)
{
    JsonBuilder *b = qmp_begin("qom-set");
    g_autoptr(JsonNode) r = NULL;
    char *err = NULL;

    json_builder_set_member_name(b, "path");
    json_builder_add_string_value(b, path);
    json_builder_set_member_name(b, "property");
    json_builder_add_string_value(b, "limit");
    json_builder_set_member_name(b, "value");
    json_builder_add_int_value(b, (gint64)limit);
    r = qmp_end(dom, b, &err);
    if (!r) {
        int rc = fail(VTMEMCTL_EXIT_LIBVIRT, "domain '%s': qom-set %s limit: %s", name, path, err);

        g_free(err);
        return rc;
    }
    return 0;
}

/* ---- metadata ---- */

typedef struct Meta {
    bool has_limit, has_weight;
    uint64_t limit, weight;
    const char *elem;
    GString *text;
} Meta;

static void meta_start(GMarkupParseContext *ctx, const char *elem, const char **an,
                       const char **av, gpointer data, GError **error)
{
    Meta *m = data;
    const char *colon = strchr(elem, ':');

    (void)ctx;
    (void)an;
    (void)av;
    (void)error;
    m->elem = colon ? colon + 1 : elem;
    g_string_truncate(m->text, 0);
}

static void meta_text(GMarkupParseContext *ctx, const char *text, gsize len,
                      gpointer data, GError **error)
{
    Meta *m = data;

    (void)ctx;
    (void)error;
    g_string_append_len(m->text, text, (gssize)len);
}

static void meta_end(GMarkupParseContext *ctx, const char *elem, gpointer data, GError **error)
{
    Meta *m = data;
    const char *colon = strchr(elem, ':');
    const char *local = colon ? colon + 1 : elem;
    g_autofree char *t = g_strstrip(g_strdup(m->text->str));

    (void)ctx;
    (void)error;
    if (strcmp(local, "limit") == 0) {
        m->has_limit = vtmem_pool_parse_u64(t, &m->limit);
    } else if (strcmp(local, "weight") == 0) {
        m->has_weight = vtmem_pool_parse_u64(t, &m->weight) && m->weight >= 1 &&
                        m->weight <= VTMEM_POOL_MAX_WEIGHT;
    }
    g_string_truncate(m->text, 0);
}

static void meta_read(virDomainPtr dom, unsigned flags, Meta *m)
{
    static const GMarkupParser p = { meta_start, meta_end, meta_text, NULL, NULL };
    char *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, VTMEM_METADATA_URI, flags);
    GMarkupParseContext *ctx;

    memset(m, 0, sizeof(*m));
    if (!xml) {
        return;
    }
    m->text = g_string_new(NULL);
    ctx = g_markup_parse_context_new(&p, 0, m, NULL);
    if (!g_markup_parse_context_parse(ctx, xml, -1, NULL) ||
        !g_markup_parse_context_end_parse(ctx, NULL)) {
        m->has_limit = m->has_weight = false;
    }
    g_markup_parse_context_free(ctx);
    g_string_free(m->text, TRUE);
    m->text = NULL;
    free(xml);
}

/* Update one setting in the metadata, live (if running) and config (if
 * persistent), keeping the other.
 */
static int meta_write(virDomainPtr dom, const char *name, bool set_limit, uint64_t limit,
                      bool set_weight, uint64_t weight)
{
    int persistent = virDomainIsPersistent(dom);
    int active = virDomainIsActive(dom);
    unsigned flags = 0;
    Meta m;
    GString *xml = g_string_new("<vtmem>");
    int rc;

    meta_read(dom, persistent == 1 ? VIR_DOMAIN_AFFECT_CONFIG : VIR_DOMAIN_AFFECT_LIVE, &m);
    if (set_limit) {
        m.has_limit = true;
        m.limit = limit;
    }
    if (set_weight) {
        m.has_weight = true;
        m.weight = weight;
    }
    if (m.has_limit) {
        g_string_append_printf(xml, "<limit>%" G_GUINT64_FORMAT "</limit>", m.limit);
    }
    if (m.has_weight) {
        g_string_append_printf(xml, "<weight>%" G_GUINT64_FORMAT "</weight>", m.weight);
    }
    g_string_append(xml, "</vtmem>");
    if (active == 1) {
        flags |= VIR_DOMAIN_AFFECT_LIVE;
    }
    if (persistent == 1) {
        flags |= VIR_DOMAIN_AFFECT_CONFIG;
    }
    rc = virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml->str,
                              VTMEM_METADATA_PREFIX, VTMEM_METADATA_URI, flags);
    g_string_free(xml, TRUE);
    if (rc < 0) {
        return fail(VTMEMCTL_EXIT_LIBVIRT, "domain '%s': saving metadata: %s", name, virt_err());
    }
    return 0;
}

/* ---- commands ---- */

static int cmd_set_pool_limit(int argc, char **argv)
{
    uint64_t size;
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *cmd = NULL;
    g_autofree char *err = NULL;
    char buf[32];
    int rc;

    if (argc != 2) {
        return fail(VTMEMCTL_EXIT_USAGE, "usage: set-pool-limit SIZE");
    }
    if (!parse_size_arg(argv[1], &size)) {
        return fail(VTMEMCTL_EXIT_USAGE, "bad size '%s' (examples: 512M, 2G, 1048576)", argv[1]);
    }
    cmd = g_strdup_printf(VTMEM_POOL_MSG_SET_POOL_LIMIT " %" G_GUINT64_FORMAT, size);
    rc = daemon_cmd(cmd, lines, &err);
    if (rc) {
        return fail(rc, "%s", err);
    }
    printf("pool limit set to %s\n", vtmem_pool_format_size(size, buf, sizeof(buf)));
    return 0;
}

/* Send a per-VM setting to vtmemd; unreachable is reported, not fatal. */
static int daemon_vm_setting(const char *what, const char *uuid, const char *value)
{
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *cmd = g_strdup_printf("%s %s %s", what, uuid, value);
    g_autofree char *err = NULL;
    int rc = daemon_cmd(cmd, lines, &err);

    if (rc) {
        fail(rc, "%s", err);
    }
    return rc;
}

static int cmd_set_limit(int argc, char **argv)
{
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    g_autofree char *path = NULL;
    char uuid[VIR_UUID_STRING_BUFLEN];
    char buf[32], num[24];
    uint64_t size;
    int rc;

    if (argc != 3) {
        return fail(VTMEMCTL_EXIT_USAGE, "usage: set-limit DOMAIN SIZE");
    }
    if (!parse_size_arg(argv[2], &size)) {
        return fail(VTMEMCTL_EXIT_USAGE, "bad size '%s' (examples: 512M, 2G, 1048576)", argv[2]);
    }
    if ((rc = open_libvirt(&conn))) {
        return rc;
    }
    if ((rc = lookup_domain(conn, argv[1], &dom))) {
        goto out;
    }
    virDomainGetUUIDString(dom, uuid);
    if (virDomainIsActive(dom) == 1) {
        if ((rc = get_device(dom, argv[1], &path)) ||
            (rc = qom_set_limit(dom, argv[1], path, size))) {
            goto out;
        }
    } else {
        char *xml = virDomainGetXMLDesc(dom, 0);
        bool has = xml && strstr(xml, VTMEM_QOM_TYPE);

        free(xml);
        if (!has) {
            rc = fail(VTMEMCTL_EXIT_NOT_FOUND, "domain '%s' has no %s device", argv[1],
                      VTMEM_QOM_TYPE);
            goto out;
        }
    }
    if ((rc = meta_write(dom, argv[1], true, size, false, 0))) {
        goto out;
    }
    vtmem_pool_format_size(size, buf, sizeof(buf));
    if (path) {
        printf("%s: limit %s (live and persisted)\n", argv[1], buf);
        g_snprintf(num, sizeof(num), "%" G_GUINT64_FORMAT, size);
        /* the daemon caps the VM at the same value (if it runs) */
        {
            g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
            g_autofree char *cmd = g_strdup_printf(VTMEM_POOL_MSG_SET_VM_LIMIT " %s %s", uuid, num);
            g_autofree char *err = NULL;

            daemon_cmd(cmd, lines, &err);
        }
    } else {
        printf("%s: limit %s (persisted; domain not running: applied at its next start)\n",
               argv[1], buf);
    }
out:
    if (dom) {
        virDomainFree(dom);
    }
    virConnectClose(conn);
    return rc;
}

static int cmd_set_weight(int argc, char **argv)
{
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    char uuid[VIR_UUID_STRING_BUFLEN];
    uint64_t w;
    int rc;

    if (argc != 3) {
        return fail(VTMEMCTL_EXIT_USAGE, "usage: set-weight DOMAIN N");
    }
    if (!parse_weight_arg(argv[2], &w)) {
        return fail(VTMEMCTL_EXIT_USAGE, "bad weight '%s' (an integer 1..%d)", argv[2],
                    VTMEM_POOL_MAX_WEIGHT);
    }
    if ((rc = open_libvirt(&conn))) {
        return rc;
    }
    if ((rc = lookup_domain(conn, argv[1], &dom))) {
        goto out;
    }
    virDomainGetUUIDString(dom, uuid);
    if ((rc = meta_write(dom, argv[1], false, 0, true, w))) {
        goto out;
    }
    rc = daemon_vm_setting(VTMEM_POOL_MSG_SET_VM_WEIGHT, uuid, argv[2]);
    printf("%s: weight %" G_GUINT64_FORMAT " (persisted%s)\n", argv[1], w,
           rc ? "; not applied live" : ", applied live");
out:
    if (dom) {
        virDomainFree(dom);
    }
    virConnectClose(conn);
    return rc;
}

static int apply_one(virDomainPtr dom, const char *name)
{
    g_autofree char *path = NULL;
    char uuid[VIR_UUID_STRING_BUFLEN];
    char num[24];
    Meta m;
    int rc;

    virDomainGetUUIDString(dom, uuid);
    meta_read(dom, VIR_DOMAIN_AFFECT_LIVE, &m);
    if (!m.has_limit && !m.has_weight) {
        printf("%s: no vtmem settings in the metadata\n", name);
        return 0;
    }
    if ((rc = get_device(dom, name, &path))) {
        return rc;
    }
    if (m.has_limit) {
        if ((rc = qom_set_limit(dom, name, path, m.limit))) {
            return rc;
        }
        printf("%s: limit %" G_GUINT64_FORMAT "\n", name, m.limit);
    }
    rc = 0;
    if (m.has_limit) {
        g_snprintf(num, sizeof(num), "%" G_GUINT64_FORMAT, m.limit);
        rc = daemon_vm_setting(VTMEM_POOL_MSG_SET_VM_LIMIT, uuid, num);
    }
    if (m.has_weight && rc != VTMEMCTL_EXIT_DAEMON) {
        g_snprintf(num, sizeof(num), "%" G_GUINT64_FORMAT, m.weight);
        rc = daemon_vm_setting(VTMEM_POOL_MSG_SET_VM_WEIGHT, uuid, num);
        if (!rc) {
            printf("%s: weight %" G_GUINT64_FORMAT "\n", name, m.weight);
        }
    }
    return rc;
}

static int cmd_apply(int argc, char **argv)
{
    virConnectPtr conn = NULL;
    virDomainPtr dom = NULL;
    uint64_t wait_s = 0;
    gint64 deadline;
    int rc;

    if (argc == 4 && strcmp(argv[2], "--wait") == 0) {
        if (!vtmem_pool_parse_u64(argv[3], &wait_s) || wait_s > 3600) {
            return fail(VTMEMCTL_EXIT_USAGE, "bad --wait value '%s'", argv[3]);
        }
    } else if (argc != 2) {
        return fail(VTMEMCTL_EXIT_USAGE, "usage: apply DOMAIN [--wait SECS]");
    }
    if ((rc = open_libvirt(&conn))) {
        return rc;
    }
    deadline = g_get_monotonic_time() + (gint64)wait_s * G_USEC_PER_SEC;
    for (;;) {
        rc = lookup_domain(conn, argv[1], &dom);
        if (!rc && virDomainIsActive(dom) == 1) {
            break;
        }
        if (g_get_monotonic_time() >= deadline) {
            if (!rc) {
                rc = fail(VTMEMCTL_EXIT_NOT_FOUND, "domain '%s' is not running", argv[1]);
            }
            goto out;
        }
        if (dom) {
            virDomainFree(dom);
            dom = NULL;
        }
        g_usleep(200 * 1000);
    }
    rc = apply_one(dom, argv[1]);
out:
    if (dom) {
        virDomainFree(dom);
    }
    virConnectClose(conn);
    return rc;
}

typedef struct DomStat {
    char *name;
    char uuid[VIR_UUID_STRING_BUFLEN];
    char *path;
    bool ok;
    uint64_t limit, held, stored, compressed, refusals, same, weight;
    bool weight_from_daemon;
    uint64_t lease;
    bool has_lease;
    /* the device's pool-limit (enforced limit) and pool-connected; absent
     * on devices built before the pool property
     */
    uint64_t pool_limit;
    bool has_pool_limit, pool_connected, has_pool_connected;
} DomStat;

static int cmd_status(int argc, char **argv)
{
    bool json = false;
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *derr = NULL;
    g_autoptr(GHashTable) pool = NULL;
    g_autoptr(GHashTable) vms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                     (GDestroyNotify)g_hash_table_unref);
    virConnectPtr conn = NULL;
    virDomainPtr *doms = NULL;
    GArray *stats = g_array_new(FALSE, TRUE, sizeof(DomStat));
    int n = 0, drc, rc = 0;
    char b1[32], b2[32];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            g_array_free(stats, TRUE);
            return fail(VTMEMCTL_EXIT_USAGE, "status: unknown argument '%s'", argv[i]);
        }
    }

    drc = daemon_cmd(VTMEM_POOL_MSG_STATUS, lines, &derr);
    if (!drc) {
        for (guint i = 0; i < lines->len; i++) {
            const char *l = lines->pdata[i];

            if (g_str_has_prefix(l, VTMEM_POOL_MSG_POOL " ")) {
                g_clear_pointer(&pool, g_hash_table_unref);
                pool = parse_kv(l);
            } else if (g_str_has_prefix(l, VTMEM_POOL_MSG_VM " ")) {
                GHashTable *h = parse_kv(l);
                const char *u = g_hash_table_lookup(h, "uuid");

                if (u) {
                    g_hash_table_replace(vms, g_ascii_strdown(u, -1), h);
                } else {
                    g_hash_table_unref(h);
                }
            }
        }
    }

    virSetErrorFunc(NULL, silent_error);
    conn = virConnectOpen(uri);
    if (conn) {
        n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
            rc = VTMEMCTL_EXIT_LIBVIRT;
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            DomStat s = { 0 };
            char *err = NULL;
            GHashTable *vm;
            Meta m;

            s.name = g_strdup(virDomainGetName(doms[i]));
            virDomainGetUUIDString(doms[i], s.uuid);
            s.path = find_device(doms[i], &err);
            g_free(err);
            if (!s.path) {
                g_free(s.name);
                virDomainFree(doms[i]);
                continue;
            }
            s.ok = qom_get_u64(doms[i], s.path, "limit", &s.limit);
            qom_get_u64(doms[i], s.path, "memory-held", &s.held);
            qom_get_u64(doms[i], s.path, "stored-pages", &s.stored);
            qom_get_u64(doms[i], s.path, "compressed-bytes", &s.compressed);
            qom_get_u64(doms[i], s.path, "refusals", &s.refusals);
            qom_get_u64(doms[i], s.path, "same-filled-pages", &s.same);
            s.has_pool_limit = qom_get_u64(doms[i], s.path, "pool-limit", &s.pool_limit);
            s.has_pool_connected = qom_get_bool(doms[i], s.path, "pool-connected",
                                                &s.pool_connected);
            g_autofree char *key = g_ascii_strdown(s.uuid, -1);
            vm = g_hash_table_lookup(vms, key);
            meta_read(doms[i], VIR_DOMAIN_AFFECT_LIVE, &m);
            s.weight = m.has_weight ? m.weight : VTMEM_POOL_DEFAULT_WEIGHT;
            if (vm) {
                s.weight = kv_u64(vm, "weight");
                s.weight_from_daemon = true;
                s.lease = kv_u64(vm, "limit");
                s.has_lease = true;
            }
            g_array_append_val(stats, s);
            virDomainFree(doms[i]);
        }
        free(doms);
    } else {
        rc = VTMEMCTL_EXIT_LIBVIRT;
    }

    if (json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *out = NULL;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "daemon");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "running");
        json_builder_add_boolean_value(b, drc == 0);
        json_builder_set_member_name(b, "socket");
        json_builder_add_string_value(b, socket_path);
        if (drc == 0 && pool) {
            json_builder_set_member_name(b, "pool_limit");
            json_builder_add_int_value(b, (gint64)kv_u64(pool, "limit"));
            json_builder_set_member_name(b, "charged");
            json_builder_add_int_value(b, (gint64)kv_u64(pool, "charged"));
            json_builder_set_member_name(b, "granule");
            json_builder_add_int_value(b, (gint64)kv_u64(pool, "granule"));
            json_builder_set_member_name(b, "vms");
            json_builder_add_int_value(b, (gint64)kv_u64(pool, "vms"));
        } else {
            json_builder_set_member_name(b, "error");
            json_builder_add_string_value(b, derr ? derr : "");
        }
        json_builder_end_object(b);
        json_builder_set_member_name(b, "libvirt");
        json_builder_add_boolean_value(b, conn != NULL);
        json_builder_set_member_name(b, "domains");
        json_builder_begin_array(b);
        for (guint i = 0; i < stats->len; i++) {
            DomStat *s = &g_array_index(stats, DomStat, i);

            json_builder_begin_object(b);
            json_builder_set_member_name(b, "name");
            json_builder_add_string_value(b, s->name);
            json_builder_set_member_name(b, "uuid");
            json_builder_add_string_value(b, s->uuid);
            json_builder_set_member_name(b, "qom_path");
            json_builder_add_string_value(b, s->path);
            json_builder_set_member_name(b, "limit");
            json_builder_add_int_value(b, (gint64)s->limit);
            json_builder_set_member_name(b, "weight");
            json_builder_add_int_value(b, (gint64)s->weight);
            json_builder_set_member_name(b, "memory_held");
            json_builder_add_int_value(b, (gint64)s->held);
            json_builder_set_member_name(b, "stored_pages");
            json_builder_add_int_value(b, (gint64)s->stored);
            json_builder_set_member_name(b, "same_filled_pages");
            json_builder_add_int_value(b, (gint64)s->same);
            json_builder_set_member_name(b, "compressed_bytes");
            json_builder_add_int_value(b, (gint64)s->compressed);
            json_builder_set_member_name(b, "compression_ratio");
            json_builder_add_double_value(b, s->held ? (double)s->stored * 4096.0 / (double)s->held : 0.0);
            json_builder_set_member_name(b, "refusals");
            json_builder_add_int_value(b, (gint64)s->refusals);
            if (s->has_lease) {
                json_builder_set_member_name(b, "lease");
                json_builder_add_int_value(b, (gint64)s->lease);
            }
            if (s->has_pool_limit) {
                json_builder_set_member_name(b, "pool_limit");
                json_builder_add_int_value(b, (gint64)s->pool_limit);
            }
            if (s->has_pool_connected) {
                json_builder_set_member_name(b, "pool_connected");
                json_builder_add_boolean_value(b, s->pool_connected);
            }
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        json_generator_set_pretty(gen, TRUE);
        out = json_generator_to_data(gen, NULL);
        printf("%s\n", out);
    } else {
        if (drc == 0 && pool) {
            printf("pool: vtmemd at %s: limit %s, in use (leases) %s, %" G_GUINT64_FORMAT " VMs\n",
                   socket_path, vtmem_pool_format_size(kv_u64(pool, "limit"), b1, sizeof(b1)),
                   vtmem_pool_format_size(kv_u64(pool, "charged"), b2, sizeof(b2)),
                   kv_u64(pool, "vms"));
        } else {
            printf("pool: %s (devices run on their own limits)\n", derr);
        }
        if (!conn) {
            fail(VTMEMCTL_EXIT_LIBVIRT, "cannot connect to libvirt%s%s: %s", uri ? " at " : "",
                 uri ? uri : "", virt_err());
        } else if (stats->len == 0) {
            printf("no running domain has a %s device\n", VTMEM_QOM_TYPE);
        } else {
            printf("%-20s %10s %6s %10s %10s %10s %6s %9s\n", "DOMAIN", "LIMIT", "WEIGHT",
                   "LEASE", "HELD", "PAGES", "RATIO", "REFUSALS");
            for (guint i = 0; i < stats->len; i++) {
                DomStat *s = &g_array_index(stats, DomStat, i);
                char l[32], h[32], le[32];

                printf("%-20s %10s %6" G_GUINT64_FORMAT " %10s %10s %10" G_GUINT64_FORMAT
                       " %6.2f %9" G_GUINT64_FORMAT "\n", s->name,
                       s->ok ? vtmem_pool_format_size(s->limit, l, sizeof(l)) : "?",
                       s->weight,
                       s->has_lease ? vtmem_pool_format_size(s->lease, le, sizeof(le)) : "-",
                       vtmem_pool_format_size(s->held, h, sizeof(h)), s->stored,
                       s->held ? (double)s->stored * 4096.0 / (double)s->held : 0.0,
                       s->refusals);
            }
        }
    }
    for (guint i = 0; i < stats->len; i++) {
        DomStat *s = &g_array_index(stats, DomStat, i);

        g_free(s->name);
        g_free(s->path);
    }
    g_array_free(stats, TRUE);
    if (conn) {
        virConnectClose(conn);
    }
    return rc;
}

int main(int argc, char **argv)
{
    int i = 1;

    socket_path = g_getenv(VTMEM_POOL_SOCKET_ENV);
    if (!socket_path || !*socket_path) {
        socket_path = VTMEM_POOL_DEFAULT_SOCKET;
    }
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--connect") == 0 ||
                   strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0) {
            if (i + 1 >= argc || !*argv[i + 1]) {
                return fail(VTMEMCTL_EXIT_USAGE, "%s needs a value", a);
            }
            if (a[1] == 'c' || a[2] == 'c') {
                uri = argv[++i];
            } else {
                socket_path = argv[++i];
            }
        } else if (g_str_has_prefix(a, "--connect=")) {
            uri = a + strlen("--connect=");
        } else if (g_str_has_prefix(a, "--socket=")) {
            socket_path = a + strlen("--socket=");
        } else {
            return fail(VTMEMCTL_EXIT_USAGE, "unknown option '%s'", a);
        }
    }
    if (i >= argc) {
        return fail(VTMEMCTL_EXIT_USAGE, "no command given");
    }
    argc -= i;
    argv += i;
    if (strcmp(argv[0], "status") == 0) {
        return cmd_status(argc, argv);
    } else if (strcmp(argv[0], "set-limit") == 0) {
        return cmd_set_limit(argc, argv);
    } else if (strcmp(argv[0], "set-weight") == 0) {
        return cmd_set_weight(argc, argv);
    } else if (strcmp(argv[0], "set-pool-limit") == 0) {
        return cmd_set_pool_limit(argc, argv);
    } else if (strcmp(argv[0], "apply") == 0) {
        return cmd_apply(argc, argv);
    }
    return fail(VTMEMCTL_EXIT_USAGE, "unknown command '%s'", argv[0]);
}
