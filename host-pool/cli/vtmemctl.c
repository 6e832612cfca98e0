/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl: the operator's CLI for vtmem. Talks to libvirt (per-VM limits
 * through QMP qom-get/qom-set, settings persisted in the domain metadata)
 * and to the pool daemon vtmemd (pool limit, weights, eviction). See
 * docs/vtmemd.md and docs/libvirt.md.
 *
 * Options: global ones in strict POSIX order before the command, then
 * each command's own (GOptionContext per command, as GLib's gio tool).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtmem-pool-util.h"
#include "vtmemctl.h"

/* apply --wait: at most an hour */
#define VTMEMCTL_MAX_WAIT_S 3600

typedef struct VtmemctlCommand {
    const char *name;
    const char *args;           /* positional arguments, for usage */
    unsigned n_args;
    const char *summary;
    const GOptionEntry *options;
    int (*run)(const Vtmemctl *ctl, char **args);
} VtmemctlCommand;

/* The command being run: usage errors point to its --help. */
static const char *current_command;

int vtmemctl_fail(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("vtmemctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (code == VTMEMCTL_EXIT_USAGE) {
        fprintf(stderr, "Try 'vtmemctl%s%s --help'.\n",
                current_command ? " " : "",
                current_command ? current_command : "");
    }
    return code;
}

static int parse_size_arg(const char *s, uint64_t *out)
{
    if (vtmem_pool_parse_size(s, out) && *out <= VTMEM_POOL_MAX_BYTES) {
        return 0;
    }
    return vtmemctl_fail(VTMEMCTL_EXIT_USAGE,
                         "bad size '%s' (examples: 512M, 2G, 1048576)", s);
}

/* A per-VM setting in vtmemd; errors printed and returned. */
static int daemon_vm_setting(const Vtmemctl *ctl, virDomainPtr dom,
                             const char *what, uint64_t value)
{
    char uuid[VIR_UUID_STRING_BUFLEN];
    g_autofree char *cmd = NULL;

    virDomainGetUUIDString(dom, uuid);
    cmd = g_strdup_printf("%s %s %" G_GUINT64_FORMAT, what, uuid, value);
    return vtmemctl_daemon_command(ctl, cmd);
}

/* ---- status ---- */

static gboolean status_json;

static const GOptionEntry status_options[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &status_json,
      "Print one JSON object (members: docs/libvirt.md)", NULL },
    G_OPTION_ENTRY_NULL
};

static int cmd_status(const Vtmemctl *ctl, char **args)
{
    (void)args;
    return vtmemctl_status(ctl, status_json);
}

/* ---- top ---- */

#define TOP_MIN_INTERVAL_MS     100
#define TOP_MAX_INTERVAL_MS     3600000
#define TOP_MAX_ITERATIONS      1000000

static guint top_interval_ms = 1000;
static int top_iterations;

static gboolean parse_top_number(const char *option, const char *value,
                                 gpointer data, GError **error)
{
    bool interval = strcmp(option, "--interval") == 0;
    uint64_t lo = interval ? TOP_MIN_INTERVAL_MS : 1;
    uint64_t hi = interval ? TOP_MAX_INTERVAL_MS : TOP_MAX_ITERATIONS;
    uint64_t v;

    (void)data;
    if (!vtmem_pool_parse_u64(value, &v) || v < lo || v > hi) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "bad %s value '%s' (%" G_GUINT64_FORMAT "..%"
                    G_GUINT64_FORMAT ")", option, value, lo, hi);
        return FALSE;
    }
    if (interval) {
        top_interval_ms = (guint)v;
    } else {
        top_iterations = (int)v;
    }
    return TRUE;
}

static const GOptionEntry top_options[] = {
    { "interval", 0, 0, G_OPTION_ARG_CALLBACK, (gpointer)parse_top_number,
      "Redraw every MS milliseconds (default 1000)", "MS" },
    { "iterations", 0, 0, G_OPTION_ARG_CALLBACK, (gpointer)parse_top_number,
      "Stop after N frames (default: until q)", "N" },
    G_OPTION_ENTRY_NULL
};

static int cmd_top(const Vtmemctl *ctl, char **args)
{
    (void)args;
    return vtmemctl_top(ctl, top_interval_ms, top_iterations);
}

/* ---- set-limit ---- */

