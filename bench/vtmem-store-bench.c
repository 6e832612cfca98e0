/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmem-store-bench: the page store against plain LZ4 on the same pages.
 *
 * Pages: anonymous memory of real programs this benchmark starts itself
 * (python3 importing much of its standard library; python3 compiling the
 * standard library's sources), captured from /proc/PID/mem while the
 * program is stopped, only pages that are present in RAM (pagemap); plus a
 * synthetic mix (zero, same-filled, text, random, partly random).
 *
 * Figures, per data set:
 *   put_vs_compress   store put MB/s / LZ4_compress_default MB/s (1 thread)
 *   get_vs_decompress store get MB/s / LZ4_decompress_safe MB/s (1 thread)
 *   metadata_per_page metadata_bytes / stored_pages after filling
 *   space_efficiency  (compressed+raw payload) / memory_held, after filling,
 *                     invalidating a random half and compacting
 *   rss_efficiency_*  payload / what the process's resident memory grew by
 *                     since just before the store was made (after a
 *                     malloc_trim, so earlier runs' freed heap is not
 *                     reused unseen): after filling, after invalidating a
 *                     random half, after compacting. Memory the process
 *                     keeps after the store freed it shows up here.
 *   compact_step_*    that compaction run as steps of COMPACT_STEP_SLOTS
 *                     slots: steps, longest step, all steps (microseconds)
 *   put_scaling, get_scaling  2 threads on disjoint slot halves vs 1 thread
 * Baselines and store runs alternate, each repeated --reps times; the
 * figures use medians and the JSON also carries min/max of every ratio.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <glib.h>
#include <lz4.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vtmem-page.h"
#include "vtmem-store.h"
#include "vtmem-store-internal.h"

#define PAGE VTMEM_STORE_PAGE_SIZE
#define BLOCK 256
#define COMPACT_STEP_SLOTS 4096

static int reps = 5;
static gint64 max_real_pages = 60000;
static gint64 synthetic_pages = 20000;
static gint64 seed = 12345;
static char *json_path;

static GOptionEntry options[] = {
    { "json", 'j', 0, G_OPTION_ARG_FILENAME, &json_path,
      "write the figures as JSON to FILE", "FILE" },
    { "reps", 'r', 0, G_OPTION_ARG_INT, &reps, "repetitions (5)", "N" },
    { "max-real-pages", 0, 0, G_OPTION_ARG_INT64, &max_real_pages,
      "cap on captured real pages (60000)", "N" },
    { "synthetic-pages", 0, 0, G_OPTION_ARG_INT64, &synthetic_pages,
      "synthetic pages (20000)", "N" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed, "seed (12345)", "N" },
    G_OPTION_ENTRY_NULL,
};

typedef struct PageSet {
    const char *name;
    unsigned char *data;
    size_t n, cap;
} PageSet;

static void set_add(PageSet *s, const void *page)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->data = g_realloc(s->data, s->cap * PAGE);
    }
    memcpy(s->data + s->n * PAGE, page, PAGE);
    s->n++;
}

