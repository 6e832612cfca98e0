/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl status: the pool from vtmemd's STATUS and every running domain
 * with a device (QOM properties, the metadata, vtmemd's view of the VM).
 * Collection fills a DomStat per domain; the text table and --json are
 * both driven by one field table.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio_tmem.h"
#include "vtmem-pool-util.h"
#include "vtmemctl-reply.h"
#include "vtmemctl.h"

typedef struct StatValue {
    uint64_t v;
    bool present;
} StatValue;

typedef struct DomStat {
    char *name;
    char *uuid;
    char *path;                 /* the device's QOM path */
    StatValue limit, weight, lease, held, stored, same, compressed, refusals;
    StatValue pool_limit, pool_connected;
    StatValue compactions, objects_moved, bytes_freed;
} DomStat;

typedef enum {
    FMT_TEXT,       /* a char * member */
    FMT_SIZE,
    FMT_COUNT,
    FMT_BOOL,
    FMT_RATIO,      /* stored pages * page size / memory held */
} StatFormat;

typedef struct StatField {
    const char *json_key;
    const char *qom_name;   /* read with qom-get; NULL: from elsewhere */
    const char *column;     /* text table header; NULL: JSON only */
    int width;              /* text column width; < 0: left-aligned */
    StatFormat format;
    size_t offset;          /* of the member in DomStat */
    /* absent: no JSON member and "-" in the table (else 0 and "?") */
    bool optional;
} StatField;

#define OFF(member) offsetof(DomStat, member)

static const StatField fields[] = {
    { "name", NULL, "DOMAIN", -20, FMT_TEXT, OFF(name), false },
    { "uuid", NULL, NULL, 0, FMT_TEXT, OFF(uuid), false },
    { "qom_path", NULL, NULL, 0, FMT_TEXT, OFF(path), false },
    { "limit", "limit", "LIMIT", 10, FMT_SIZE, OFF(limit), false },
    { "weight", NULL, "WEIGHT", 6, FMT_COUNT, OFF(weight), false },
    { "lease", NULL, "LEASE", 10, FMT_SIZE, OFF(lease), true },
    { "memory_held", "memory-held", "HELD", 10, FMT_SIZE, OFF(held), false },
    { "stored_pages", "stored-pages", "PAGES", 10, FMT_COUNT, OFF(stored),
      false },
    { "compression_ratio", NULL, "RATIO", 6, FMT_RATIO, 0, false },
    { "refusals", "refusals", "REFUSALS", 9, FMT_COUNT, OFF(refusals),
      false },
    { "same_filled_pages", "same-filled-pages", NULL, 0, FMT_COUNT, OFF(same),
      false },
    { "compressed_bytes", "compressed-bytes", NULL, 0, FMT_COUNT,
      OFF(compressed), false },
    { "pool_limit", "pool-limit", NULL, 0, FMT_SIZE, OFF(pool_limit), true },
    { "pool_connected", "pool-connected", NULL, 0, FMT_BOOL,
      OFF(pool_connected), true },
    /* the compaction counters: absent on older devices */
    { "compactions", "compactions", "COMPACTIONS", 11, FMT_COUNT,
      OFF(compactions), true },
    { "compact_objects_moved", "compact-objects-moved", NULL, 0, FMT_COUNT,
      OFF(objects_moved), true },
    { "compact_bytes_freed", "compact-bytes-freed", NULL, 0, FMT_SIZE,
      OFF(bytes_freed), true },
};

/* vtmemd's STATUS "POOL" members in --json */
static const struct {
    const char *json_key, *key;
} pool_fields[] = {
    { "pool_limit", "limit" },
    { "charged", "charged" },
    { "granule", "granule" },
    { "vms", "vms" },
    /* the same values as vtmemd's metrics (docs/vtmemd.md#metrics) */
    { "ceiling", "ceiling" },
    { "connections", "connections" },
    { "rebalances", "rebalances" },
    { "decisions", "decisions" },
    { "auto_pool", "auto-pool" },
    { "auto_changes", "auto-changes" },
    { "pressure_some_avg10", "pressure-some-avg10" },
    { "pressure_some_total_us", "pressure-some-total-us" },
    { "pressure_full_avg10", "pressure-full-avg10" },
    { "pressure_full_total_us", "pressure-full-total-us" },
    { "pressed_hold_ms", "pressed-hold-ms" },
};

typedef enum { VM_INT, VM_TEXT, VM_BOOL, VM_LIMIT } VmFormat;

/* vtmemd's STATUS "VM" members in --json ("daemon": {"vm_list": [...]}) */
static const struct {
    const char *json_key, *key;
    VmFormat format;
} vm_fields[] = {
    { "uuid", "uuid", VM_TEXT },
    { "name", "name", VM_TEXT },
    { "connected", "connected", VM_BOOL },
    { "pid", "pid", VM_INT },
    { "weight", "weight", VM_INT },
    { "vm_limit", "vm-limit", VM_LIMIT },   /* null: none */
    { "cap", "cap", VM_INT },
    { "memory_held", "held", VM_INT },
    { "wanted", "wanted", VM_INT },
    { "limit", "limit", VM_INT },
    { "lease", "charge", VM_INT },
    { "target", "target", VM_INT },
    { "stored_pages", "stored-pages", VM_INT },
    { "refusals", "refusals", VM_INT },
    { "pressed", "pressed", VM_BOOL },
    { "reason", "reason", VM_TEXT },
};

typedef struct Status {
    char *daemon_err;       /* NULL: vtmemd answered */
    GHashTable *pool;       /* its POOL line */
    GHashTable *vms;        /* lower-case UUID -> its VM line */
    char *libvirt_err;      /* NULL: the domains were listed */
    int rc;
    GArray *doms;           /* of DomStat */
} Status;

static const char *field_text(const DomStat *s, const StatField *f)
{
    return *(char *const *)((const char *)s + f->offset);
}

static StatValue *field_value(DomStat *s, const StatField *f)
{
    return (StatValue *)((char *)s + f->offset);
}

/* A number of vtmemd's POOL line; 0 if it has none. */
static uint64_t pool_u64(Status *st, const char *key)
{
    uint64_t v;

    return vtmemctl_kv_u64(st->pool, key, &v) ? v : 0;
}

static double ratio(const DomStat *s)
{
    return s->held.v ? (double)s->stored.v * VIRTIO_TMEM_PAGE_SIZE /
                       (double)s->held.v : 0.0;
}

static void dom_stat_clear(void *p)
{
    DomStat *s = p;

    g_free(s->name);
    g_free(s->uuid);
    g_free(s->path);
}

static void status_clear(Status *st)
{
    g_free(st->daemon_err);
    g_clear_pointer(&st->pool, g_hash_table_unref);
    g_clear_pointer(&st->vms, g_hash_table_unref);
    g_free(st->libvirt_err);
    g_clear_pointer(&st->doms, g_array_unref);
}

/* ---- collection ---- */

static void collect_daemon(const Vtmemctl *ctl, Status *st)
{
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);

    st->vms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                    (GDestroyNotify)g_hash_table_unref);
    if (vtmemctl_daemon_request(ctl, VTMEM_POOL_MSG_STATUS, lines,
                                &st->daemon_err)) {
        return;
    }
    for (guint i = 0; i < lines->len; i++) {
        const char *l = lines->pdata[i];
        GHashTable *h;
        const char *uuid;

        if (g_str_has_prefix(l, VTMEM_POOL_MSG_POOL " ")) {
            g_clear_pointer(&st->pool, g_hash_table_unref);
            st->pool = vtmemctl_parse_kv(l);
        } else if (g_str_has_prefix(l, VTMEM_POOL_MSG_VM " ")) {
            h = vtmemctl_parse_kv(l);
            uuid = g_hash_table_lookup(h, "uuid");
            if (uuid) {
                g_hash_table_replace(st->vms, g_ascii_strdown(uuid, -1), h);
            } else {
                g_hash_table_unref(h);
            }
        }
    }
    if (!st->pool) {
        st->daemon_err = g_strdup("bad reply from vtmemd: no POOL line");
    }
}