/* A limit (at most VTMEM_POOL_MAX_BYTES: an int64) as a QMP value */
static JsonNode *limit_value(uint64_t limit)
{
    return json_node_init_int(json_node_alloc(), (gint64)limit);
}

static bool defines_device(virDomainPtr dom)
{
    char *xml = virDomainGetXMLDesc(dom, 0);
    bool has = xml && strstr(xml, VTMEM_QOM_TYPE);

    free(xml);
    return has;
}

static int set_limit_domain(const Vtmemctl *ctl, virDomainPtr dom,
                            const char *name, void *opaque)
{
    VtmemctlMeta set = { .has_limit = true, .limit = *(uint64_t *)opaque };
    g_autofree char *path = NULL;
    char size[32];
    int rc;

    if (virDomainIsActive(dom) == 1) {
        rc = vtmemctl_get_device(dom, name, &path);
        if (rc) {
            return rc;
        }
        rc = vtmemctl_qom_set(dom, name, path, "limit",
                              limit_value(set.limit));
        if (rc) {
            return rc;
        }
    } else if (!defines_device(dom)) {
        return vtmemctl_fail(VTMEMCTL_EXIT_NOT_FOUND,
                             "domain '%s' has no %s device", name,
                             VTMEM_QOM_TYPE);
    }
    rc = vtmemctl_meta_write(dom, name, &set);
    if (rc) {
        return rc;
    }
    vtmem_pool_format_size(set.limit, size, sizeof(size));
    if (!path) {
        printf("%s: limit %s (persisted; domain not running: applied at its "
               "next start)\n", name, size);
        return 0;
    }
    printf("%s: limit %s (live and persisted)\n", name, size);
    /* vtmemd caps the VM at the same value */
    return daemon_vm_setting(ctl, dom, VTMEM_POOL_MSG_SET_VM_LIMIT, set.limit);
}

static int cmd_set_limit(const Vtmemctl *ctl, char **args)
{
    uint64_t size;
    int rc = parse_size_arg(args[1], &size);

    return rc ? rc : vtmemctl_with_domain(ctl, args[0], 0, set_limit_domain,
                                          &size);
}

/* ---- set-weight ---- */

static int set_weight_domain(const Vtmemctl *ctl, virDomainPtr dom,
                             const char *name, void *opaque)
{
    VtmemctlMeta set = { .has_weight = true, .weight = *(uint64_t *)opaque };
    int rc = vtmemctl_meta_write(dom, name, &set);

    if (rc) {
        return rc;
    }
    rc = daemon_vm_setting(ctl, dom, VTMEM_POOL_MSG_SET_VM_WEIGHT, set.weight);
    printf("%s: weight %" G_GUINT64_FORMAT " (persisted%s)\n", name,
           set.weight, rc ? "; not applied live" : ", applied live");
    return rc;
}

static int cmd_set_weight(const Vtmemctl *ctl, char **args)
{
    uint64_t w;

    if (!vtmem_pool_parse_u64(args[1], &w) || w < 1 ||
        w > VTMEM_POOL_MAX_WEIGHT) {
        return vtmemctl_fail(VTMEMCTL_EXIT_USAGE,
                             "bad weight '%s' (an integer 1..%d)", args[1],
                             VTMEM_POOL_MAX_WEIGHT);
    }
    return vtmemctl_with_domain(ctl, args[0], 0, set_weight_domain, &w);
}

/* ---- set-pool-limit ---- */

static int cmd_set_pool_limit(const Vtmemctl *ctl, char **args)
{
    g_autofree char *cmd = NULL;
    uint64_t size;
    char buf[32];
    int rc = parse_size_arg(args[0], &size);

    if (rc) {
        return rc;
    }
    cmd = g_strdup_printf(VTMEM_POOL_MSG_SET_POOL_LIMIT " %" G_GUINT64_FORMAT,
                          size);
    rc = vtmemctl_daemon_command(ctl, cmd);
    if (rc) {
        return rc;
    }
    printf("pool limit set to %s\n",
           vtmem_pool_format_size(size, buf, sizeof(buf)));
    return 0;
}

/* ---- apply ---- */

static unsigned apply_wait_s;

