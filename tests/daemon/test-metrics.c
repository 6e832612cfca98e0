/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd --metrics-listen: scraped and parsed by prometheus_client's text
 * parser (metrics-parse.py), values checked against STATUS; stalled
 * scrapers do not stop the daemon.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "vtmem-line-conn.h"
#include "vtmemd-harness.h"

#define UUID_A "11111111-2222-3333-4444-555555555555"
#define UUID_B "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
#define NAME_B "vm \"b\" \\ x"

static bool reply_end(const char *line)
{
    return strcmp(line, "END") == 0 || g_str_has_prefix(line, "ERR");
}

static GStrv status(const char *sock)
{
    g_autoptr(GError) err = NULL;
    GStrv lines = vtmem_line_request(sock, "STATUS", reply_end, 10000, &err);

    g_assert_no_error(err);
    return lines;
}

/* key=<number> in a STATUS line */
static uint64_t field(const char *line, const char *key)
{
    g_autofree char *pat = g_strdup_printf(" %s=", key);
    const char *p = strstr(line, pat);

    g_assert_nonnull(p);
    return g_ascii_strtoull(p + strlen(pat), NULL, 10);
}

static int tcp_connect(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_assert_cmpint(connect(s, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return s;
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(connect(s, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return s;
}

static int unix_register(const char *sock, const char *uuid,
                         const char *nums, const char *name)
{
    g_autofree char *line = g_strdup_printf("REGISTER 1 %s %s %s\n", uuid,
                                            nums, name);
    char buf[256];
    int s = unix_connect(sock);

    g_assert_cmpint(s, >=, 0);
    g_assert_cmpint(write(s, line, strlen(line)), ==, (ssize_t)strlen(line));
    g_assert_cmpint(read(s, buf, sizeof(buf)), >, 0);
    return s;
}

static void send_line(int s, const char *text)
{
    g_assert_cmpint(write(s, text, strlen(text)), ==, (ssize_t)strlen(text));
}

/* The scrape as "name\tuuid\tname\tvalue" lines; NULL if it failed. */
static char *scrape(int port)
{
    g_autofree char *url = g_strdup_printf("http://127.0.0.1:%d/metrics",
                                           port);
    g_autofree char *script = g_test_build_filename(G_TEST_DIST,
                                                    "metrics-parse.py", NULL);
    const char *argv[] = { "/usr/bin/python3", script, url, NULL };
    g_autoptr(GError) err = NULL;
    char *out = NULL;
    g_autofree char *errout = NULL;
    int wstatus;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
                               NULL, NULL, &out, &errout, &wstatus, &err));
    if (!g_spawn_check_wait_status(wstatus, NULL)) {
        g_test_message("scrape: %s", errout);
        g_free(out);
        return NULL;
    }
    return out;
}

/* A sample's value; UINT64_MAX if there is none. */
static uint64_t sample(const char *text, const char *name, const char *uuid,
                       const char *vmname)
{
    g_autofree char *pat = g_strdup_printf("%s\t%s\t%s\t", name, uuid,
                                           vmname);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

    for (int i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], pat)) {
            return g_ascii_strtoull(lines[i] + strlen(pat), NULL, 10);
        }
    }
    return UINT64_MAX;  /* none (yet) */
}

/* The metrics agree with STATUS (the snapshot is at most 1 s old). */
static bool agrees(const char *text, GStrv st)
{
    if (sample(text, "vtmem_pool_limit_bytes", "", "") !=
        field(st[0], "limit") ||
        sample(text, "vtmem_pool_charged_bytes", "", "") !=
        field(st[0], "charged")) {
        return false;
    }
    for (int i = 1; st[i] && g_str_has_prefix(st[i], "VM "); i++) {
        const char *uuid = strstr(st[i], "uuid=") + 5;
        g_autofree char *u = g_strndup(uuid, 36);
        const char *name = strstr(st[i], " name=") + 6;

        if (sample(text, "vtmem_vm_memory_held_bytes", u, name) !=
            field(st[i], "held") ||
            sample(text, "vtmem_vm_lease_bytes", u, name) !=
            field(st[i], "charge") ||
            sample(text, "vtmem_vm_limit_bytes", u, name) !=
            field(st[i], "limit") ||
            sample(text, "vtmem_vm_target_bytes", u, name) !=
            field(st[i], "target") ||
            sample(text, "vtmem_vm_refusals_total", u, name) !=
            field(st[i], "refusals") ||
            sample(text, "vtmem_vm_stored_pages", u, name) !=
            field(st[i], "stored-pages") ||
            sample(text, "vtmem_vm_pressed", u, name) !=
            field(st[i], "pressed")) {
            return false;
        }
    }
    return true;
}

