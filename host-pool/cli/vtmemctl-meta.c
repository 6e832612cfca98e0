/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The per-VM settings vtmemctl keeps in the libvirt domain metadata:
 * <vtmem:vtmem><vtmem:limit>BYTES</vtmem:limit><vtmem:weight>N</...>
 * (docs/libvirt.md). Unknown elements are ignored, so are values out of
 * range (what set-limit and set-weight accept); a malformed document
 * counts as no settings.
 */
#include <stdlib.h>
#include <string.h>

#include "vtmem-pool-util.h"
#include "vtmemctl.h"

typedef struct MetaParse {
    VtmemctlMeta *meta;
    GString *text;
} MetaParse;

static void meta_start(GMarkupParseContext *ctx, const char *elem,
                       const char **an, const char **av, gpointer data,
                       GError **error)
{
    MetaParse *mp = data;

    (void)ctx;
    (void)elem;
    (void)an;
    (void)av;
    (void)error;
    g_string_truncate(mp->text, 0);
}

static void meta_text(GMarkupParseContext *ctx, const char *text, gsize len,
                      gpointer data, GError **error)
{
    MetaParse *mp = data;

    (void)ctx;
    (void)error;
    g_string_append_len(mp->text, text, (gssize)len);
}

static void meta_end(GMarkupParseContext *ctx, const char *elem,
                     gpointer data, GError **error)
{
    MetaParse *mp = data;
    VtmemctlMeta *m = mp->meta;
    const char *colon = strchr(elem, ':');
    const char *local = colon ? colon + 1 : elem;
    g_autofree char *t = g_strstrip(g_strdup(mp->text->str));

    (void)ctx;
    (void)error;
    if (strcmp(local, "limit") == 0) {
        m->has_limit = vtmem_pool_parse_u64(t, &m->limit) &&
                       m->limit <= VTMEM_POOL_MAX_BYTES;
    } else if (strcmp(local, "weight") == 0) {
        m->has_weight = vtmem_pool_parse_u64(t, &m->weight) &&
                        m->weight >= 1 && m->weight <= VTMEM_POOL_MAX_WEIGHT;
    }
    g_string_truncate(mp->text, 0);
}

void vtmemctl_meta_read(virDomainPtr dom, unsigned flags, VtmemctlMeta *m)
{
    static const GMarkupParser p = { meta_start, meta_end, meta_text,
                                     NULL, NULL };
    char *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                                     VTMEM_METADATA_URI, flags);
    g_autoptr(GString) text = g_string_new(NULL);
    MetaParse mp = { .meta = m, .text = text };
    GMarkupParseContext *ctx;

    memset(m, 0, sizeof(*m));
    if (!xml) {
        return;
    }
    ctx = g_markup_parse_context_new(&p, 0, &mp, NULL);
    if (!g_markup_parse_context_parse(ctx, xml, -1, NULL) ||
        !g_markup_parse_context_end_parse(ctx, NULL)) {
        m->has_limit = m->has_weight = false;
    }
    g_markup_parse_context_free(ctx);
    free(xml);
}

int vtmemctl_meta_write(virDomainPtr dom, const char *name,
                        const VtmemctlMeta *set)
{
    int persistent = virDomainIsPersistent(dom);
    unsigned flags = 0;
    g_autoptr(GString) xml = g_string_new("<vtmem>");
    g_autofree char *why = NULL;
    VtmemctlMeta m;

    vtmemctl_meta_read(dom, persistent == 1 ? VIR_DOMAIN_AFFECT_CONFIG
                                            : VIR_DOMAIN_AFFECT_LIVE, &m);
    if (set->has_limit) {
        m.has_limit = true;
        m.limit = set->limit;
    }
    if (set->has_weight) {
        m.has_weight = true;
        m.weight = set->weight;
    }
    if (m.has_limit) {
        g_string_append_printf(xml, "<limit>%" G_GUINT64_FORMAT "</limit>",
                               m.limit);
    }
    if (m.has_weight) {
        g_string_append_printf(xml, "<weight>%" G_GUINT64_FORMAT "</weight>",
                               m.weight);
    }
    g_string_append(xml, "</vtmem>");
    if (virDomainIsActive(dom) == 1) {
        flags |= VIR_DOMAIN_AFFECT_LIVE;
    }
    if (persistent == 1) {
        flags |= VIR_DOMAIN_AFFECT_CONFIG;
    }
    if (virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml->str,
                             VTMEM_METADATA_PREFIX, VTMEM_METADATA_URI,
                             flags) < 0) {
        why = vtmemctl_virt_error();
        return vtmemctl_fail(VTMEMCTL_EXIT_LIBVIRT,
                             "domain '%s': saving metadata: %s", name, why);
    }
    return 0;
}
