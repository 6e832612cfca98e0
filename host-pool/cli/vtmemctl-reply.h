/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl's handling of untrusted replies: QMP answers (from a QEMU whose
 * guest may own it, passed on by libvirt), libvirt's error texts and
 * vtmemd's STATUS lines. Pure functions without I/O, so that unit tests
 * and the fuzzer (tests/fuzz/fuzz-vtmemctl-json.c) drive them directly.
 */
#ifndef VTMEMCTL_REPLY_H
#define VTMEMCTL_REPLY_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/*
 * Longest QMP reply accepted, and deepest nesting: json-glib's parser
 * recurses per level and overflows the stack at ~100,000 levels.
 */
#define VTMEMCTL_QMP_MAX_REPLY (1024 * 1024)
#define VTMEMCTL_QMP_MAX_DEPTH 64
/* Untrusted text shown to the operator is cut after this many characters. */
#define VTMEMCTL_MAX_SHOWN 300

/*
 * Untrusted text made safe for a terminal: invalid UTF-8 becomes U+FFFD;
 * control characters (C0, DEL, C1) and bidirectional overrides are shown
 * escaped ("\x1b", "\u202e"); cut after VTMEMCTL_MAX_SHOWN characters
 * ("..."). s may be NULL ("(null)"). Free with g_free.
 */
char *vtmemctl_safe_text(const char *s);

/*
 * JSON from json-glib's generator with every control character but the
 * layout's '\n' (C0, DEL, C1) and the bidirectional overrides escaped as
 * \uXXXX: the same data, safe on a terminal. Free with g_free.
 */
char *vtmemctl_json_escape_controls(const char *json);

/*
 * One QMP reply: the "return" member (a new node, any type) or NULL with
 * *err set to safe text (the error's "desc" or what was wrong).
 */
JsonNode *vtmemctl_qmp_reply(const char *text, char **err);

/*
 * In a qom-list result (an array of {"name": ..., "type": ...}), the name
 * of the first child whose type is "child<type>"; NULL if there is none.
 * Elements of any other shape are skipped; a name must be a non-empty
 * UTF-8 string without '/'.
 */
char *vtmemctl_qom_list_find(JsonNode *list, const char *type);

/*
 * A qom-get value: an integer, read as QEMU's uint64 (json-glib keeps its
 * 64 bits, so "-1" reads as UINT64_MAX; it saturates above); an integral
 * non-negative double (>= 2^64: UINT64_MAX); or a boolean.
 */
bool vtmemctl_json_u64(JsonNode *n, uint64_t *out);
bool vtmemctl_json_bool(JsonNode *n, bool *out);

/*
 * A vtmemd status line "WORD key=value ... name=rest" as a table (the
 * "name" member takes the rest of the line). Free with g_hash_table_unref.
 */
GHashTable *vtmemctl_parse_kv(const char *line);
/* A decimal member of that table; false if absent or not a number. */
bool vtmemctl_kv_u64(GHashTable *h, const char *key, uint64_t *out);

#endif /* VTMEMCTL_REPLY_H */
