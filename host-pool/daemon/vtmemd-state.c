/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-VM settings (weight, VM limit) keyed by UUID, and the state file
 * that keeps them across restarts: one line per VM,
 * "<uuid> <weight> <vm-limit|none>", rewritten atomically on every change.
 */
#include "vtmemd.h"

#include <string.h>

#include <glib/gstdio.h>

VmSettings *settings_lookup(Daemon *d, const char *uuid, bool create)
{
    char key[VTMEM_POOL_UUID_LEN + 1];
    VmSettings *s;

    g_strlcpy(key, uuid, sizeof(key));
    for (char *p = key; *p; p++) {
        *p = g_ascii_tolower(*p);
    }
    s = g_hash_table_lookup(d->settings, key);
    if (!s && create) {
        s = g_new0(VmSettings, 1);
        s->weight = VTMEM_POOL_DEFAULT_WEIGHT;
        s->vm_limit = UINT64_MAX;
        g_hash_table_insert(d->settings, g_strdup(key), s);
    }
    return s;
}

void settings_save(Daemon *d)
{
    GString *text;
    GHashTableIter it;
    gpointer k, v;
    g_autoptr(GError) error = NULL;

    if (!d->state_file) {
        return;
    }
    text = g_string_new(NULL);
    g_hash_table_iter_init(&it, d->settings);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        VmSettings *s = v;

        if (s->vm_limit == UINT64_MAX) {
            g_string_append_printf(text, "%s %u " VTMEM_POOL_NO_LIMIT_WORD "\n",
                                   (char *)k, s->weight);
        } else {
            g_string_append_printf(text, "%s %u %" G_GUINT64_FORMAT "\n",
                                   (char *)k, s->weight, s->vm_limit);
        }
    }
    if (!g_file_set_contents_full(d->state_file, text->str, (gssize)text->len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                  &error)) {
        g_warning("saving settings to %s: %s", d->state_file, error->message);
    }
    g_string_free(text, TRUE);
}

bool settings_load(Daemon *d, GError **error)
{
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    g_autoptr(GError) err = NULL;
    guint n = 0;

    if (!g_file_get_contents(d->state_file, &text, NULL, &err)) {
        if (g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT)) {
            return true;
        }
        g_propagate_error(error, g_steal_pointer(&err));
        return false;
    }
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) f = NULL;
        unsigned nf = 0;
        uint64_t w, lim = UINT64_MAX;
        VmSettings *s;

        if (!*lines[i]) {
            continue;
        }
        f = vtmem_pool_split(lines[i], 3, &nf);
        if (!f || nf != 3 || !vtmem_pool_uuid_valid(f[0]) ||
            !vtmem_pool_parse_u64(f[1], &w) || w < 1 ||
            w > VTMEM_POOL_MAX_WEIGHT ||
            (strcmp(f[2], VTMEM_POOL_NO_LIMIT_WORD) != 0 &&
             (!vtmem_pool_parse_u64(f[2], &lim) ||
              lim > VTMEM_POOL_MAX_BYTES))) {
            g_warning("%s:%u: ignoring malformed line", d->state_file, i + 1);
            continue;
        }
        s = settings_lookup(d, f[0], true);
        s->weight = (uint32_t)w;
        s->vm_limit = lim;
        n++;
    }
    g_message("loaded settings of %u VMs from %s", n, d->state_file);
    return true;
}

uint64_t conn_cap(Daemon *d, Conn *c)
{
    VmSettings *s = settings_lookup(d, c->uuid, false);
    uint64_t cap = c->cap;

    if (s && s->vm_limit < cap) {
        cap = s->vm_limit;
    }
    return cap;
}

uint32_t conn_weight(Daemon *d, Conn *c)
{
    VmSettings *s = settings_lookup(d, c->uuid, false);

    return s ? s->weight : VTMEM_POOL_DEFAULT_WEIGHT;
}