/*
 * The device's properties, the settings and vtmemd's view of the VM;
 * false if the domain has no device.
 */
static bool collect_domain(virDomainPtr dom, GHashTable *vms, DomStat *s)
{
    char uuid[VIR_UUID_STRING_BUFLEN];
    g_autofree char *err = NULL;
    g_autofree char *key = NULL;
    GHashTable *vm;
    VtmemctlMeta m;

    s->path = vtmemctl_find_device(dom, &err);
    if (!s->path) {
        return false;
    }
    s->name = g_strdup(virDomainGetName(dom));
    virDomainGetUUIDString(dom, uuid);
    s->uuid = g_strdup(uuid);
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
        const StatField *f = &fields[i];
        StatValue *v = field_value(s, f);
        bool b;

        if (!f->qom_name) {
            continue;
        }
        if (f->format == FMT_BOOL) {
            v->present = vtmemctl_qom_get_bool(dom, s->path, f->qom_name, &b);
            v->v = b;
        } else {
            v->present = vtmemctl_qom_get_u64(dom, s->path, f->qom_name,
                                              &v->v);
        }
    }
    key = g_ascii_strdown(uuid, -1);
    vm = g_hash_table_lookup(vms, key);
    s->lease.present = vtmemctl_kv_u64(vm, "limit", &s->lease.v);
    if (!vtmemctl_kv_u64(vm, "weight", &s->weight.v)) {
        vtmemctl_meta_read(dom, VIR_DOMAIN_AFFECT_LIVE, &m);
        s->weight.v = m.has_weight ? m.weight : VTMEM_POOL_DEFAULT_WEIGHT;
    }
    s->weight.present = true;
    return true;
}

