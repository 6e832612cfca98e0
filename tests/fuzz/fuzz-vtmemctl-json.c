/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer harness: vtmemctl's handling of untrusted replies
 * (host-pool/cli/vtmemctl-reply.c). The input is a QMP reply as libvirt
 * passes it on from a QEMU the guest may own; every value vtmemctl takes
 * from it is taken here the same way, and the texts it would print are
 * checked to hold no byte a terminal acts on. The same bytes are also read
 * as a vtmemd STATUS line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "vtmem-pool-proto.h"
#include "vtmemctl-reply.h"

/*
 * The invariant of every text vtmemctl prints from a reply (layout: the
 * newlines of pretty-printed JSON).
 */
static void check_terminal_safe(const char *s, bool layout)
{
    const unsigned char *p = (const unsigned char *)s;

    if (!g_utf8_validate(s, -1, NULL)) {
        abort();
    }
    for (; *p; p++) {
        if ((*p < 0x20 && !(layout && *p == '\n')) || *p == 0x7f ||
            (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) {
            abort();
        }
    }
}

/* What status and find_device take from a "return" value. */
static void take_values(JsonNode *ret)
{
    g_autofree char *name = vtmemctl_qom_list_find(ret, VTMEM_QOM_TYPE);
    uint64_t u;
    bool b;
    g_autofree char *shown = NULL;
    g_autofree char *json = NULL;
    g_autofree char *printed = NULL;

    if (name) {
        if (!*name || strchr(name, '/')) {
            abort();    /* it becomes a QOM path component */
        }
        shown = vtmemctl_safe_text(name);
        check_terminal_safe(shown, false);
    }
    /* status --json prints generated JSON through this filter */
    json = json_to_string(ret, TRUE);
    printed = vtmemctl_json_escape_controls(json);
    check_terminal_safe(printed, true);
    vtmemctl_json_u64(ret, &u);
    vtmemctl_json_bool(ret, &b);
    if (JSON_NODE_HOLDS_ARRAY(ret)) {
        JsonArray *a = json_node_get_array(ret);

        for (guint i = 0; i < json_array_get_length(a); i++) {
            vtmemctl_json_u64(json_array_get_element(a, i), &u);
            vtmemctl_json_bool(json_array_get_element(a, i), &b);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autofree char *text = g_strndup((const char *)data, size);
    g_autofree char *err = NULL;
    g_autofree char *shown = NULL;
    g_autoptr(JsonNode) ret = vtmemctl_qmp_reply(text, &err);
    g_autoptr(GHashTable) kv = vtmemctl_parse_kv(text);
    uint64_t u;

    if (!ret == !err) {
        abort();    /* exactly one of a value and an error */
    }
    if (ret) {
        take_values(ret);
    } else {
        check_terminal_safe(err, false);
    }
    shown = vtmemctl_safe_text(text);
    check_terminal_safe(shown, false);
    vtmemctl_kv_u64(kv, "limit", &u);
    return 0;
}