static inline const unsigned char *page_at(const PageSet *s, size_t i)
{
    return s->data + i * PAGE;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- capturing real programs ---- */

static const char import_script[] =
    "import importlib, sys, time\n"
    "mods = '''asyncio email.mime.multipart http.server http.client json re\n"
    " xml.etree.ElementTree xml.dom.minidom sqlite3 decimal fractions\n"
    " statistics unittest argparse logging.handlers collections typing\n"
    " dataclasses pathlib subprocess multiprocessing concurrent.futures\n"
    " urllib.request html.parser csv zipfile tarfile gzip bz2 lzma pickle\n"
    " shelve difflib textwrap inspect ast dis tokenize pydoc doctest calendar\n"
    " datetime zoneinfo ipaddress socketserver smtplib imaplib ftplib uuid\n"
    " hashlib hmac secrets random heapq bisect array struct codecs locale\n"
    " gettext configparser plistlib mailbox wave colorsys optparse pdb\n"
    " profile pstats timeit trace tracemalloc sysconfig venv ensurepip\n"
    " unittest.mock email.parser xmlrpc.client wsgiref.simple_server\n"
    " ctypes curses sched selectors ssl string unicodedata'''.split()\n"
    "for m in mods:\n"
    "    try: importlib.import_module(m)\n"
    "    except Exception: pass\n"
    "data = [{'i': i, 's': str(i) * 3, 'f': i / 3.0} for i in range(150000)]\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n";

static const char compile_script[] =
    "import os, sys, sysconfig, time, collections\n"
    "root = sysconfig.get_paths()['stdlib']\n"
    "srcs, codes, words, total = [], [], collections.Counter(), 0\n"
    "for d, _, files in os.walk(root):\n"
    "    for f in sorted(files):\n"
    "        if not f.endswith('.py') or total > 40 << 20: continue\n"
    "        p = os.path.join(d, f)\n"
    "        try:\n"
    "            s = open(p, encoding='utf-8').read()\n"
    "            codes.append(compile(s, p, 'exec'))\n"
    "        except Exception: continue\n"
    "        srcs.append(s); total += len(s); words.update(s.split())\n"
    "print('ready', flush=True)\n"
    "time.sleep(600)\n";

/* Append the present anonymous writable pages of pid to set. */
static size_t capture_pid(pid_t pid, PageSet *set, size_t max_pages)
{
    char path[64];
    size_t got = 0;

    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "r");
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int mem = open(path, O_RDONLY);
    snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
    int pagemap = open(path, O_RDONLY);
    if (!maps || mem < 0 || pagemap < 0) {
        g_printerr("capture %d: %s\n", (int)pid, g_strerror(errno));
        goto out;
    }
    char line[512];
    unsigned char page[PAGE];
    while (fgets(line, sizeof(line), maps) && got < max_pages) {
        unsigned long start, end, inode;
        char perms[8], name[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %255s", &start, &end, perms,
                   &inode, name) < 4) {
            continue;
        }
        /* anonymous private writable: no file, or [heap]/[stack]/[anon:] */
        if (strcmp(perms, "rw-p") != 0 || inode != 0 ||
            (name[0] && name[0] != '[') || strncmp(name, "[v", 2) == 0) {
            continue;
        }
        for (unsigned long a = start; a < end && got < max_pages; a += PAGE) {
            uint64_t pm;
            if (pread(pagemap, &pm, 8, (off_t)(a / PAGE * 8)) != 8 ||
                !(pm >> 63 & 1)) {
                continue;  /* not in RAM: nothing a swap device would see */
            }
            if (pread(mem, page, PAGE, (off_t)a) == PAGE) {
                set_add(set, page);
                got++;
            }
        }
    }
out:
    if (maps) {
        fclose(maps);
    }
    if (mem >= 0) {
        close(mem);
    }
    if (pagemap >= 0) {
        close(pagemap);
    }
    return got;
}