static void collect_domains(const Vtmemctl *ctl, Status *st)
{
    g_autoptr(virConnect) conn = NULL;
    virDomainPtr *doms = NULL;
    int n;

    st->doms = g_array_new(FALSE, TRUE, sizeof(DomStat));
    g_array_set_clear_func(st->doms, dom_stat_clear);
    conn = virConnectOpen(ctl->uri);
    n = conn ? virConnectListAllDomains(conn, &doms,
                                        VIR_CONNECT_LIST_DOMAINS_ACTIVE) : -1;
    if (n < 0) {
        g_autofree char *why = vtmemctl_virt_error();

        st->libvirt_err = conn ? g_strdup_printf("listing domains: %s", why)
                               : vtmemctl_connect_error(ctl);
        st->rc = VTMEMCTL_EXIT_LIBVIRT;
        return;
    }
    for (int i = 0; i < n; i++) {
        DomStat s = { 0 };

        if (collect_domain(doms[i], st->vms, &s)) {
            g_array_append_val(st->doms, s);
        } else {
            dom_stat_clear(&s);
        }
        virDomainFree(doms[i]);
    }
    free(doms);
}

/* ---- output ---- */

static void json_vm(JsonBuilder *b, GHashTable *vm)
{
    json_builder_begin_object(b);
    for (size_t i = 0; i < G_N_ELEMENTS(vm_fields); i++) {
        const char *text = g_hash_table_lookup(vm, vm_fields[i].key);
        uint64_t v = 0;
        bool num = vtmemctl_kv_u64(vm, vm_fields[i].key, &v);

        if (!text) {
            continue;   /* an older vtmemd */
        }
        json_builder_set_member_name(b, vm_fields[i].json_key);
        switch (vm_fields[i].format) {
        case VM_TEXT:
            json_builder_add_string_value(b, text);
            break;
        case VM_BOOL:
            json_builder_add_boolean_value(b, num && v);
            break;
        case VM_LIMIT:
            if (!num) {
                json_builder_add_null_value(b);
                break;
            }
            /* fall through */
        case VM_INT:
            json_builder_add_int_value(b, v > INT64_MAX ? INT64_MAX
                                                        : (gint64)v);
            break;
        }
    }
    json_builder_end_object(b);
}


static void json_daemon(JsonBuilder *b, const Vtmemctl *ctl, Status *st)
{
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "running");
    json_builder_add_boolean_value(b, !st->daemon_err);
    json_builder_set_member_name(b, "socket");
    json_builder_add_string_value(b, ctl->socket_path);
    for (size_t i = 0; !st->daemon_err && i < G_N_ELEMENTS(pool_fields); i++) {
        json_builder_set_member_name(b, pool_fields[i].json_key);
        json_builder_add_int_value(b, (gint64)pool_u64(st, pool_fields[i].key));
    }
    if (!st->daemon_err) {
        GList *keys = g_list_sort(g_hash_table_get_keys(st->vms),
                                  (GCompareFunc)strcmp);

        json_builder_set_member_name(b, "vm_list");
        json_builder_begin_array(b);
        for (GList *k = keys; k; k = k->next) {
            json_vm(b, g_hash_table_lookup(st->vms, k->data));
        }
        json_builder_end_array(b);
        g_list_free(keys);
    }
    if (st->daemon_err) {
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, st->daemon_err);
    }
    json_builder_end_object(b);
}

