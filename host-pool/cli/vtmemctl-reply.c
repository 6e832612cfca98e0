/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Untrusted replies (QMP, libvirt, vtmemd) into checked values and safe
 * text; see vtmemctl-reply.h.
 */
#include <string.h>

#include "vtmem-pool-util.h"
#include "vtmemctl-reply.h"

/* Characters that move the cursor, recolour or reorder the terminal. */
static bool is_bidi_control(gunichar c)
{
    return c == 0x061c || c == 0x200e || c == 0x200f ||
           (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

static bool is_terminal_control(gunichar c)
{
    return c < 0x20 || (c >= 0x7f && c <= 0x9f) || is_bidi_control(c);
}

char *vtmemctl_safe_text(const char *s)
{
    g_autofree char *valid = NULL;
    GString *out;
    unsigned shown = 0;

    if (!s) {
        return g_strdup("(null)");
    }
    valid = g_utf8_make_valid(s, -1);
    out = g_string_new(NULL);
    for (const char *p = valid; *p; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);

        if (shown++ == VTMEMCTL_MAX_SHOWN) {
            g_string_append(out, "...");
            break;
        }
        if (c < 0x80 && is_terminal_control(c)) {
            g_string_append_printf(out, "\\x%02x", c);
        } else if (is_terminal_control(c)) {
            g_string_append_printf(out, "\\u%04x", c);
        } else {
            g_string_append_unichar(out, c);
        }
    }
    return g_string_free(out, FALSE);
}

char *vtmemctl_json_escape_controls(const char *json)
{
    g_autofree char *valid = g_utf8_make_valid(json, -1);
    GString *out = g_string_new(NULL);

    /*
     * '\n' is layout (pretty printing); other C0 occurs only in strings,
     * where json-glib 1.6 leaves 0x1f unescaped (found by the fuzzer)
     */
    for (const char *p = valid; *p; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);

        if (c != '\n' && is_terminal_control(c)) {
            g_string_append_printf(out, "\\u%04x", c);
        } else {
            g_string_append_len(out, p, g_utf8_next_char(p) - p);
        }
    }
    return g_string_free(out, FALSE);
}

/*
 * Arrays and objects nest at most max deep. json-glib also accepts
 * single-quoted strings and comments, which QMP never sends: refusing
 * them keeps this count the same as the parser's.
 */
static bool nesting_within(const char *text, unsigned max)
{
    unsigned depth = 0;
    bool in_string = false;

    for (const char *p = text; *p; p++) {
        if (in_string) {
            if (*p == '\\' && p[1]) {
                p++;
            } else if (*p == '"') {
                in_string = false;
            }
        } else if (*p == '"') {
            in_string = true;
        } else if (*p == '\'' || *p == '/' || *p == '#') {
            return false;
        } else if (*p == '[' || *p == '{') {
            if (++depth > max) {
                return false;
            }
        } else if ((*p == ']' || *p == '}') && depth > 0) {
            depth--;
        }
    }
    return true;
}

/* A member that is a JSON string, else NULL. */
static const char *string_member(JsonObject *o, const char *name)
{
    JsonNode *n = json_object_get_member(o, name);

    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(n);
}

static char *qmp_error_text(JsonNode *error)
{
    const char *desc = NULL;

    if (JSON_NODE_HOLDS_OBJECT(error)) {
        desc = string_member(json_node_get_object(error), "desc");
    }
    return vtmemctl_safe_text(desc ? desc : "QMP error without description");
}

JsonNode *vtmemctl_qmp_reply(const char *text, char **err)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) jerr = NULL;
    g_autofree char *shown = NULL;
    JsonNode *root;
    JsonNode *member;

    if (!text || !*text) {
        *err = g_strdup("empty QMP reply");
        return NULL;
    }
    if (strlen(text) > VTMEMCTL_QMP_MAX_REPLY) {
        *err = g_strdup("QMP reply too long");
        return NULL;
    }
    if (!nesting_within(text, VTMEMCTL_QMP_MAX_DEPTH)) {
        *err = g_strdup("QMP reply nested too deeply or not plain JSON");
        return NULL;
    }
    root = json_parser_load_from_data(parser, text, -1, &jerr)
           ? json_parser_get_root(parser) : NULL;
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        shown = vtmemctl_safe_text(text);
        *err = g_strdup_printf("bad QMP reply: %s", shown);
        return NULL;
    }
    member = json_object_get_member(json_node_get_object(root), "error");
    if (member) {
        *err = qmp_error_text(member);
        return NULL;
    }
    member = json_object_get_member(json_node_get_object(root), "return");
    if (!member) {
        *err = g_strdup("QMP reply without return");
        return NULL;
    }
    return json_node_copy(member);
}

char *vtmemctl_qom_list_find(JsonNode *list, const char *type)
{
    g_autofree char *want = g_strdup_printf("child<%s>", type);
    JsonArray *arr;

    if (!list || !JSON_NODE_HOLDS_ARRAY(list)) {
        return NULL;
    }
    arr = json_node_get_array(list);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *el = json_array_get_element(arr, i);
        const char *t, *name;

        if (!JSON_NODE_HOLDS_OBJECT(el)) {
            continue;
        }
        t = string_member(json_node_get_object(el), "type");
        name = string_member(json_node_get_object(el), "name");
        if (t && name && strcmp(t, want) == 0 && *name &&
            !strchr(name, '/') && g_utf8_validate(name, -1, NULL)) {
            return g_strdup(name);
        }
    }
    return NULL;
}

bool vtmemctl_json_u64(JsonNode *n, uint64_t *out)
{
    if (!n || !JSON_NODE_HOLDS_VALUE(n)) {
        return false;
    }
    if (json_node_get_value_type(n) == G_TYPE_INT64) {
        /*
         * json-glib keeps the 64 bits of an unsigned decimal (QEMU's
         * uint64) and saturates above UINT64_MAX
         */
        *out = (uint64_t)json_node_get_int(n);
        return true;
    }
    if (json_node_get_value_type(n) == G_TYPE_DOUBLE) {
        double d = json_node_get_double(n);

        if (d >= 18446744073709551616.0) {
            *out = UINT64_MAX;
            return true;
        }
        if (!(d >= 0) || d != (double)(uint64_t)d) {
            return false;       /* negative, NaN or a fraction */
        }
        *out = (uint64_t)d;
        return true;
    }
    return false;
}

bool vtmemctl_json_bool(JsonNode *n, bool *out)
{
    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
        return false;
    }
    *out = json_node_get_boolean(n);
    return true;
}

GHashTable *vtmemctl_parse_kv(const char *line)
{
    GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          g_free);
    const char *p = strchr(line, ' ');

    while (p && *p == ' ') {
        const char *k = p + 1;
        const char *eq = strchr(k, '=');
        const char *end;

        if (!eq) {
            break;
        }
        if (g_str_has_prefix(k, "name=")) {
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

bool vtmemctl_kv_u64(GHashTable *h, const char *key, uint64_t *out)
{
    const char *v = h ? g_hash_table_lookup(h, key) : NULL;

    return v && vtmem_pool_parse_u64(v, out);
}
