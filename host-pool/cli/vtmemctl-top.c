/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl top: the pool and each VM as vtmemd sees them, redrawn every
 * interval from its STATUS (plain ANSI: home, clear; one write per frame).
 * A GLib main loop runs the timer, the keyboard ('q' quits; the terminal
 * is put in non-canonical mode and restored) and SIGINT/SIGTERM.
 * Every text from vtmemd is made terminal-safe before it is shown.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <glib-unix.h>

#include "vtmem-pool-util.h"
#include "vtmemctl-reply.h"
#include "vtmemctl.h"

typedef struct Top {
    const Vtmemctl *ctl;
    GMainLoop *loop;
    guint interval_ms;
    int iterations;         /* frames left; < 0: until quit */
    bool tty;               /* stdout is a terminal: clear between frames */
    bool raw;               /* stdin's mode changed: restore saved */
    struct termios saved;
    int rc;                 /* of the last refresh */
    bool done;
} Top;

static void top_quit(Top *t)
{
    t->done = true;
    g_main_loop_quit(t->loop);
}

static uint64_t kv_u64(GHashTable *h, const char *key)
{
    uint64_t v;

    return vtmemctl_kv_u64(h, key, &v) ? v : 0;
}

static const char *size_of(GHashTable *h, const char *key, char *buf,
                           size_t len)
{
    return vtmem_pool_format_size(kv_u64(h, key), buf, len);
}

/* PSI avg10 in hundredths of a percent as "12.34%" */
static const char *psi_of(GHashTable *h, const char *key, char *buf,
                          size_t len)
{
    uint64_t v = kv_u64(h, key);

    g_snprintf(buf, len, "%" G_GUINT64_FORMAT ".%02u%%", v / 100,
               (unsigned)(v % 100));
    return buf;
}

/* g_ptr_array_sort: pointers to the elements */
static gint by_name(gconstpointer pa, gconstpointer pb)
{
    GHashTable *a = *(GHashTable *const *)pa;
    GHashTable *b = *(GHashTable *const *)pb;
    int c = g_strcmp0(g_hash_table_lookup(a, "name"),
                      g_hash_table_lookup(b, "name"));

    return c ? c : g_strcmp0(g_hash_table_lookup(a, "uuid"),
                             g_hash_table_lookup(b, "uuid"));
}

static void vm_row(GString *out, GHashTable *vm)
{
    g_autofree char *name = vtmemctl_safe_text(
        g_hash_table_lookup(vm, "name") ? g_hash_table_lookup(vm, "name")
                                        : "?");
    g_autofree char *reason = vtmemctl_safe_text(
        g_hash_table_lookup(vm, "reason") ? g_hash_table_lookup(vm, "reason")
                                          : "-");
    char held[32], lease[32], target[32], wanted[32];
    const char *state = !kv_u64(vm, "connected") ? "ghost"
                        : kv_u64(vm, "pressed") ? "pressed" : "idle";

    g_string_append_printf(out, "%-18.18s %6" G_GUINT64_FORMAT
                           " %10s %10s %10s %10s %9" G_GUINT64_FORMAT
                           " %9" G_GUINT64_FORMAT " %-7s %s\n", name,
                           kv_u64(vm, "weight"),
                           size_of(vm, "held", held, sizeof(held)),
                           size_of(vm, "charge", lease, sizeof(lease)),
                           size_of(vm, "target", target, sizeof(target)),
                           size_of(vm, "wanted", wanted, sizeof(wanted)),
                           kv_u64(vm, "stored-pages"),
                           kv_u64(vm, "refusals"), state, reason);
}

/* One frame from vtmemd's STATUS lines (or its error). */
static void render(Top *t, GString *out, GPtrArray *lines, const char *err)
{
    g_autoptr(GHashTable) pool = NULL;
    g_autoptr(GPtrArray) vms = g_ptr_array_new_with_free_func(
        (GDestroyNotify)g_hash_table_unref);
    g_autofree char *sock = vtmemctl_safe_text(t->ctl->socket_path);
    char a[32], b[32], c[32], e[32], f[32];
    uint64_t limit;

    g_string_append_printf(out, "vtmemctl top - vtmemd at %s - every %u ms"
                           "%s\n", sock, t->interval_ms,
                           t->raw ? " - q quits" : "");
    for (guint i = 0; !err && i < lines->len; i++) {
        const char *l = lines->pdata[i];

        if (g_str_has_prefix(l, VTMEM_POOL_MSG_POOL " ")) {
            g_clear_pointer(&pool, g_hash_table_unref);
            pool = vtmemctl_parse_kv(l);
        } else if (g_str_has_prefix(l, VTMEM_POOL_MSG_VM " ")) {
            g_ptr_array_add(vms, vtmemctl_parse_kv(l));
        }
    }
    if (err || !pool) {
        g_autofree char *safe = vtmemctl_safe_text(
            err ? err : "bad reply from vtmemd: no POOL line");

        g_string_append_printf(out, "vtmemd: %s\n", safe);
        return;
    }
    limit = kv_u64(pool, "limit");
    g_string_append_printf(out, "pool: limit %s, ceiling %s, leased %s"
                           " (%" G_GUINT64_FORMAT "%%), auto-pool %s\n",
                           size_of(pool, "limit", a, sizeof(a)),
                           size_of(pool, "ceiling", b, sizeof(b)),
                           size_of(pool, "charged", c, sizeof(c)),
                           limit ? kv_u64(pool, "charged") * 100 / limit : 0,
                           kv_u64(pool, "auto-pool") ? "on" : "off");
    g_string_append_printf(out, "      PSI some %s full %s (avg10), %"
                           G_GUINT64_FORMAT " VMs, %" G_GUINT64_FORMAT
                           " decisions, %" G_GUINT64_FORMAT " passes\n",
                           psi_of(pool, "pressure-some-avg10", e, sizeof(e)),
                           psi_of(pool, "pressure-full-avg10", f, sizeof(f)),
                           kv_u64(pool, "vms"), kv_u64(pool, "decisions"),
                           kv_u64(pool, "rebalances"));
    g_string_append_printf(out, "\n%-18s %6s %10s %10s %10s %10s %9s %9s"
                           " %-7s %s\n", "NAME", "WEIGHT", "HELD", "LEASE",
                           "TARGET", "WANTED", "PAGES", "REFUSALS", "STATE",
                           "REASON");
    g_ptr_array_sort(vms, by_name);
    for (guint i = 0; i < vms->len; i++) {
        vm_row(out, vms->pdata[i]);
    }
    if (vms->len == 0) {
        g_string_append(out, "(no VM in the pool)\n");
    }
}