static size_t capture_program(const char *script, PageSet *set,
                              size_t max_pages)
{
    char *argv[] = { "python3", "-c", (char *)script, NULL };
    GError *err = NULL;
    GPid pid;
    int out_fd;
    size_t got = 0;

    if (!g_spawn_async_with_pipes(NULL, argv, NULL,
                                  G_SPAWN_SEARCH_PATH |
                                  G_SPAWN_DO_NOT_REAP_CHILD,
                                  NULL, NULL, &pid, NULL, &out_fd, NULL,
                                  &err)) {
        g_printerr("spawn python3: %s\n", err->message);
        g_error_free(err);
        return 0;
    }
    char buf[16] = "";
    ssize_t r = read(out_fd, buf, sizeof(buf) - 1);
    if (r > 0 && strncmp(buf, "ready", 5) == 0) {
        kill(pid, SIGSTOP);  /* a still image of its memory */
        waitpid(pid, NULL, WUNTRACED);
        got = capture_pid(pid, set, max_pages);
    } else {
        g_printerr("python3 did not get ready\n");
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(out_fd);
    g_spawn_close_pid(pid);
    return got;
}

/* ---- synthetic pages ---- */

static void synthetic(PageSet *set, size_t n, GRand *rng)
{
    static const char *const words[] = {
        "the", "page", "of", "memory", "swap", "guest", "kernel", "int",
        "return", "struct", "virtio", "0x0000", "NULL", "if", "else", "for",
    };
    unsigned char page[PAGE];

    for (size_t i = 0; i < n; i++) {
        unsigned kind = g_rand_int_range(rng, 0, 100);
        if (kind < 25) {                     /* zero */
            memset(page, 0, PAGE);
        } else if (kind < 35) {              /* same-filled word */
            uint64_t w = ((uint64_t)g_rand_int(rng) << 32) | g_rand_int(rng);
            vtmem_page_fill(page, w);
        } else if (kind < 70) {              /* text */
            size_t pos = 0;
            while (pos < PAGE) {
                const char *w = words[g_rand_int_range(rng, 0, 16)];
                size_t len = MIN(strlen(w), PAGE - pos);
                memcpy(page + pos, w, len);
                pos += len;
                if (pos < PAGE) {
                    page[pos++] = g_rand_int_range(rng, 0, 8) ? ' ' : '\n';
                }
            }
        } else if (kind < 85) {              /* random */
            for (size_t j = 0; j < PAGE; j += 4) {
                guint32 v = g_rand_int(rng);
                memcpy(page + j, &v, 4);
            }
        } else {                             /* random prefix, zero tail */
            size_t len = g_rand_int_range(rng, 1, PAGE);
            memset(page, 0, PAGE);
            for (size_t j = 0; j < len; j++) {
                page[j] = (unsigned char)g_rand_int(rng);
            }
        }
        set_add(set, page);
    }
}

/* ---- measurements ---- */

typedef struct Samples {
    double v[64];
    int n;
} Samples;

static void sample(Samples *s, double v)
{
    if (s->n < 64) {
        s->v[s->n++] = v;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const Samples *s)
{
    double v[64];
    memcpy(v, s->v, sizeof(double) * s->n);
    qsort(v, s->n, sizeof(double), cmp_double);
    return s->n % 2 ? v[s->n / 2] : (v[s->n / 2 - 1] + v[s->n / 2]) / 2;
}

static double smin(const Samples *s)
{
    double m = s->v[0];
    for (int i = 1; i < s->n; i++) {
        m = MIN(m, s->v[i]);
    }
    return m;
}

static double smax(const Samples *s)
{
    double m = s->v[0];
    for (int i = 1; i < s->n; i++) {
        m = MAX(m, s->v[i]);
    }
    return m;
}

typedef struct Compressed {
    char *buf;
    size_t *off;
    int *len;
    size_t total;
} Compressed;

/* The baseline: what any store must do, and no more. */
static double raw_compress(const PageSet *s, Compressed *c, size_t first,
                           size_t count)
{
    char scratch[LZ4_COMPRESSBOUND(PAGE)];
    /* volatile: keeps the timed work from being optimised away */
    volatile int sink = 0;
    double t = now();
    for (size_t i = first; i < first + count; i++) {
        int n = LZ4_compress_default((const char *)page_at(s, i), scratch,
                                     PAGE, sizeof(scratch));
        sink += n;
        if (c) {
            c->len[i] = n;
            memcpy(c->buf + c->off[i], scratch, n);
        }
    }
    (void)sink;
    return now() - t;
}

static double raw_decompress(const PageSet *s, const Compressed *c,
                             size_t first, size_t count)
{
    char out[PAGE];
    /* volatile: keeps the timed work from being optimised away */
    volatile int sink = 0;
    (void)s;
    double t = now();
    for (size_t i = first; i < first + count; i++) {
        sink += LZ4_decompress_safe(c->buf + c->off[i], out, c->len[i], PAGE);
        sink += out[i % PAGE];
    }
    (void)sink;
    return now() - t;
}

static double store_put(VtmemStore *st, const PageSet *s, size_t first,
                        size_t count)
{
    double t = now();
    for (size_t i = first; i < first + count; i++) {
        if (vtmem_store_put(st, i, page_at(s, i)) != VTMEM_OK) {
            g_printerr("put %zu failed\n", i);
            exit(1);
        }
    }
    return now() - t;
}

static double store_get(VtmemStore *st, const PageSet *s, size_t first,
                        size_t count)
{
    unsigned char out[PAGE];
    /* volatile: keeps the timed work from being optimised away */
    volatile int sink = 0;
    (void)s;
    double t = now();
    for (size_t i = first; i < first + count; i++) {
        if (vtmem_store_get(st, i, out) != VTMEM_OK) {
            g_printerr("get %zu failed\n", i);
            exit(1);
        }
        sink += out[i % PAGE];
    }
    (void)sink;
    return now() - t;
}

typedef enum { OP_PUT, OP_GET, OP_COMPRESS, OP_DECOMPRESS } Op;

typedef struct Worker {
    Op op;
    VtmemStore *store;
    const PageSet *set;
    const Compressed *comp;
    size_t first, count;
    GMutex *mx;
    GCond *cv;
    int *ready;
    double t0, t1;
    double cpu;     /* this thread's CPU seconds */
} Worker;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static gpointer worker_main(gpointer data)
{
    Worker *w = data;
    g_mutex_lock(w->mx);
    (*w->ready)++;
    g_cond_broadcast(w->cv);
    while (*w->ready < 100) {
        g_cond_wait(w->cv, w->mx);
    }
    g_mutex_unlock(w->mx);
    w->t0 = now();
    double c0 = thread_cpu();
    switch (w->op) {
    case OP_PUT:
        store_put(w->store, w->set, w->first, w->count);
        break;
    case OP_GET:
        store_get(w->store, w->set, w->first, w->count);
        break;
    case OP_COMPRESS:
        raw_compress(w->set, NULL, w->first, w->count);
        break;
    case OP_DECOMPRESS:
        raw_decompress(w->set, w->comp, w->first, w->count);
        break;
    }
    w->t1 = now();
    w->cpu = thread_cpu() - c0;
    return NULL;
}

/* Wall time of nthreads splitting [0, n) into equal disjoint ranges. */
static double run_threads(Op op, VtmemStore *st, const PageSet *s,
                          const Compressed *c, int nthreads, double *cpu)
{
    GMutex mx;
    GCond cv;
    int ready = 0;
    Worker w[2];
    GThread *th[2];

    g_mutex_init(&mx);
    g_cond_init(&cv);
    for (int i = 0; i < nthreads; i++) {
        w[i] = (Worker) { op, st, s, c, s->n * i / nthreads,
                          s->n * (i + 1) / nthreads - s->n * i / nthreads,
                          &mx, &cv, &ready, 0, 0, 0 };
        th[i] = g_thread_new("bench", worker_main, &w[i]);
    }
    g_mutex_lock(&mx);
    while (ready < nthreads) {
        g_cond_wait(&cv, &mx);
    }
    ready = 100;  /* go */
    g_cond_broadcast(&cv);
    g_mutex_unlock(&mx);
    double t0 = 1e300, t1 = 0;
    *cpu = 0;
    for (int i = 0; i < nthreads; i++) {
        g_thread_join(th[i]);
        t0 = MIN(t0, w[i].t0);
        t1 = MAX(t1, w[i].t1);
        *cpu += w[i].cpu;
    }
    g_cond_clear(&cv);
    g_mutex_clear(&mx);
    return t1 - t0;
}

typedef struct Result {
    Samples put_ratio, refill_ratio, get_ratio, put_scaling, get_scaling;
    Samples lz4c_scaling, lz4d_scaling, put_cpu_scaling, get_cpu_scaling;
    double compress_mbs, decompress_mbs, put_mbs, get_mbs;
    double meta_per_page, efficiency, efficiency_before, ratio;
    double rss_fill, rss_half, rss_compact;  /* payload / RSS growth */
    uint64_t compact_steps;
    double step_longest_us, steps_total_us;
    VtmemStoreStats filled, compacted;
    size_t same, raw;
} Result;

/* The process's resident memory now (/proc/self/statm), in bytes. */
static uint64_t rss_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (!f || fscanf(f, "%llu %llu", &size, &resident) != 2) {
        g_printerr("cannot read /proc/self/statm\n");
        exit(1);
    }
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGE_SIZE);
}