static gboolean parse_wait(const char *option, const char *value,
                           gpointer data, GError **error)
{
    uint64_t s;

    (void)data;
    if (!vtmem_pool_parse_u64(value, &s) || s > VTMEMCTL_MAX_WAIT_S) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "bad %s value '%s' (seconds, 0..%d)", option, value,
                    VTMEMCTL_MAX_WAIT_S);
        return FALSE;
    }
    apply_wait_s = (unsigned)s;
    return TRUE;
}

static const GOptionEntry apply_options[] = {
    { "wait", 0, 0, G_OPTION_ARG_CALLBACK, (gpointer)parse_wait,
      "Wait up to SECS for the domain to run", "SECS" },
    G_OPTION_ENTRY_NULL
};

static int apply_domain(const Vtmemctl *ctl, virDomainPtr dom,
                        const char *name, void *opaque)
{
    g_autofree char *path = NULL;
    VtmemctlMeta m;
    int rc;

    (void)opaque;
    rc = vtmemctl_need_running(dom, name);
    if (rc) {
        return rc;
    }
    vtmemctl_meta_read(dom, VIR_DOMAIN_AFFECT_LIVE, &m);
    if (!m.has_limit && !m.has_weight) {
        printf("%s: no vtmem settings in the metadata\n", name);
        return 0;
    }
    rc = vtmemctl_get_device(dom, name, &path);
    if (rc) {
        return rc;
    }
    if (m.has_limit) {
        rc = vtmemctl_qom_set(dom, name, path, "limit", limit_value(m.limit));
        if (rc) {
            return rc;
        }
        printf("%s: limit %" G_GUINT64_FORMAT "\n", name, m.limit);
        rc = daemon_vm_setting(ctl, dom, VTMEM_POOL_MSG_SET_VM_LIMIT,
                               m.limit);
    }
    if (m.has_weight && rc != VTMEMCTL_EXIT_DAEMON) {
        int wrc = daemon_vm_setting(ctl, dom, VTMEM_POOL_MSG_SET_VM_WEIGHT,
                                    m.weight);

        if (!wrc) {
            printf("%s: weight %" G_GUINT64_FORMAT "\n", name, m.weight);
        }
        rc = rc ? rc : wrc;
    }
    return rc;
}

static int cmd_apply(const Vtmemctl *ctl, char **args)
{
    return vtmemctl_with_domain(ctl, args[0], apply_wait_s, apply_domain,
                                NULL);
}

/* ---- compact ---- */

static int compact_domain(const Vtmemctl *ctl, virDomainPtr dom,
                          const char *name, void *opaque)
{
    g_autofree char *path = NULL;
    int rc;

    (void)ctl;
    (void)opaque;
    rc = vtmemctl_need_running(dom, name);
    if (!rc) {
        rc = vtmemctl_get_device(dom, name, &path);
    }
    if (!rc) {
        rc = vtmemctl_qom_set(dom, name, path, "compact",
                              json_node_init_boolean(json_node_alloc(), TRUE));
    }
    if (rc) {
        return rc;
    }
    printf("%s: compaction requested (counters: vtmemctl status --json)\n",
           name);
    return 0;
}

static int cmd_compact(const Vtmemctl *ctl, char **args)
{
    return vtmemctl_with_domain(ctl, args[0], 0, compact_domain, NULL);
}

/* ---- evict ---- */

static int cmd_evict(const Vtmemctl *ctl, char **args)
{
    g_autofree char *uuid = NULL;
    g_autofree char *cmd = NULL;
    int rc;

    if (!vtmem_pool_uuid_valid(args[0])) {
        return vtmemctl_fail(VTMEMCTL_EXIT_USAGE,
                             "bad UUID '%s' (8-4-4-4-12 hex digits)", args[0]);
    }
    uuid = g_ascii_strdown(args[0], -1);
    cmd = g_strdup_printf(VTMEM_POOL_MSG_EVICT " %s", uuid);
    rc = vtmemctl_daemon_command(ctl, cmd);
    if (rc) {
        return rc;
    }
    printf("%s: evicted from the pool\n", uuid);
    return 0;
}

/* ---- options and dispatch ---- */