/* Cut every line to the terminal's width: a frame never wraps. */
static void clip(GString *frame, GString *out)
{
    struct winsize ws;
    unsigned cols = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col
                    ? ws.ws_col : 0;
    g_auto(GStrv) lines = g_strsplit(frame->str, "\n", -1);

    for (guint i = 0; lines[i]; i++) {
        if (!lines[i][0] && !lines[i + 1]) {
            break;
        }
        /* the text is ASCII (made safe): bytes are columns */
        g_string_append_len(out, lines[i],
                            cols && strlen(lines[i]) > cols
                            ? (gssize)cols : -1);
        /* clear to the end of the line, then the next */
        g_string_append(out, "\033[K\n");
    }
}

static gboolean refresh(gpointer data)
{
    Top *t = data;
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GString) frame = g_string_new(NULL);
    g_autoptr(GString) out = g_string_new(NULL);
    g_autofree char *err = NULL;

    t->rc = vtmemctl_daemon_request(t->ctl, VTMEM_POOL_MSG_STATUS, lines,
                                    &err);
    render(t, frame, lines, err);
    if (t->tty) {
        g_string_append(out, "\033[H");
        clip(frame, out);
        g_string_append(out, "\033[J");     /* clear below */
    } else {
        g_string_append(out, frame->str);
        g_string_append_c(out, '\n');
    }
    fwrite(out->str, 1, out->len, stdout);
    fflush(stdout);
    if (t->iterations > 0 && --t->iterations == 0) {
        top_quit(t);
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_key(gint fd, GIOCondition cond, gpointer data)
{
    Top *t = data;
    char ch;
    ssize_t n = read(fd, &ch, 1);

    (void)cond;
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
        (n == 1 && (ch == 'q' || ch == 'Q'))) {
        top_quit(t);
        return G_SOURCE_CONTINUE;   /* removed at the end */
    }
    if (n == 1 && ch == ' ') {
        refresh(t);     /* redraw now */
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_signal(gpointer data)
{
    top_quit(data);
    return G_SOURCE_CONTINUE;
}

int vtmemctl_top(const Vtmemctl *ctl, guint interval_ms, int iterations)
{
    Top t = { .ctl = ctl, .interval_ms = interval_ms,
              .iterations = iterations > 0 ? iterations : -1 };
    guint key_src = 0, sig_int, sig_term, timer;

    t.loop = g_main_loop_new(NULL, FALSE);
    t.tty = isatty(STDOUT_FILENO);
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t.saved) == 0) {
        struct termios raw = t.saved;

        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        t.raw = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    if (t.raw) {
        key_src = g_unix_fd_add(STDIN_FILENO, G_IO_IN | G_IO_HUP, on_key, &t);
    }
    sig_int = g_unix_signal_add(SIGINT, on_signal, &t);
    sig_term = g_unix_signal_add(SIGTERM, on_signal, &t);
    if (t.tty) {
        /* hide the cursor, clear once */
        fputs("\033[?25l\033[H\033[2J", stdout);
    }
    refresh(&t);
    timer = g_timeout_add(interval_ms, refresh, &t);
    if (!t.done) {
        g_main_loop_run(t.loop);
    }
    g_source_remove(timer);
    g_source_remove(sig_int);
    g_source_remove(sig_term);
    if (key_src) {
        g_source_remove(key_src);
    }
    if (t.raw) {
        tcsetattr(STDIN_FILENO, TCSANOW, &t.saved);
    }
    if (t.tty) {
        fputs("\033[?25h", stdout);     /* the cursor back */
        fflush(stdout);
    }
    g_main_loop_unref(t.loop);
    return t.rc;
}
