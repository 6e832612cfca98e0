/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd --auto-pool: reads the memory state of the VMs' cgroup and the
 * host on a timer and sets the pool limit by vtmem_autopool_decide()
 * (vtmem-autopool.c). Cgroup v2 files; on a hybrid host (the memory
 * controller on v1) the v1 memory cgroup of the same path is read.
 */
#define G_LOG_DOMAIN "vtmemd"
#define G_LOG_USE_STRUCTURED 1

#include "vtmemd.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CGROUP_ROOT         "/sys/fs/cgroup"
#define CGROUP_HYBRID_V2    CGROUP_ROOT "/unified"
#define CGROUP_HYBRID_MEM   CGROUP_ROOT "/memory"
#define HOST_PSI            "/proc/pressure/memory"
/* cgroup v1 writes "no limit" as the largest page-aligned long */
#define V1_NO_LIMIT         (1ULL << 62)

static bool file_exists(const char *dir, const char *name)
{
    g_autofree char *p = g_build_filename(dir, name, NULL);

    return access(p, R_OK) == 0;
}

/* A small sysfs/procfs file, NUL-terminated. */
static char *read_small(const char *dir, const char *name, GError **error)
{
    g_autofree char *p = dir ? g_build_filename(dir, name, NULL)
                             : g_strdup(name);
    char *text = NULL;

    if (!g_file_get_contents(p, &text, NULL, error)) {
        return NULL;
    }
    return text;
}

/* "max" or a number; none (UINT64_MAX) for v1's "unlimited". */
static bool read_limit(const char *dir, const char *name, uint64_t *out,
                       GError **error)
{
    g_autofree char *t = read_small(dir, name, error);

    if (!t) {
        return false;
    }
    g_strstrip(t);
    if (strcmp(t, "max") == 0) {
        *out = UINT64_MAX;
        return true;
    }
    if (!vtmem_pool_parse_u64(t, out)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s/%s: not a number: %s", dir, name, t);
        return false;
    }
    if (*out >= V1_NO_LIMIT) {
        *out = UINT64_MAX;
    }
    return true;
}

/* "12.34" -> 1234 */
static bool parse_centi(const char *s, uint32_t *out)
{
    unsigned int whole, frac;
    int n = 0;

    if (sscanf(s, "%u.%2u%n", &whole, &frac, &n) != 2 || whole > 100 ||
        frac > 99) {
        return false;
    }
    *out = whole * 100 + frac;
    return true;
}

/*
 * memory.pressure / /proc/pressure/memory:
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 */
bool vtmemd_parse_psi(const char *text, VtmemMemReading *r)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    bool some = false, full = false;

    for (int i = 0; lines[i]; i++) {
        char kind[8];
        char avg10[16];
        unsigned long long total;
        uint32_t centi;

        if (sscanf(lines[i], "%7s avg10=%15s avg60=%*s avg300=%*s"
                   " total=%llu", kind, avg10, &total) != 3 ||
            !parse_centi(avg10, &centi)) {
            continue;
        }
        if (strcmp(kind, "some") == 0) {
            r->some_avg10 = centi;
            r->some_total_us = total;
            some = true;
        } else if (strcmp(kind, "full") == 0) {
            r->full_avg10 = centi;
            r->full_total_us = total;
            full = true;
        }
    }
    return some && full;
}

static bool read_meminfo(uint64_t *avail, GError **error)
{
    g_autofree char *t = read_small(NULL, "/proc/meminfo", error);
    const char *p;
    unsigned long long kb;

    if (!t) {
        return false;
    }
    p = strstr(t, "MemAvailable:");
    if (!p || sscanf(p, "MemAvailable: %llu kB", &kb) != 1) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "/proc/meminfo: no MemAvailable");
        return false;
    }
    *avail = kb * 1024;
    return true;
}

bool vtmemd_read_memory(const VtmemdCgroup *cg, VtmemMemReading *r,
                        GError **error)
{
    g_autofree char *psi = NULL;

    memset(r, 0, sizeof(*r));
    r->now_ms = (uint64_t)(g_get_monotonic_time() / 1000);
    r->cg_max = r->cg_high = UINT64_MAX;
    if (!read_meminfo(&r->mem_available, error)) {
        return false;
    }
    psi = read_small(cg->psi_dir, cg->psi_dir ? "memory.pressure" : HOST_PSI,
                     error);
    if (!psi) {
        return false;
    }
    if (!vtmemd_parse_psi(psi, r)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                    "%s: not PSI", cg->psi_dir ? cg->psi_dir : HOST_PSI);
        return false;
    }
    if (cg->v2_memory) {
        r->has_cgroup = true;
        return read_limit(cg->mem_dir, "memory.current", &r->cg_current,
                          error) &&
               read_limit(cg->mem_dir, "memory.max", &r->cg_max, error) &&
               read_limit(cg->mem_dir, "memory.high", &r->cg_high, error);
    }
    if (cg->mem_dir) {
        r->has_cgroup = true;
        return read_limit(cg->mem_dir, "memory.usage_in_bytes",
                          &r->cg_current, error) &&
               read_limit(cg->mem_dir, "memory.limit_in_bytes", &r->cg_max,
                          error);
    }
    return true;
}