static void test_scrape(void)
{
    g_autofree char *dir = g_dir_make_tmp("vtmem-metrics-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "sock", NULL);
    int port = 20000 + getpid() % 20000;
    g_autofree char *listen = g_strdup_printf("127.0.0.1:%d", port);
    const char *args[] = { "--pool-limit", "64M", "--grace-ms", "0",
                           "--metrics-listen", listen, NULL };
    pid_t pid = vtmemd_spawn(sock, NULL, 0, args, 10000);
    int a, b, stalled[24], wstatus;
    bool ok = false;

    /* held limit cap wanted */
    a = unix_register(sock, UUID_A, "0 0 67108864 33554432", "vm-a");
    b = unix_register(sock, UUID_B, "4096 0 67108864 67108864", NAME_B);
    /* held wanted cap refusals stored-pages: B's puts are refused */
    send_line(b, "UPDATE 4096 67108864 67108864 3 1\n"
                 "UPDATE 4096 67108864 67108864 8 1\n");
    for (int i = 0; i < 50 && !ok; i++) {
        g_autofree char *text = scrape(port);
        g_auto(GStrv) st = status(sock);

        g_assert_nonnull(text);
        g_assert_cmpuint(sample(text, "vtmem_pool_limit_bytes", "", ""), ==,
                         64ULL << 20);
        ok = sample(text, "vtmem_vm_memory_held_bytes", UUID_B, NAME_B) ==
             4096 &&
             sample(text, "vtmem_vm_refusals_total", UUID_B, NAME_B) == 8 &&
             sample(text, "vtmem_vm_stored_pages", UUID_B, NAME_B) == 1 &&
             sample(text, "vtmem_vm_pressed", UUID_B, NAME_B) == 1 &&
             sample(text, "vtmem_vm_refusals_total", UUID_A, "vm-a") == 0 &&
             sample(text, "vtmem_pool_decisions_total", "", "") >= 2 &&
             agrees(text, st);
        if (!ok) {
            g_autofree char *j = g_strjoinv(" | ", st);

            g_test_message("not yet; scrape: %s STATUS: %s", text, j);
            g_usleep(200000);
        }
    }
    g_assert_true(ok);

    /* scrapers that send half a request and stall: the daemon answers */
    for (size_t i = 0; i < G_N_ELEMENTS(stalled); i++) {
        stalled[i] = tcp_connect(port);
        g_assert_cmpint(write(stalled[i], "GET /metr", 9), ==, 9);
    }
    for (int i = 0; i < 5; i++) {
        gint64 t0 = g_get_monotonic_time();
        g_auto(GStrv) st = status(sock);

        g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
        g_assert_true(g_str_has_prefix(st[0], "POOL "));
        g_usleep(100000);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(stalled); i++) {
        close(stalled[i]);
    }
    /* and scrapes work again once they are gone */
    ok = false;
    for (int i = 0; i < 50 && !ok; i++) {
        g_autofree char *text = scrape(port);

        ok = text != NULL;
        if (!ok) {
            g_usleep(200000);
        }
    }
    g_assert_true(ok);
    close(a);
    close(b);
    wstatus = vtmemd_stop(pid, SIGTERM);
    /* exit 0: also no sanitizer report when it is built with them */
    g_assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/metrics/scrape", test_scrape);
    return g_test_run();
}
