/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd --metrics-listen: Prometheus metrics over HTTP (libmicrohttpd).
 * The main loop renders the text into a snapshot after every rebalancing
 * pass and every second (the pool's PSI, ghosts); MHD's own
 * thread serves the latest snapshot, copied under a mutex. A slow or
 * stuck scraper therefore holds an MHD connection (at most
 * METRICS_MAX_CONNS, each closed after METRICS_TIMEOUT_S idle), never the
 * main loop: the loop only swaps a pointer under the mutex.
 */
#define _GNU_SOURCE
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include "vtmemd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <gio/gio.h>
#include <microhttpd.h>

#define METRICS_MAX_CONNS   16
#define METRICS_TIMEOUT_S   5
#define METRICS_REFRESH_MS  1000

struct VtmemdMetrics {
    struct MHD_Daemon *mhd;
    GMutex lock;
    char *snapshot;     /* under lock */
    guint refresh_src;
};

/* Label values per the text format: backslash, quote and newline escaped. */
static void append_label(GString *s, const char *key, const char *val)
{
    g_string_append_printf(s, "%s=\"", key);
    for (const char *p = val ? val : ""; *p; p++) {
        if (*p == '\\' || *p == '"') {
            g_string_append_c(s, '\\');
            g_string_append_c(s, *p);
        } else if (*p == '\n') {
            g_string_append(s, "\\n");
        } else {
            g_string_append_c(s, *p);
        }
    }
    g_string_append_c(s, '"');
}

static void head(GString *s, const char *name, const char *type,
                 const char *help)
{
    g_string_append_printf(s, "# HELP %s %s\n# TYPE %s %s\n", name, help,
                           name, type);
}

static void gauge(GString *s, const char *name, const char *help,
                  uint64_t v)
{
    head(s, name, "gauge", help);
    g_string_append_printf(s, "%s %" G_GUINT64_FORMAT "\n", name, v);
}

typedef uint64_t (*VmField)(Daemon *d, Conn *c);

static uint64_t vm_held(Daemon *d, Conn *c)
{
    (void)d;
    return c->held;
}

static uint64_t vm_lease(Daemon *d, Conn *c)
{
    (void)d;
    return conn_charge(c);
}

/* as STATUS: a raise in flight counts from when it is sent */
static uint64_t vm_limit(Daemon *d, Conn *c)
{
    (void)d;
    return c->has_pending && c->pending > c->limit ? c->pending : c->limit;
}

static uint64_t vm_target(Daemon *d, Conn *c)
{
    (void)d;
    return c->target;
}

static uint64_t vm_wanted(Daemon *d, Conn *c)
{
    (void)d;
    return c->wanted;
}

static uint64_t vm_weight(Daemon *d, Conn *c)
{
    return conn_weight(d, c);
}

static uint64_t vm_connected(Daemon *d, Conn *c)
{
    (void)d;
    return c->kind == CONN_DEVICE;
}

static uint64_t vm_refusals(Daemon *d, Conn *c)
{
    (void)d;
    return c->refusals;
}

static uint64_t vm_stored(Daemon *d, Conn *c)
{
    (void)d;
    return c->stored_pages;
}

static uint64_t vm_pressed(Daemon *d, Conn *c)
{
    (void)d;
    return conn_pressed(c);
}

static void vm_metric(GString *s, Daemon *d, const char *name,
                      const char *type, const char *help, VmField field)
{
    head(s, name, type, help);
    for (GList *l = d->conns; l; l = l->next) {
        Conn *c = l->data;

        if (c->kind != CONN_DEVICE && c->kind != CONN_GHOST) {
            continue;
        }
        g_string_append_printf(s, "%s{", name);
        append_label(s, "uuid", c->uuid);
        g_string_append_c(s, ',');
        append_label(s, "name", c->name);
        g_string_append_printf(s, "} %" G_GUINT64_FORMAT "\n",
                               field(d, c));
    }
}

static void vm_gauge(GString *s, Daemon *d, const char *name,
                     const char *help, VmField field)
{
    vm_metric(s, d, name, "gauge", help, field);
}

static void psi(GString *s, const char *kind, uint32_t avg10,
                uint64_t total_us)
{
    g_autofree char *n1 = g_strdup_printf("vtmem_pool_pressure_%s_avg10",
                                          kind);
    g_autofree char *n2 = g_strdup_printf(
        "vtmem_pool_pressure_%s_seconds_total", kind);

    head(s, n1, "gauge", "PSI memory avg10 of the pool's cgroup (or the"
         " host), as a ratio 0..1");
    g_string_append_printf(s, "%s %u.%04u\n", n1, avg10 / 10000,
                           avg10 % 10000);
    head(s, n2, "counter", "PSI memory stall time of the pool's cgroup"
         " (or the host)");
    g_string_append_printf(s, "%s %" G_GUINT64_FORMAT ".%06u\n", n2,
                           total_us / 1000000, (unsigned)(total_us % 1000000));
}

char *vtmemd_metrics_render(Daemon *d)
{
    GString *s = g_string_new(NULL);

    gauge(s, "vtmem_pool_limit_bytes", "The pool's limit now",
          d->pool_limit);
    gauge(s, "vtmem_pool_ceiling_bytes",
          "The pool's hard ceiling (--pool-limit or SET-POOL-LIMIT)",
          d->pool_ceiling);
    gauge(s, "vtmem_pool_charged_bytes",
          "Sum of what the devices and ghosts may hold", total_charge(d));
    gauge(s, "vtmem_pool_connections", "Open connections", d->n_conns);
    head(s, "vtmem_pool_rebalances_total", "counter",
         "Rebalancing passes");
    g_string_append_printf(s, "vtmem_pool_rebalances_total %"
                           G_GUINT64_FORMAT "\n", d->n_rebalances);
    head(s, "vtmem_pool_decisions_total", "counter",
         "Changes of a VM's share (each logged with its reason)");
    g_string_append_printf(s, "vtmem_pool_decisions_total %"
                           G_GUINT64_FORMAT "\n", d->n_decisions);
    if (d->auto_pool) {
        head(s, "vtmem_pool_auto_changes_total", "counter",
             "Pool limit changes by --auto-pool");
        g_string_append_printf(s, "vtmem_pool_auto_changes_total %"
                               G_GUINT64_FORMAT "\n", d->n_autopool_changes);
        /* PSI's avg10 is in hundredths of a percent here */
        psi(s, "some", d->last_reading.some_avg10,
            d->last_reading.some_total_us);
        psi(s, "full", d->last_reading.full_avg10,
            d->last_reading.full_total_us);
    }
    vm_gauge(s, d, "vtmem_vm_memory_held_bytes",
             "Memory the VM's device reported holding", vm_held);
    vm_gauge(s, d, "vtmem_vm_lease_bytes",
             "What the VM's device may hold (its charge to the pool)",
             vm_lease);
    vm_gauge(s, d, "vtmem_vm_limit_bytes",
             "The limit given to the VM's device (a raise: once sent)",
             vm_limit);
    vm_gauge(s, d, "vtmem_vm_target_bytes",
             "The VM's share by the policy", vm_target);
    vm_gauge(s, d, "vtmem_vm_wanted_bytes",
             "The VM's demand as its device reported it", vm_wanted);
    vm_gauge(s, d, "vtmem_vm_weight", "The VM's weight", vm_weight);
    vm_gauge(s, d, "vtmem_vm_stored_pages",
             "Pages the VM's device stores (as of its last report)",
             vm_stored);
    vm_metric(s, d, "vtmem_vm_refusals_total", "counter",
              "Puts the VM's device refused for its limit (as of its last"
              " report; 0 from devices that do not report it)", vm_refusals);
    vm_gauge(s, d, "vtmem_vm_pressed",
             "1: its puts are being refused: it borrows lease from idle VMs",
             vm_pressed);
    vm_gauge(s, d, "vtmem_vm_connected",
             "1: the device is connected; 0: a ghost (its process lives)",
             vm_connected);
    return g_string_free(s, FALSE);
}

void metrics_refresh(Daemon *d)
{
    char *text = vtmemd_metrics_render(d);
    char *old;

    g_mutex_lock(&d->metrics->lock);
    old = d->metrics->snapshot;
    d->metrics->snapshot = text;
    g_mutex_unlock(&d->metrics->lock);
    g_free(old);
}

static gboolean metrics_tick(gpointer data)
{
    metrics_refresh(data);
    return G_SOURCE_CONTINUE;
}

/* MHD's thread. */
static enum MHD_Result serve(void *cls, struct MHD_Connection *conn,
                             const char *url, const char *method,
                             const char *version, const char *upload,
                             size_t *upload_size, void **req)
{
    VtmemdMetrics *m = cls;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    unsigned int code = MHD_HTTP_OK;
    char *body;

    (void)version;
    (void)upload;
    (void)upload_size;
    (void)req;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        body = g_strdup("only GET\n");
    } else if (strcmp(url, "/metrics") != 0) {
        code = MHD_HTTP_NOT_FOUND;
        body = g_strdup("see /metrics\n");
    } else {
        g_mutex_lock(&m->lock);
        body = g_strdup(m->snapshot);
        g_mutex_unlock(&m->lock);
    }
    resp = MHD_create_response_from_buffer_with_free_callback(
        strlen(body), body, g_free);
    if (!resp) {
        g_free(body);
        return MHD_NO;
    }
    if (code == MHD_HTTP_OK) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8");
    }
    ret = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* "ADDR:PORT" (IPv4) or ":PORT" (loopback). */