static const VtmemctlCommand commands[] = {
    { "status", "", 0, "the pool and every running domain's device",
      status_options, cmd_status },
    { "top", "", 0, "vtmemd's pool and VMs, redrawn (q quits)", top_options,
      cmd_top },
    { "set-limit", "DOMAIN SIZE", 2, "device limit: live (QMP) and persisted",
      NULL, cmd_set_limit },
    { "set-weight", "DOMAIN N", 2, "weight 1..10000: live (vtmemd), persisted",
      NULL, cmd_set_weight },
    { "set-pool-limit", "SIZE", 1, "host-wide budget of vtmemd", NULL,
      cmd_set_pool_limit },
    { "apply", "DOMAIN", 1, "apply the persisted settings (at VM start)",
      apply_options, cmd_apply },
    { "compact", "DOMAIN", 1, "compact the device's page store now", NULL,
      cmd_compact },
    { "evict", "UUID", 1, "drop a device, or a ghost, from vtmemd's pool",
      NULL, cmd_evict },
};

static const char *const help_text =
    "SIZE: bytes, or with a suffix K, M, G, T (powers of 1024): 512M, 2G.\n"
    "DOMAIN: name, UUID or id.\n"
    "Run 'vtmemctl COMMAND --help' for a command's options.\n"
    "\n"
    "Exit status: 0 ok, 1 usage or bad value, 2 domain or device not found,\n"
    "3 vtmemd unreachable, 4 libvirt or QMP error, 5 vtmemd refused.";

/* "name ARGS [--option VALUE]...": one line of usage. */
static char *command_usage(const VtmemctlCommand *cmd)
{
    GString *u = g_string_new(cmd->name);

    if (*cmd->args) {
        g_string_append_printf(u, " %s", cmd->args);
    }
    for (const GOptionEntry *o = cmd->options; o && o->long_name; o++) {
        g_string_append_printf(u, " [--%s%s%s]", o->long_name,
                               o->arg_description ? " " : "",
                               o->arg_description ? o->arg_description : "");
    }
    return g_string_free(u, FALSE);
}

static gboolean show_help;

static const GOptionEntry help_option[] = {
    { "help", 'h', 0, G_OPTION_ARG_NONE, &show_help, "Show this help", NULL },
    G_OPTION_ENTRY_NULL
};

static gboolean set_value(char **dst, const char *option, const char *value,
                          GError **error)
{
    if (!*value) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "%s needs a value", option);
        return FALSE;
    }
    g_free(*dst);
    *dst = g_strdup(value);
    return TRUE;
}

static gboolean set_connect(const char *option, const char *value,
                            gpointer data, GError **error)
{
    return set_value(&((Vtmemctl *)data)->uri, option, value, error);
}

static gboolean set_socket(const char *option, const char *value,
                           gpointer data, GError **error)
{
    return set_value(&((Vtmemctl *)data)->socket_path, option, value, error);
}

static const GOptionEntry global_options[] = {
    { "connect", 'c', 0, G_OPTION_ARG_CALLBACK, (gpointer)set_connect,
      "libvirt URI (default: $LIBVIRT_DEFAULT_URI or libvirt's)", "URI" },
    { "socket", 's', 0, G_OPTION_ARG_CALLBACK, (gpointer)set_socket,
      "vtmemd socket (default: $" VTMEM_POOL_SOCKET_ENV " or "
      VTMEM_POOL_DEFAULT_SOCKET ")", "PATH" },
    G_OPTION_ENTRY_NULL
};

/* "-x", "--x": an option; "-1" is a (bad) value, "-" a value. */
static bool looks_like_option(const char *a)
{
    return a[0] == '-' && a[1] && !g_ascii_isdigit(a[1]);
}

/*
 * The arguments GOption left in args (after args[0]), in order, into
 * out; options it did not know are an error, except after "--". With
 * first_only, stop at the first argument (the command).
 */
static int take_positionals(char **args, bool first_only, GPtrArray *out)
{
    bool options_end = false;

    for (char **a = args + 1; *a && !(first_only && out->len); a++) {
        if (!options_end && strcmp(*a, "--") == 0) {
            options_end = true;
        } else if (!options_end && looks_like_option(*a)) {
            return vtmemctl_fail(VTMEMCTL_EXIT_USAGE,
                                 "%s%sunknown option '%s'",
                                 current_command ? current_command : "",
                                 current_command ? ": " : "", *a);
        } else {
            g_ptr_array_add(out, *a);
        }
    }
    return 0;
}