static double rss_efficiency(VtmemStore *st, uint64_t rss0)
{
    VtmemStoreStats now;
    uint64_t rss = rss_bytes();

    vtmem_store_get_stats(st, &now);
    return rss > rss0 ? (double)(now.compressed_bytes + now.raw_bytes) /
                        (double)(rss - rss0) : 0;
}

static double mbs(size_t n, double secs)
{
    return n * (double)PAGE / secs / 1e6;
}

static void run_set(const PageSet *s, Result *r, GString *json, bool last)
{
    Compressed c = { 0 };
    Samples tc = { 0 }, td = { 0 }, tp = { 0 }, tg = { 0 };
    size_t n = s->n;

    memset(r, 0, sizeof(*r));
    c.off = g_new(size_t, n);
    c.len = g_new(int, n);
    for (size_t i = 0; i < n; i++) {
        c.off[i] = i * LZ4_COMPRESSBOUND(PAGE);
    }
    c.buf = g_malloc(n * (size_t)LZ4_COMPRESSBOUND(PAGE));
    raw_compress(s, &c, 0, n);  /* also warms caches and the page set */
    for (size_t i = 0; i < n; i++) {
        c.total += c.len[i];
    }

    for (int rep = 0; rep < reps; rep++) {
        /*
         * 1 thread: baseline and store alternate in blocks of 256 pages
         * (same pages, same order), so that load from other programs hits
         * both alike; which goes first in a block alternates too, as the
         * first one also pulls the pages into the cache.
         */
        VtmemStore *st = vtmem_store_new(n, UINT64_MAX);
        double a = 0, b = 0, d = 0, g = 0, a2 = 0, b2 = 0;
        for (size_t i = 0, k = 0; i < n; i += BLOCK, k++) {
            size_t cnt = MIN(BLOCK, n - i);
            if (k % 2) {
                a += raw_compress(s, NULL, i, cnt);
                b += store_put(st, s, i, cnt);
            } else {
                b += store_put(st, s, i, cnt);
                a += raw_compress(s, NULL, i, cnt);
            }
        }
        for (size_t i = 0, k = 0; i < n; i += BLOCK, k++) {
            size_t cnt = MIN(BLOCK, n - i);
            if (k % 2) {
                d += raw_decompress(s, &c, i, cnt);
                g += store_get(st, s, i, cnt);
            } else {
                g += store_get(st, s, i, cnt);
                d += raw_decompress(s, &c, i, cnt);
            }
        }
        /* again into the same slots: memory is reused, no page faults */
        for (size_t i = 0, k = 0; i < n; i += BLOCK, k++) {
            size_t cnt = MIN(BLOCK, n - i);
            if (k % 2) {
                a2 += raw_compress(s, NULL, i, cnt);
                b2 += store_put(st, s, i, cnt);
            } else {
                b2 += store_put(st, s, i, cnt);
                a2 += raw_compress(s, NULL, i, cnt);
            }
        }
        sample(&r->refill_ratio, a2 / b2);
        sample(&tc, a);
        sample(&tp, b);
        sample(&td, d);
        sample(&tg, g);
        sample(&r->put_ratio, a / b);
        sample(&r->get_ratio, d / g);
        if (rep == 0) {
            vtmem_store_get_stats(st, &r->filled);
        }
        vtmem_store_free(st);

        /* 1 vs 2 threads, disjoint halves */
        VtmemStore *s1 = vtmem_store_new(n, UINT64_MAX);
        VtmemStore *s2 = vtmem_store_new(n, UINT64_MAX);
        double cp1, cp2, cg1, cg2, cc1, cc2, cd1, cd2;
        double p1 = run_threads(OP_PUT, s1, s, NULL, 1, &cp1);
        double p2 = run_threads(OP_PUT, s2, s, NULL, 2, &cp2);
        double g1 = run_threads(OP_GET, s1, s, NULL, 1, &cg1);
        double g2 = run_threads(OP_GET, s2, s, NULL, 2, &cg2);
        sample(&r->put_scaling, p1 / p2);
        sample(&r->get_scaling, g1 / g2);
        /*
         * 2 x CPU(1 thread) / CPU(2 threads): 2.0 when sharing the store
         * costs no extra CPU (cache-line bouncing, lock spinning). Blocked
         * time is not CPU time, so this complements, not replaces, the
         * wall-clock figure on a machine shared with other work.
         */
        sample(&r->put_cpu_scaling, 2 * cp1 / cp2);
        sample(&r->get_cpu_scaling, 2 * cg1 / cg2);
        vtmem_store_free(s1);
        vtmem_store_free(s2);
        double c1 = run_threads(OP_COMPRESS, NULL, s, &c, 1, &cc1);
        double c2 = run_threads(OP_COMPRESS, NULL, s, &c, 2, &cc2);
        double d1 = run_threads(OP_DECOMPRESS, NULL, s, &c, 1, &cd1);
        double d2 = run_threads(OP_DECOMPRESS, NULL, s, &c, 2, &cd2);
        sample(&r->lz4c_scaling, c1 / c2);
        sample(&r->lz4d_scaling, d1 / d2);
    }
    r->compress_mbs = mbs(n, median(&tc));
    r->decompress_mbs = mbs(n, median(&td));
    r->put_mbs = mbs(n, median(&tp));
    r->get_mbs = mbs(n, median(&tg));
    r->meta_per_page = (double)r->filled.metadata_bytes /
                       r->filled.stored_pages;
    r->ratio = (double)c.total / ((double)n * PAGE);

    /* Space: fill, drop a random half, compact. */
    malloc_trim(0);
    uint64_t rss0 = rss_bytes();
    VtmemStore *st = vtmem_store_new(n, UINT64_MAX);
    GRand *rng = g_rand_new_with_seed((guint32)seed);
    store_put(st, s, 0, n);
    r->rss_fill = rss_efficiency(st, rss0);
    for (size_t i = 0; i < n; i++) {
        if (g_rand_boolean(rng)) {
            vtmem_store_invalidate(st, i);
        }
    }
    r->rss_half = rss_efficiency(st, rss0);
    VtmemStoreStats before;
    vtmem_store_get_stats(st, &before);
    /* one pass, in the bounded steps a running device would take */
    for (bool done = false; !done; r->compact_steps++) {
        double t0 = now();
        done = vtmem_store_compact_step(st, COMPACT_STEP_SLOTS, NULL);
        double us = (now() - t0) * 1e6;
        r->step_longest_us = MAX(r->step_longest_us, us);
        r->steps_total_us += us;
    }
    vtmem_store_get_stats(st, &r->compacted);
    r->rss_compact = rss_efficiency(st, rss0);
    VtmemZpoolUsage u;
    vtmem_store_zpool_usage(st, &u);
    r->efficiency_before = (double)(before.compressed_bytes + before.raw_bytes)
                           / before.memory_held;
    r->efficiency = (double)(r->compacted.compressed_bytes +
                             r->compacted.raw_bytes) /
                    r->compacted.memory_held;
    /* everything left must read back intact */
    unsigned char out[PAGE];
    for (size_t i = 0; i < n; i++) {
        if (vtmem_store_get(st, i, out) == VTMEM_OK &&
            memcmp(out, page_at(s, i), PAGE) != 0) {
            g_printerr("page %zu corrupted\n", i);
            exit(1);
        }
    }
    g_rand_free(rng);
    vtmem_store_free(st);

    const VtmemStoreStats *f = &r->filled;
    printf("\n== %s: %zu pages (%.1f MiB), LZ4 ratio %.3f; store: %" PRIu64
           " same-filled, %" PRIu64 " raw, %.1f MiB payload\n",
           s->name, n, n * (double)PAGE / 1048576, r->ratio,
           f->same_filled_pages, f->raw_pages,
           (f->compressed_bytes + f->raw_bytes) / 1048576.0);
    printf("  LZ4_compress_default  %8.1f MB/s   store put %8.1f MB/s   "
           "ratio %.3f [%.3f..%.3f]  (target >= 0.93)\n",
           r->compress_mbs, r->put_mbs, median(&r->put_ratio),
           smin(&r->put_ratio), smax(&r->put_ratio));
    printf("  store put replacing every page (memory reused): ratio %.3f "
           "[%.3f..%.3f]\n", median(&r->refill_ratio),
           smin(&r->refill_ratio), smax(&r->refill_ratio));
    printf("  LZ4_decompress_safe   %8.1f MB/s   store get %8.1f MB/s   "
           "ratio %.3f [%.3f..%.3f]  (target >= 1.0)\n",
           r->decompress_mbs, r->get_mbs, median(&r->get_ratio),
           smin(&r->get_ratio), smax(&r->get_ratio));
    printf("  metadata per stored page %.2f bytes (%" PRIu64 " bytes / %"
           PRIu64 " pages)  (target <= 16)\n", r->meta_per_page,
           f->metadata_bytes, f->stored_pages);
    printf("  space efficiency %.4f after half invalidated + compact "
           "(%.4f before compact; held %" PRIu64 " -> %" PRIu64
           ", %" PRIu64 " objects moved)  (target >= 0.97)\n",
           r->efficiency, r->efficiency_before, before.memory_held,
           r->compacted.memory_held, r->compacted.compacted_objects);
    printf("  RSS efficiency (payload / process RSS growth): %.4f filled, "
           "%.4f half invalidated, %.4f compacted\n", r->rss_fill,
           r->rss_half, r->rss_compact);
    printf("  compaction in steps of %d slots: %" PRIu64 " steps, longest "
           "%.0f us, all %.0f us\n", COMPACT_STEP_SLOTS, r->compact_steps,
           r->step_longest_us, r->steps_total_us);
    printf("    where it goes: payload/slots %.4f (class rounding), "
           "slots/pages %.4f (zspage tails + free slots), pages/held %.4f "
           "(metadata); %" PRIu64 " classes, %" PRIu64 " zspages, %" PRIu64
           " partial with %" PRIu64 " free slot bytes\n",
           (double)(r->compacted.compressed_bytes + r->compacted.raw_bytes) /
           u.slot_bytes, (double)u.slot_bytes / u.page_bytes,
           (double)u.page_bytes / r->compacted.memory_held, u.classes,
           u.zspages, u.partial_zspages, u.free_slot_bytes);
    printf("  2-thread scaling: put %.3f [%.3f..%.3f]  get %.3f [%.3f..%.3f]"
           "  (target >= 1.8; raw LZ4 on this machine: compress %.3f, "
           "decompress %.3f)\n",
           median(&r->put_scaling), smin(&r->put_scaling),
           smax(&r->put_scaling), median(&r->get_scaling),
           smin(&r->get_scaling), smax(&r->get_scaling),
           median(&r->lz4c_scaling), median(&r->lz4d_scaling));
    printf("  CPU-time scaling (2 x CPU of 1 thread / CPU of 2 threads): "
           "put %.3f [%.3f..%.3f]  get %.3f [%.3f..%.3f]\n",
           median(&r->put_cpu_scaling), smin(&r->put_cpu_scaling),
           smax(&r->put_cpu_scaling), median(&r->get_cpu_scaling),
           smin(&r->get_cpu_scaling), smax(&r->get_cpu_scaling));
    printf("  scaling relative to raw LZ4's (what the machine allowed): "
           "put %.3f, get %.3f\n",
           median(&r->put_scaling) / median(&r->lz4c_scaling),
           median(&r->get_scaling) / median(&r->lz4d_scaling));

#define JS(name, smp) \
    g_string_append_printf(json, "    \"" name "\": {\"median\": %.4f, " \
                           "\"min\": %.4f, \"max\": %.4f},\n", median(smp), \
                           smin(smp), smax(smp))
    g_string_append_printf(json, "  \"%s\": {\n", s->name);
    g_string_append_printf(json, "    \"pages\": %zu,\n"
                           "    \"lz4_ratio\": %.4f,\n"
                           "    \"same_filled_pages\": %" PRIu64 ",\n"
                           "    \"raw_pages\": %" PRIu64 ",\n", n, r->ratio,
                           f->same_filled_pages, f->raw_pages);
    g_string_append_printf(json, "    \"compress_mbs\": %.1f,\n"
                           "    \"decompress_mbs\": %.1f,\n"
                           "    \"put_mbs\": %.1f,\n    \"get_mbs\": %.1f,\n",
                           r->compress_mbs, r->decompress_mbs, r->put_mbs,
                           r->get_mbs);
    JS("put_vs_compress", &r->put_ratio);
    JS("put_replace_vs_compress", &r->refill_ratio);
    JS("get_vs_decompress", &r->get_ratio);
    JS("put_scaling", &r->put_scaling);
    JS("get_scaling", &r->get_scaling);
    JS("put_cpu_scaling", &r->put_cpu_scaling);
    JS("get_cpu_scaling", &r->get_cpu_scaling);
    JS("lz4_compress_scaling", &r->lz4c_scaling);
    JS("lz4_decompress_scaling", &r->lz4d_scaling);
    g_string_append_printf(json, "    \"put_scaling_vs_lz4\": %.4f,\n"
                           "    \"get_scaling_vs_lz4\": %.4f,\n",
                           median(&r->put_scaling) / median(&r->lz4c_scaling),
                           median(&r->get_scaling) / median(&r->lz4d_scaling));
    g_string_append_printf(json, "    \"metadata_per_page\": %.3f,\n"
                           "    \"metadata_bytes\": %" PRIu64 ",\n"
                           "    \"stored_pages\": %" PRIu64 ",\n"
                           "    \"space_efficiency\": %.4f,\n"
                           "    \"space_efficiency_before_compact\": %.4f,\n"
                           "    \"rss_efficiency_filled\": %.4f,\n"
                           "    \"rss_efficiency_half_invalidated\": %.4f,\n"
                           "    \"rss_efficiency_compacted\": %.4f,\n"
                           "    \"compact_steps\": %" PRIu64 ",\n"
                           "    \"compact_step_longest_us\": %.1f,\n"
                           "    \"compact_steps_total_us\": %.1f,\n"
                           "    \"memory_held_after_compact\": %" PRIu64 "\n",
                           r->meta_per_page, f->metadata_bytes,
                           f->stored_pages, r->efficiency,
                           r->efficiency_before, r->rss_fill, r->rss_half,
                           r->rss_compact, r->compact_steps,
                           r->step_longest_us, r->steps_total_us,
                           r->compacted.memory_held);
    g_string_append_printf(json, "  }%s\n", last ? "" : ",");
    g_free(c.buf);
    g_free(c.off);
    g_free(c.len);
}