static bool parse_listen(const char *spec, struct sockaddr_in *sa,
                         GError **error)
{
    const char *colon = strrchr(spec, ':');
    g_autofree char *addr = NULL;
    uint64_t port;

    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    if (!colon || !vtmem_pool_parse_u64(colon + 1, &port) || port == 0 ||
        port > 65535) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "--metrics-listen: ADDR:PORT expected: %s", spec);
        return false;
    }
    addr = colon == spec ? g_strdup("127.0.0.1")
                         : g_strndup(spec, (gsize)(colon - spec));
    if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "--metrics-listen: not an IPv4 address: %s", addr);
        return false;
    }
    sa->sin_port = htons((uint16_t)port);
    return true;
}

bool metrics_start(Daemon *d, const char *spec, GError **error)
{
    struct sockaddr_in sa;
    VtmemdMetrics *m;

    if (!parse_listen(spec, &sa, error)) {
        return false;
    }
    m = g_new0(VtmemdMetrics, 1);
    g_mutex_init(&m->lock);
    d->metrics = m;
    metrics_refresh(d);
    m->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                              MHD_USE_ERROR_LOG, 0, NULL, NULL, serve, m,
                              MHD_OPTION_SOCK_ADDR, &sa,
                              MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned int)METRICS_MAX_CONNS,
                              MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned int)METRICS_TIMEOUT_S,
                              MHD_OPTION_END);
    if (!m->mhd) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "--metrics-listen %s: cannot listen", spec);
        metrics_stop(d);
        return false;
    }
    m->refresh_src = g_timeout_add(METRICS_REFRESH_MS, metrics_tick, d);
    g_message("metrics on http://%s/metrics", spec);
    return true;
}

void metrics_stop(Daemon *d)
{
    VtmemdMetrics *m = d->metrics;

    if (!m) {
        return;
    }
    if (m->mhd) {
        MHD_stop_daemon(m->mhd);
    }
    if (m->refresh_src) {
        g_source_remove(m->refresh_src);
    }
    g_mutex_clear(&m->lock);
    g_free(m->snapshot);
    g_free(m);
    d->metrics = NULL;
}