/*
 * Which files to read for the cgroup at path (NULL: libvirt's
 * machine.slice if there is one, else the whole host).
 */
bool vtmemd_cgroup_resolve(const char *path, VtmemdCgroup *cg,
                           GError **error)
{
    const char *defaults[] = { CGROUP_ROOT "/machine.slice",
                               CGROUP_HYBRID_V2 "/machine.slice" };

    memset(cg, 0, sizeof(*cg));
    if (!path) {
        for (size_t i = 0; i < G_N_ELEMENTS(defaults); i++) {
            if (file_exists(defaults[i], "memory.pressure")) {
                path = defaults[i];
                break;
            }
        }
        if (!path) {
            return true;    /* the whole host */
        }
    }
    if (!file_exists(path, "memory.pressure")) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "%s: no memory.pressure (not a cgroup v2 directory,"
                    " or PSI is off)", path);
        return false;
    }
    cg->psi_dir = g_strdup(path);
    if (file_exists(path, "memory.current")) {
        cg->v2_memory = true;
        cg->mem_dir = g_strdup(path);
    } else if (g_str_has_prefix(path, CGROUP_HYBRID_V2 "/")) {
        g_autofree char *v1 = g_strconcat(CGROUP_HYBRID_MEM,
                                          path + strlen(CGROUP_HYBRID_V2),
                                          NULL);

        if (file_exists(v1, "memory.usage_in_bytes")) {
            cg->mem_dir = g_steal_pointer(&v1);
        }
    }
    return true;
}

void vtmemd_cgroup_clear(VtmemdCgroup *cg)
{
    g_clear_pointer(&cg->psi_dir, g_free);
    g_clear_pointer(&cg->mem_dir, g_free);
}

static void autopool_tick_once(Daemon *d)
{
    g_autoptr(GError) error = NULL;
    VtmemMemReading r;
    VtmemAutoPoolDecision dec;
    VtmemAutoPoolState next;
    uint64_t old = d->pool_limit;

    if (!vtmemd_read_memory(&d->cgroup, &r, &error)) {
        gint64 now = g_get_monotonic_time();

        if (now - d->autopool_warned >=
            VTMEMD_LOG_INTERVAL_S * G_USEC_PER_SEC) {
            d->autopool_warned = now;
            g_warning("auto pool: cannot read memory state: %s; pool stays"
                      " at %" G_GUINT64_FORMAT, error->message, old);
        }
        return;
    }
    r.charged = total_charge(d);
    d->autopool_cfg.ceiling = d->pool_ceiling;
    d->autopool_state.pool = d->pool_limit;
    dec = vtmem_autopool_decide(&d->autopool_cfg, &d->autopool_state, &r,
                                &next);
    d->autopool_state = next;
    d->last_reading = r;
    d->last_pressure = dec.pressure;
    d->n_autopool++;
    if (dec.pool != old || dec.reason != d->last_reason) {
        g_message("auto pool: %" G_GUINT64_FORMAT " -> %" G_GUINT64_FORMAT
                  ": %s (pressure %u.%02u%%, goal %" G_GUINT64_FORMAT
                  ", available %" G_GUINT64_FORMAT ", cgroup %" G_GUINT64_FORMAT
                  ", charged %" G_GUINT64_FORMAT ")",
                  old, dec.pool, vtmem_autopool_reason_str(dec.reason),
                  dec.pressure / 100, dec.pressure % 100, dec.goal,
                  r.mem_available, r.cg_current, r.charged);
    } else {
        g_debug("auto pool: %" G_GUINT64_FORMAT ": %s (pressure %u.%02u%%)",
                dec.pool, vtmem_autopool_reason_str(dec.reason),
                dec.pressure / 100, dec.pressure % 100);
    }
    d->last_reason = dec.reason;
    if (dec.pool != old) {
        d->pool_limit = dec.pool;
        d->n_autopool_changes++;
        daemon_schedule_rebalance(d);
    }
}

static gboolean autopool_tick(gpointer data)
{
    autopool_tick_once(data);
    return G_SOURCE_CONTINUE;
}

void autopool_start(Daemon *d, guint interval_ms)
{
    d->last_reason = (VtmemAutoPoolReason)-1;
    autopool_tick_once(d);
    d->autopool_src = g_timeout_add(interval_ms, autopool_tick, d);
}