/* Parse args with ctx; -1: help printed; 0; or the exit code. */
static int parse_options(GOptionContext *ctx, char ***args)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *help = NULL;

    g_option_context_set_help_enabled(ctx, FALSE);
    g_option_context_set_ignore_unknown_options(ctx, TRUE);
    g_option_context_add_main_entries(ctx, help_option, NULL);
    show_help = FALSE;
    if (!g_option_context_parse_strv(ctx, args, &err)) {
        return vtmemctl_fail(VTMEMCTL_EXIT_USAGE, "%s", err->message);
    }
    if (show_help) {
        help = g_option_context_get_help(ctx, TRUE, NULL);
        fputs(help, stdout);
        return -1;
    }
    return 0;
}

static int run_command(const Vtmemctl *ctl, const VtmemctlCommand *cmd,
                       char **argv)
{
    g_autofree char *prgname = g_strdup_printf("vtmemctl %s", cmd->name);
    g_autofree char *usage = command_usage(cmd);
    g_auto(GStrv) args = g_strdupv(argv);
    g_autoptr(GOptionContext) ctx = g_option_context_new(cmd->args);
    g_autoptr(GPtrArray) pos = g_ptr_array_new();
    int rc;

    current_command = cmd->name;
    g_set_prgname(prgname);
    g_option_context_set_summary(ctx, cmd->summary);
    if (cmd->options) {
        g_option_context_add_main_entries(ctx, cmd->options, NULL);
    }
    rc = parse_options(ctx, &args);
    if (!rc) {
        rc = take_positionals(args, false, pos);
    }
    if (rc) {
        return rc < 0 ? 0 : rc;
    }
    if (pos->len != cmd->n_args) {
        return vtmemctl_fail(VTMEMCTL_EXIT_USAGE, "usage: %s", usage);
    }
    g_ptr_array_add(pos, NULL);
    return cmd->run(ctl, (char **)pos->pdata);
}

static GOptionContext *global_context(Vtmemctl *ctl)
{
    GOptionContext *ctx = g_option_context_new("COMMAND [ARGS]");
    GOptionGroup *g = g_option_group_new("vtmemctl", "", "", ctl, NULL);
    GString *summary = g_string_new("Commands:");

    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        g_autofree char *usage = command_usage(&commands[i]);

        g_string_append_printf(summary, "\n  %-28s %s", usage,
                               commands[i].summary);
    }
    g_option_context_set_summary(ctx, summary->str);
    g_string_free(summary, TRUE);
    g_option_context_set_description(ctx, help_text);
    g_option_context_set_strict_posix(ctx, TRUE);
    g_option_group_add_entries(g, global_options);
    g_option_context_set_main_group(ctx, g);
    return ctx;
}

static const VtmemctlCommand *find_command(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(name, commands[i].name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

/* The global options, then the command with its own. */
static int run(Vtmemctl *ctl, char **argv)
{
    g_auto(GStrv) args = g_strdupv(argv);
    g_autoptr(GOptionContext) ctx = global_context(ctl);
    g_autoptr(GPtrArray) pos = g_ptr_array_new();
    const VtmemctlCommand *cmd;
    char **rest;
    int rc;

    rc = parse_options(ctx, &args);
    if (!rc) {
        rc = take_positionals(args, true, pos);
    }
    if (rc) {
        return rc;
    }
    if (!pos->len) {
        return vtmemctl_fail(VTMEMCTL_EXIT_USAGE, "no command given");
    }
    cmd = find_command(pos->pdata[0]);
    if (!cmd) {
        return vtmemctl_fail(VTMEMCTL_EXIT_USAGE, "unknown command '%s'",
                             (char *)pos->pdata[0]);
    }
    /* the command's arguments, its name first (as argv[0]) */
    rest = args;
    while (*rest != pos->pdata[0]) {
        rest++;
    }
    return run_command(ctl, cmd, rest);
}

int main(int argc, char **argv)
{
    const char *env = g_getenv(VTMEM_POOL_SOCKET_ENV);
    Vtmemctl ctl = {
        .socket_path = g_strdup(env && *env ? env : VTMEM_POOL_DEFAULT_SOCKET),
    };
    int rc;

    (void)argc;
    g_set_prgname("vtmemctl");
    vtmemctl_virt_init();
    rc = run(&ctl, argv);
    g_free(ctl.uri);
    g_free(ctl.socket_path);
    return rc < 0 ? 0 : rc;
}