static void json_domain(JsonBuilder *b, DomStat *s)
{
    json_builder_begin_object(b);
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
        const StatField *f = &fields[i];
        const StatValue *v = f->format == FMT_TEXT || f->format == FMT_RATIO
                             ? NULL : field_value(s, f);

        if (v && !v->present && f->optional) {
            continue;
        }
        json_builder_set_member_name(b, f->json_key);
        if (f->format == FMT_TEXT) {
            json_builder_add_string_value(b, field_text(s, f));
        } else if (f->format == FMT_RATIO) {
            json_builder_add_double_value(b, ratio(s));
        } else if (f->format == FMT_BOOL) {
            json_builder_add_boolean_value(b, v->v);
        } else {
            json_builder_add_int_value(b, v->present ? (gint64)v->v : 0);
        }
    }
    json_builder_end_object(b);
}

static void print_json(const Vtmemctl *ctl, Status *st)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree char *out = NULL;
    g_autofree char *safe = NULL;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "daemon");
    json_daemon(b, ctl, st);
    json_builder_set_member_name(b, "libvirt");
    json_builder_add_boolean_value(b, !st->libvirt_err);
    json_builder_set_member_name(b, "domains");
    json_builder_begin_array(b);
    for (guint i = 0; i < st->doms->len; i++) {
        json_domain(b, &g_array_index(st->doms, DomStat, i));
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    json_generator_set_pretty(gen, TRUE);
    out = json_generator_to_data(gen, NULL);
    safe = vtmemctl_json_escape_controls(out);
    printf("%s\n", safe);
}

/* One table cell: the field's value as text into buf. */
static const char *cell(DomStat *s, const StatField *f, char *buf,
                        size_t len)
{
    const StatValue *v;

    switch (f->format) {
    case FMT_TEXT:
        return field_text(s, f);
    case FMT_RATIO:
        g_snprintf(buf, len, "%.2f", ratio(s));
        return buf;
    default:
        break;
    }
    v = field_value(s, f);
    if (!v->present) {
        return f->optional ? "-" : "?";
    }
    if (f->format == FMT_SIZE) {
        return vtmem_pool_format_size(v->v, buf, len);
    }
    if (f->format == FMT_BOOL) {
        return v->v ? "yes" : "no";
    }
    g_snprintf(buf, len, "%" G_GUINT64_FORMAT, v->v);
    return buf;
}

static void print_row(DomStat *s)
{
    const char *sep = "";

    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
        const StatField *f = &fields[i];
        char buf[32];
        g_autofree char *safe = NULL;

        if (!f->column) {
            continue;
        }
        safe = vtmemctl_safe_text(s ? cell(s, f, buf, sizeof(buf))
                                    : f->column);
        printf("%s%*s", sep, f->width, safe);
        sep = " ";
    }
    putchar('\n');
}

static void print_text(const Vtmemctl *ctl, Status *st)
{
    char limit[32], charged[32];

    if (!st->daemon_err) {
        printf("pool: vtmemd at %s: limit %s, in use (leases) %s, "
               "%" G_GUINT64_FORMAT " VMs\n", ctl->socket_path,
               vtmem_pool_format_size(pool_u64(st, "limit"), limit,
                                      sizeof(limit)),
               vtmem_pool_format_size(pool_u64(st, "charged"), charged,
                                      sizeof(charged)),
               pool_u64(st, "vms"));
    } else {
        printf("pool: %s (devices run on their own limits)\n",
               st->daemon_err);
    }
    if (st->libvirt_err) {
        vtmemctl_fail(st->rc, "%s", st->libvirt_err);
    } else if (st->doms->len == 0) {
        printf("no running domain has a %s device\n", VTMEM_QOM_TYPE);
    } else {
        print_row(NULL);
        for (guint i = 0; i < st->doms->len; i++) {
            print_row(&g_array_index(st->doms, DomStat, i));
        }
    }
}

int vtmemctl_status(const Vtmemctl *ctl, bool json)
{
    Status st = { 0 };
    int rc;

    collect_daemon(ctl, &st);
    collect_domains(ctl, &st);
    if (json) {
        print_json(ctl, &st);
    } else {
        print_text(ctl, &st);
    }
    rc = st.rc;
    status_clear(&st);
    return rc;
}