int main(int argc, char **argv)
{
    GError *err = NULL;
    GOptionContext *ctx = g_option_context_new("- vtmem page store benchmark");
    g_option_context_add_main_entries(ctx, options, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        g_printerr("%s\n", err->message);
        return 2;
    }
    g_option_context_free(ctx);
    if (reps < 1 || reps > 64) {
        g_printerr("--reps must be 1..64\n");
        return 2;
    }

    PageSet real = { .name = "real" }, mixed = { .name = "mixed" };
    size_t a = capture_program(import_script, &real, max_real_pages / 2);
    size_t b = capture_program(compile_script, &real, max_real_pages - a);
    printf("captured %zu pages from python3 (stdlib imports) and %zu from "
           "python3 (stdlib compile)\n", a, b);
    if (real.n == 0) {
        g_printerr("no real pages captured (root needed for /proc/PID/mem)\n");
        return 1;
    }
    GRand *rng = g_rand_new_with_seed((guint32)seed);
    for (size_t i = 0; i < real.n; i++) {
        set_add(&mixed, page_at(&real, i));
    }
    synthetic(&mixed, synthetic_pages, rng);
    g_rand_free(rng);

    GString *json = g_string_new("{\n");
    g_string_append_printf(json, "  \"reps\": %d,\n"
                           "  \"seed\": %" G_GINT64_FORMAT ",\n", reps, seed);

    Result r;
    run_set(&real, &r, json, false);
    run_set(&mixed, &r, json, true);
    g_string_append(json, "}\n");
    if (json_path) {
        if (!g_file_set_contents(json_path, json->str, json->len, &err)) {
            g_printerr("%s\n", err->message);
            return 1;
        }
        printf("\nJSON written to %s\n", json_path);
    }
    g_string_free(json, TRUE);
    g_free(real.data);
    g_free(mixed.data);
    return 0;
}
