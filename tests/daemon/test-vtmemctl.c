/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl without a libvirt daemon: argument errors and --help, bad
 * sizes, an unreachable vtmemd, set-pool-limit, status and evict against
 * a real vtmemd, status against a hostile one, domain lookups against
 * libvirt's built-in test driver (test:///default); and its handling of
 * hostile QMP replies (vtmemctl-reply.c) as unit tests.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "vtmem-pool-proto.h"
#include "vtmemd-harness.h"
#include "vtmemctl-reply.h"

static char *sock_path;

/*
 * Run vtmemctl with args; returns exit status, stdout, stderr.
 * $VTMEMCTL_WRAPPER ("valgrind --error-exitcode=99 ...") runs it under a
 * tool: an error changes the exit status the test expects.
 */
static int run(char **out, char **err, const char *first, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) e = NULL;
    g_auto(GStrv) env = g_get_environ();
    g_auto(GStrv) wrapper = NULL;
    const char *w = g_getenv("VTMEMCTL_WRAPPER");
    const char *a;
    va_list ap;
    int status;

    if (w && *w) {
        g_assert_true(g_shell_parse_argv(w, NULL, &wrapper, NULL));
        for (char **p = wrapper; *p; p++) {
            g_ptr_array_add(argv, *p);
        }
    }
    g_ptr_array_add(argv, (char *)g_getenv("VTMEMCTL"));
    va_start(ap, first);
    for (a = first; a; a = va_arg(ap, const char *)) {
        g_ptr_array_add(argv, (char *)a);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    env = g_environ_setenv(env, VTMEM_POOL_SOCKET_ENV, sock_path, TRUE);
    env = g_environ_unsetenv(env, "LIBVIRT_DEFAULT_URI");
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, env,
                               G_SPAWN_SEARCH_PATH, NULL, NULL, out, err,
                               &status, &e));
    g_assert_no_error(e);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

#define CHECK(code, errpart, ...)                                      \
    do {                                                               \
        g_autofree char *o_ = NULL;                                    \
        g_autofree char *e_ = NULL;                                    \
        int rc_ = run(&o_, &e_, __VA_ARGS__, NULL);                    \
        if (rc_ != (code) || !strstr(e_, (errpart))) {                 \
            g_error("vtmemctl %s: exit %d (want %d), stderr: %s",      \
                    #__VA_ARGS__, rc_, (code), e_);                    \
        }                                                              \
    } while (0)

static void test_usage(void)
{
    CHECK(1, "no command given", "--socket", "/x");
    CHECK(1, "no command given", "--");
    CHECK(1, "unknown command 'frobnicate'", "frobnicate");
    CHECK(1, "unknown option '--frob'", "--frob", "status");
    CHECK(1, "unknown option '--json'", "--json", "status");
    CHECK(1, "Missing argument for --connect", "--connect");
    CHECK(1, "--connect needs a value", "--connect", "", "status");
    CHECK(1, "--socket needs a value", "--socket=", "status");
    CHECK(1, "usage: set-limit DOMAIN SIZE", "set-limit", "vm1");
    CHECK(1, "usage: set-limit DOMAIN SIZE", "set-limit", "vm1", "1G", "extra");
    CHECK(1, "set-limit: unknown option '--frob'", "set-limit", "vm1", "--frob",
          "1G");
    CHECK(1, "usage: set-weight DOMAIN N", "set-weight");
    CHECK(1, "usage: set-pool-limit SIZE", "set-pool-limit");
    CHECK(1, "usage: apply DOMAIN [--wait SECS]", "apply");
    CHECK(1, "bad --wait value 'soon'", "apply", "vm1", "--wait", "soon");
    CHECK(1, "bad --wait value '3601'", "apply", "vm1", "--wait=3601");
    CHECK(1, "Missing argument for --wait", "apply", "vm1", "--wait");
    CHECK(1, "status: unknown option '--yaml'", "status", "--yaml");
    CHECK(1, "usage: status [--json]", "status", "extra");
    CHECK(1, "usage: compact DOMAIN", "compact");
    CHECK(1, "usage: compact DOMAIN", "compact", "a", "b");
    CHECK(1, "usage: evict UUID", "evict");
    CHECK(1, "bad UUID 'vm1'", "evict", "vm1");
    CHECK(1, "bad UUID '12345678-1234-1234-1234-12345678901'", "evict",
          "12345678-1234-1234-1234-12345678901");
    /* after "--" a leading '-' is a value (here a bad one) */
    CHECK(1, "bad weight '-x'", "set-weight", "vm1", "--", "-x");
    /* a usage error points to the command's own help */
    CHECK(1, "Try 'vtmemctl set-limit --help'", "set-limit");
    CHECK(1, "Try 'vtmemctl --help'", "frobnicate");
}

/* vtmemctl --help and COMMAND --help: exit 0, usage on stdout. */
static void test_help(void)
{
    static const char *const cmds[][2] = {
        { "status", "vtmemctl status [OPTION" },
        { "set-limit", "DOMAIN SIZE" },
        { "set-weight", "DOMAIN N" },
        { "set-pool-limit", "SIZE" },
        { "apply", "--wait=SECS" },
        { "compact", "vtmemctl compact [OPTION" },
        { "evict", "UUID" },
    };
    g_autofree char *o = NULL;
    g_autofree char *e = NULL;

    g_assert_cmpint(run(&o, &e, "--help", NULL), ==, 0);
    g_assert_nonnull(strstr(o, "set-pool-limit SIZE"));
    g_assert_nonnull(strstr(o, "apply DOMAIN [--wait SECS]"));
    g_assert_nonnull(strstr(o, "--connect=URI"));
    g_assert_nonnull(strstr(o, "Exit status"));
    g_assert_cmpstr(e, ==, "");
    for (size_t i = 0; i < G_N_ELEMENTS(cmds); i++) {
        g_clear_pointer(&o, g_free);
        g_clear_pointer(&e, g_free);
        g_assert_cmpint(run(&o, &e, "-s", "/x", cmds[i][0], "--help", NULL),
                        ==, 0);
        g_assert_nonnull(strstr(o, cmds[i][1]));
        g_assert_nonnull(strstr(o, "-h, --help"));
        g_assert_cmpstr(e, ==, "");
    }
    g_clear_pointer(&o, g_free);
    g_clear_pointer(&e, g_free);
    g_assert_cmpint(run(&o, &e, "apply", "-h", NULL), ==, 0);
    g_assert_nonnull(strstr(o, "Wait up to SECS"));
}

static void test_sizes(void)
{
    static const char *const bad[] = {
        "", "-1", "+5", "1.5G", "12X", "G", "1 G", "0x10",
        "99999999999999999999999", "2E", "2GiBs", "16777216T",
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *msg = g_strdup_printf("bad size '%s'", bad[i]);

        CHECK(1, msg, "set-limit", "vm1", bad[i]);
        CHECK(1, msg, "set-pool-limit", bad[i]);
    }
    CHECK(1, "bad weight '0'", "set-weight", "vm1", "0");
    CHECK(1, "bad weight '10001'", "set-weight", "vm1", "10001");
    CHECK(1, "bad weight '-3'", "set-weight", "vm1", "-3");
}

static void test_no_daemon(void)
{
    CHECK(3, "vtmemd is not running", "set-pool-limit", "512M");
    CHECK(3, "vtmemd is not running", "--socket", "/nonexistent/vtmemd.sock",
          "set-pool-limit", "1G");
}

/*
 * A device connection to vtmemd, registered (the test process has no
 * -uuid on its command line: the all-zero UUID is its own).
 */
static int register_device(const char *sock)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    static const char reg[] = "REGISTER 1 00000000-0000-0000-0000-000000000000"
                              " 0 1073741824 1073741824 0 vm-evict\n";
    char buf[256];
    ssize_t n;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(write(fd, reg, strlen(reg)), ==, (ssize_t)strlen(reg));
    n = read(fd, buf, sizeof(buf) - 1);
    g_assert_cmpint(n, >, 0);
    buf[n] = '\0';
    g_assert_true(g_str_has_prefix(buf, "WELCOME "));
    return fd;
}

/* Read what vtmemd sends on fd until it closes the connection. */
static char *read_to_end(int fd)
{
    GString *s = g_string_new(NULL);
    char buf[256];
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        g_string_append_len(s, buf, n);
    }
    close(fd);
    return g_string_free(s, FALSE);
}

static void test_with_daemon(void)
{
    static const char *const args[] = { "--pool-limit", "1G", NULL };
    g_autofree char *dir = g_dir_make_tmp("vtmemctl-test-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "vtmemd.sock", NULL);
    g_autofree char *saved = sock_path;
    g_autofree char *o = NULL;
    g_autofree char *e = NULL;
    g_autofree char *told = NULL;
    pid_t pid = vtmemd_spawn(sock, NULL, 0, args, 5000);
    int dev;

    sock_path = sock;
    g_assert_cmpint(run(&o, &e, "set-pool-limit", "512M", NULL), ==, 0);
    g_assert_cmpstr(o, ==, "pool limit set to 512.0 MiB\n");
    g_clear_pointer(&o, g_free);
    g_clear_pointer(&e, g_free);
    /* no libvirt here: the pool part still shows, exit 4 */
    g_assert_cmpint(run(&o, &e, "--connect", "bogus:///nothing", "status",
                        NULL), ==, 4);
    g_assert_true(g_str_has_prefix(o, "pool: vtmemd at "));
    g_assert_nonnull(strstr(o, "limit 512.0 MiB"));
    g_assert_nonnull(strstr(e, "cannot connect to libvirt at "
                            "bogus:///nothing"));
    g_clear_pointer(&o, g_free);
    g_clear_pointer(&e, g_free);
    g_assert_cmpint(run(&o, &e, "--connect", "test:///default", "status",
                        "--json", NULL), ==, 0);
    g_assert_nonnull(strstr(o, "\"pool_limit\" : 536870912"));
    g_assert_nonnull(strstr(o, "\"domains\" : []"));
    g_clear_pointer(&o, g_free);
    g_clear_pointer(&e, g_free);
    g_assert_cmpint(run(&o, &e, "--connect", "test:///default", "set-weight",
                        "test", "200", NULL), ==, 0);
    g_assert_cmpstr(o, ==, "test: weight 200 (persisted, applied live)\n");
    g_clear_pointer(&o, g_free);
    g_clear_pointer(&e, g_free);
    /* evict: a registered device is dropped (vtmemd tells it and closes) */
    dev = register_device(sock);
    /* its counters (held wanted cap refusals stored-pages) */
    {
        static const char upd[] = "UPDATE 0 0 1073741824 0 3\n"
                                  "UPDATE 0 0 1073741824 5 3\n";

        g_assert_cmpint(write(dev, upd, strlen(upd)), ==,
                        (ssize_t)strlen(upd));
    }
    /* status --json carries vtmemd's view of each VM, as the metrics */
    for (int i = 0; i < 100; i++) {
        g_clear_pointer(&o, g_free);
        g_clear_pointer(&e, g_free);
        g_assert_cmpint(run(&o, &e, "--connect", "test:///default", "status",
                            "--json", NULL), ==, 0);
        if (strstr(o, "\"refusals\" : 5")) {
            break;
        }
        g_usleep(20000);
    }
    g_assert_nonnull(strstr(o, "\"vm_list\" : [\n      {\n        \"uuid\" : "
                            "\"00000000-0000-0000-0000-000000000000\",\n"
                            "        \"name\" : \"vm-evict\",\n"
                            "        \"connected\" : true,"));
    g_assert_nonnull(strstr(o, "\"refusals\" : 5"));
    g_assert_nonnull(strstr(o, "\"stored_pages\" : 3"));
    g_assert_nonnull(strstr(o, "\"pressed\" : true"));
    g_assert_nonnull(strstr(o, "\"vm_limit\" : null"));
    g_assert_nonnull(strstr(o, "\"decisions\" : "));
    g_assert_nonnull(strstr(o, "\"ceiling\" : 536870912"));
    g_clear_pointer(&o, g_free);
    g_clear_pointer(&e, g_free);
    g_assert_cmpint(run(&o, &e, "evict", "00000000-0000-0000-0000-000000000000",
                        NULL), ==, 0);
    g_assert_cmpstr(o, ==, "00000000-0000-0000-0000-000000000000: evicted "
                    "from the pool\n");
    told = read_to_end(dev);
    g_assert_nonnull(strstr(told, "ERROR evicted\n"));
    g_clear_pointer(&o, g_free);
    g_clear_pointer(&e, g_free);
    /* a vtmemd error is reported as such: exit 5, its text */
    g_assert_cmpint(run(&o, &e, "evict", "12345678-9ABC-DEF0-1234-56789abcdef0",
                        NULL), ==, 5);
    g_assert_cmpstr(e, ==, "vtmemctl: vtmemd refused: EVICT: no such VM\n");
    g_assert_cmpstr(o, ==, "");
    vtmemd_stop(pid, SIGTERM);
    g_rmdir(dir);
    sock_path = g_steal_pointer(&saved);
}

/* A device of uuid and name (the test runs as the daemon's uid: trusted). */
static int register_as(const char *sock, const char *uuid, const char *name)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    g_autofree char *reg = g_strdup_printf("REGISTER 1 %s 0 0 1073741824 0"
                                           " %s\n", uuid, name);
    char buf[256];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(write(fd, reg, strlen(reg)), ==, (ssize_t)strlen(reg));
    g_assert_cmpint(read(fd, buf, sizeof(buf)), >, 0);
    return fd;
}

static void send_text(int fd, const char *text)
{
    g_assert_cmpint(write(fd, text, strlen(text)), ==, (ssize_t)strlen(text));
}

/* tmux on a private server socket; returns its stdout (NULL: it failed). */
static char *tmux(const char *tsock, const char *const *args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) e = NULL;
    char *out = NULL;
    int status;

    g_ptr_array_add(argv, (char *)"tmux");
    g_ptr_array_add(argv, (char *)"-f");
    g_ptr_array_add(argv, (char *)"/dev/null");
    g_ptr_array_add(argv, (char *)"-S");
    g_ptr_array_add(argv, (char *)tsock);
    for (; *args; args++) {
        g_ptr_array_add(argv, (char *)*args);
    }
    g_ptr_array_add(argv, NULL);
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL,
                               G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
                               NULL, NULL, &out, NULL, &status, &e));
    g_assert_no_error(e);
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_free(out);
        return NULL;
    }
    return out;
}

/* The screen of the pane once it has a line matching re (or timeout). */
static char *screen_matching(const char *tsock, const char *re, int ms)
{
    static const char *const cap[] = { "capture-pane", "-p", "-t", "top",
                                       NULL };
    gint64 deadline = g_get_monotonic_time() + (gint64)ms * 1000;
    char *scr = NULL;

    for (;;) {
        g_free(scr);
        scr = tmux(tsock, cap);
        if (scr && g_regex_match_simple(re, scr, G_REGEX_MULTILINE, 0)) {
            return scr;
        }
        if (g_get_monotonic_time() > deadline) {
            g_error("the screen never matched %s; it is:\n%s", re,
                    scr ? scr : "(no pane)");
        }
        g_usleep(50000);
    }
}

/*
 * vtmemctl top in a real pseudo-terminal (tmux): the screen shows the
 * pool and each VM with vtmemd's values, follows changes, and 'q' ends
 * it with exit 0.
 */
static void test_top(void)
{
    static const char *const args[] = { "--pool-limit", "64M", "--grace-ms",
                                        "0", "--pressed-hold-ms", "600000",
                                        NULL };
    static const char uuid_a[] = "11111111-2222-3333-4444-555555555555";
    static const char uuid_b[] = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    g_autofree char *dir = NULL;
    g_autofree char *sock = NULL;
    g_autofree char *tsock = NULL;
    g_autofree char *cmd = NULL;
    g_autofree char *q_sock = NULL;
    g_autofree char *q_ctl = NULL;
    g_autofree char *scr = NULL;
    const char *w = g_getenv("VTMEMCTL_WRAPPER");
    g_autofree char *tmux_path = g_find_program_in_path("tmux");
    int scale = w && *w ? 20 : 1;
    int a, b;
    pid_t pid;

    if (!tmux_path) {
        g_test_skip("tmux is not installed (scripts/deps.sh test)");
        return;
    }
    dir = g_dir_make_tmp("vtmemctl-top-XXXXXX", NULL);
    sock = g_build_filename(dir, "vtmemd.sock", NULL);
    tsock = g_build_filename(dir, "tmux.sock", NULL);
    pid = vtmemd_spawn(sock, NULL, 0, args, 5000);
    a = register_as(sock, uuid_a, "vm-alpha");
    b = register_as(sock, uuid_b, "vm-beta");
    /* held wanted cap refusals stored-pages: A's puts are refused */
    send_text(a, "UPDATE 0 33554432 1073741824 0 10\n"
                 "UPDATE 0 33554432 1073741824 4 10\n");
    send_text(b, "UPDATE 0 8388608 1073741824 0 2\n");

    q_sock = g_shell_quote(sock);
    q_ctl = g_shell_quote(g_getenv("VTMEMCTL"));
    cmd = g_strdup_printf("%s %s -s %s top --interval 200; "
                          "echo top-exit=$?; sleep 600", w ? w : "", q_ctl,
                          q_sock);
    {
        const char *const start[] = { "new-session", "-d", "-s", "top",
                                      "-x", "110", "-y", "20", cmd, NULL };
        g_autofree char *o = tmux(tsock, start);

        g_assert_nonnull(o);
    }
    /* the pool and both VMs, with vtmemd's numbers */
    scr = screen_matching(tsock, "^vm-beta .* idle ", 10000 * scale);
    g_test_message("screen: %s", scr);
    g_assert_true(g_regex_match_simple("\\Avtmemctl top - vtmemd at .* - "
                                       "every 200 ms - q quits\n", scr, 0, 0));
    g_assert_true(g_regex_match_simple("^pool: limit 64.0 MiB, ceiling 64.0"
                                       " MiB, leased .* auto-pool off$", scr,
                                       G_REGEX_MULTILINE, 0));
    g_assert_true(g_regex_match_simple("^ +PSI some 0.00% full 0.00% \\(avg10"
                                       "\\), 2 VMs, [0-9]+ decisions",
                                       scr, G_REGEX_MULTILINE, 0));
    g_assert_true(g_regex_match_simple("^NAME +WEIGHT +HELD +LEASE +TARGET +"
                                       "WANTED +PAGES +REFUSALS STATE +REASON"
                                       "$", scr, G_REGEX_MULTILINE, 0));
    /* A wants 32M and is pressed: it gets it; B wants 8M */
    g_assert_true(g_regex_match_simple("^vm-alpha +100 +0 B +32.0 MiB +32.0 "
                                       "MiB +32.0 MiB +10 +4 pressed want$",
                                       scr, G_REGEX_MULTILINE, 0));
    g_assert_true(g_regex_match_simple("^vm-beta +100 +0 B +8.0 MiB +8.0 "
                                       "MiB +8.0 MiB +2 +0 idle +want$",
                                       scr, G_REGEX_MULTILINE, 0));
    /* it follows: B stores more, and is redrawn */
    send_text(b, "UPDATE 4096 8388608 1073741824 0 77\n");
    g_free(scr);
    scr = screen_matching(tsock, "^vm-beta .* 77 +0 idle ", 5000 * scale);
    /* q quits, exit 0 */
    {
        const char *const q[] = { "send-keys", "-t", "top", "q", NULL };
        g_autofree char *o = tmux(tsock, q);

        g_assert_nonnull(o);
    }
    g_free(scr);
    scr = screen_matching(tsock, "^top-exit=0$", 5000 * scale);
    {
        const char *const kill[] = { "kill-server", NULL };

        g_free(tmux(tsock, kill));
    }
    close(a);
    close(b);
    vtmemd_stop(pid, SIGTERM);
    g_unlink(tsock);
    g_rmdir(dir);
}

/*
 * A hostile vtmemd: answers one connection with reply (any bytes), then
 * closes it. It plays an attacker that took the socket's place.
 */
typedef struct HostileDaemon {
    int listen_fd;
    const char *reply;
    size_t len;
} HostileDaemon;

static gpointer hostile_serve(gpointer data)
{
    HostileDaemon *h = data;
    int fd = accept(h->listen_fd, NULL, NULL);
    char buf[256];

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(read(fd, buf, sizeof(buf)), >, 0);
    /* vtmemctl may stop reading (and close) before all is written */
    (void)!send(fd, h->reply, h->len, MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

/* status (and its exit code) when vtmemd answers STATUS with reply */
static char *status_from(const char *reply, size_t len, int *rc)
{
    g_autofree char *dir = g_dir_make_tmp("vtmemctl-test-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "vtmemd.sock", NULL);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    HostileDaemon h = { .reply = reply, .len = len };
    g_autofree char *saved = sock_path;
    g_autofree char *e = NULL;
    char *o = NULL;
    GThread *t;

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    h.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(bind(h.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), ==,
                    0);
    g_assert_cmpint(listen(h.listen_fd, 1), ==, 0);
    t = g_thread_new("hostile-vtmemd", hostile_serve, &h);
    sock_path = sock;
    *rc = run(&o, &e, "--connect", "test:///default", "status", NULL);
    sock_path = g_steal_pointer(&saved);
    g_thread_join(t);
    close(h.listen_fd);
    g_unlink(sock);
    g_rmdir(dir);
    return o;
}

static void test_hostile_daemon(void)
{
    static const struct {
        const char *reply, *pool;
    } cases[] = {
        { "POOL limit=1024 charged=1 vms=0\nEND\n",
          "pool: vtmemd at " },
        { "POOL limit=1x charged=-1\nVM uuid=x weight=99999999999999999999\n"
          "END\n", "limit 0 B, in use (leases) 0 B, 0 VMs" },
        { "VM uuid=x\nEND\n", "pool: bad reply from vtmemd: no POOL line" },
        { "POOL limit=\x1b[2J\nEND\n",
          "pool: bad reply from vtmemd: non-printable byte in line" },
        { "ERROR \xc2\x9b" "31m\n", "pool: bad reply from vtmemd: "
          "non-printable byte in line" },
        { "ERROR go away\n", "pool: vtmemd refused: go away" },
        { "POOL limit=1\n", "pool: vtmemd closed the connection" },
        { "\n", "pool: bad reply from vtmemd: empty line" },
    };
    GString *flood = g_string_new(NULL);
    GString *long_line = g_string_new("POOL ");
    g_autofree char *xs = g_strnfill(VTMEM_POOL_MAX_LINE, 'x');
    g_autofree char *o = NULL;
    int rc;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        o = status_from(cases[i].reply, strlen(cases[i].reply), &rc);
        g_test_message("reply %s", cases[i].reply);
        g_assert_cmpint(rc, ==, 0);
        g_assert_nonnull(strstr(o, cases[i].pool));
        g_assert_nonnull(strstr(o, "no running domain has a"));
        g_clear_pointer(&o, g_free);
    }
    /* a daemon that never ends its reply is cut off */
    for (int i = 0; i < 100001; i++) {
        g_string_append(flood, "VM uuid=x\n");
    }
    o = status_from(flood->str, flood->len, &rc);
    g_assert_nonnull(strstr(o, "pool: bad reply from vtmemd: too many lines"));
    g_clear_pointer(&o, g_free);
    g_string_append(long_line, xs);
    o = status_from(long_line->str, long_line->len, &rc);
    g_assert_nonnull(strstr(o, "pool: bad reply from vtmemd: line too long"));
    g_string_free(flood, TRUE);
    g_string_free(long_line, TRUE);
}

/* libvirt's test driver runs in-process: no libvirtd needed. */
static void test_domains(void)
{
    const char *t = "test:///default";

    CHECK(2, "no domain 'nosuchvm'", "-c", t, "set-limit", "nosuchvm", "1G");
    CHECK(2, "no domain 'nosuchvm'", "-c", t, "set-weight", "nosuchvm", "5");
    CHECK(2, "no domain 'nosuchvm'", "-c", t, "apply", "nosuchvm");
    /* the test driver has no QEMU monitor: a libvirt error */
    CHECK(4, "QMP", "-c", t, "set-limit", "test", "1G");
    /* weights are persisted in the metadata; the daemon is down */
    CHECK(3, "vtmemd is not running", "-c", t, "set-weight", "test", "200");
    CHECK(4, "cannot connect to libvirt", "-c", "bogus:///x", "set-limit",
          "vm", "1G");
    CHECK(2, "no domain 'nosuchvm'", "-c", t, "compact", "nosuchvm");
    CHECK(4, "QMP", "-c", t, "compact", "test");
    CHECK(4, "cannot connect to libvirt", "-c", "bogus:///x", "compact", "vm");
    CHECK(1, "bad size", "-c", "bogus:///x", "set-limit", "vm", "1Q");
}

/* ---- untrusted replies (vtmemctl-reply.c) ---- */

/* The QMP error text for reply, or NULL if it is accepted. */
static char *qmp_error(const char *reply)
{
    char *err = NULL;
    g_autoptr(JsonNode) n = vtmemctl_qmp_reply(reply, &err);

    g_assert_true((n == NULL) != (err == NULL));
    return err;
}

/* No byte a terminal acts on: C0, DEL, and C1 in UTF-8 (0xc2 0x80..0x9f). */
static void assert_terminal_safe(const char *s)
{
    g_assert_true(g_utf8_validate(s, -1, NULL));
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        g_assert_cmpuint(*p, >=, 0x20);
        g_assert_cmpuint(*p, !=, 0x7f);
        g_assert_false(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f);
    }
}

static void test_reply_qmp(void)
{
    static const struct {
        const char *reply, *err;
    } cases[] = {
        { "{\"return\": {}}", NULL },
        { "{\"return\": null}", NULL },
        { "{\"return\": 1, \"return\": [2]}", NULL },
        { "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such\"}}",
          "no such" },
        { "{\"error\": {\"desc\": \"red \\u001b[31m\\u009b2J\\u202e\\n\"}}",
          "red \\x1b[31m\\u009b2J\\u202e\\x0a" },
        { "{\"error\": 5}", "QMP error without description" },
        { "{\"error\": {\"desc\": 5}}", "QMP error without description" },
        { "{\"error\": {\"desc\": [\"x\"]}}", "QMP error without description" },
        { "{\"error\": null, \"return\": 1}", "QMP error without description" },
        { "{}", "QMP reply without return" },
        { "{\"type\": 5}", "QMP reply without return" },
        { "", "empty QMP reply" },
        { "[]", "bad QMP reply: []" },
        { "5", "bad QMP reply: 5" },
        { "\"return\"", "bad QMP reply: \"return\"" },
        { "{\"return\": ", "bad QMP reply: {\"return\": " },
        { "\x1b]0;owned\x07{", "bad QMP reply: \\x1b]0;owned\\x07{" },
        { "\xff\xfe{", "bad QMP reply: \xef\xbf\xbd\xef\xbf\xbd{" },
        /*
         * json-glib takes these; QMP never sends them: refused so that
         * the nesting count cannot be fooled
         */
        { "{'return': 1}", "QMP reply nested too deeply or not plain JSON" },
        { "{\"return\": /* \" */ 1}",
          "QMP reply nested too deeply or not plain JSON" },
        { "{\"return\": \"'/#\\\"[[[\"}", NULL },
    };
    g_autofree char *null_err = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *err = qmp_error(cases[i].reply);

        g_test_message("reply %s", cases[i].reply);
        g_assert_cmpstr(err, ==, cases[i].err);
        if (err) {
            assert_terminal_safe(err);
        }
    }
    null_err = qmp_error(NULL);
    g_assert_cmpstr(null_err, ==, "empty QMP reply");
}

/* Deep nesting overflows json-glib's recursive parser: bounded. */
static void test_reply_limits(void)
{
    GString *deep = g_string_new("{\"return\": ");
    g_autofree char *err = NULL;
    g_autofree char *huge = NULL;

    for (int i = 0; i < VTMEMCTL_QMP_MAX_DEPTH - 1; i++) {
        g_string_append_c(deep, '[');
    }
    for (int i = 0; i < VTMEMCTL_QMP_MAX_DEPTH - 1; i++) {
        g_string_append_c(deep, ']');
    }
    g_string_append_c(deep, '}');
    g_assert_null(qmp_error(deep->str));    /* 64 levels: accepted */
    g_string_truncate(deep, 0);
    for (int i = 0; i < 200000; i++) {
        g_string_append(deep, "[");
    }
    err = qmp_error(deep->str);
    g_assert_cmpstr(err, ==, "QMP reply nested too deeply or not plain JSON");
    g_clear_pointer(&err, g_free);
    /* a closing bracket inside a string does not lower the count */
    g_string_truncate(deep, 0);
    for (int i = 0; i < 100; i++) {
        g_string_append(deep, "[\"]\",");
    }
    err = qmp_error(deep->str);
    g_assert_cmpstr(err, ==, "QMP reply nested too deeply or not plain JSON");
    g_clear_pointer(&err, g_free);
    g_string_free(deep, TRUE);
    huge = g_strnfill(VTMEMCTL_QMP_MAX_REPLY + 1, ' ');
    err = qmp_error(huge);
    g_assert_cmpstr(err, ==, "QMP reply too long");
}

static char *find_in(const char *json)
{
    g_autoptr(JsonNode) n = json_from_string(json, NULL);

    g_assert_nonnull(n);
    return vtmemctl_qom_list_find(n, VTMEM_QOM_TYPE);
}

static void test_reply_qom_list(void)
{
    static const struct {
        const char *list, *name;
    } cases[] = {
        { "[{\"name\": \"vtmem0\", \"type\": \"child<virtio-tmem-pci>\"}]",
          "vtmem0" },
        /* security review finding 10: a number where a string belongs */
        { "[{\"name\": \"a\", \"type\": 5},"
          " {\"name\": \"b\", \"type\": \"child<virtio-tmem-pci>\"}]", "b" },
        { "[{\"type\": 5}]", NULL },
        { "[{\"name\": 5, \"type\": \"child<virtio-tmem-pci>\"}]", NULL },
        { "[{\"type\": \"child<virtio-tmem-pci>\"}]", NULL },
        { "[{\"name\": null, \"type\": null}]", NULL },
        { "[{\"name\": \"\", \"type\": \"child<virtio-tmem-pci>\"}]", NULL },
        { "[{\"name\": \"../x\", \"type\": \"child<virtio-tmem-pci>\"}]",
          NULL },
        { "[[{\"name\": \"n\", \"type\": \"child<virtio-tmem-pci>\"}], 5,"
          " \"s\", null, true, {\"name\": {\"a\": [1]}, \"type\": [[]]},"
          " {\"name\": \"ok\", \"type\": \"child<virtio-tmem-pci>x\"},"
          " {\"name\": \"v\", \"type\": \"child<virtio-tmem-pci>\"}]", "v" },
        { "{\"name\": \"v\", \"type\": \"child<virtio-tmem-pci>\"}", NULL },
        { "\"child<virtio-tmem-pci>\"", NULL },
        { "[]", NULL },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *name = find_in(cases[i].list);

        g_test_message("list %s", cases[i].list);
        g_assert_cmpstr(name, ==, cases[i].name);
    }
    g_assert_null(vtmemctl_qom_list_find(NULL, VTMEM_QOM_TYPE));
}

static void test_reply_values(void)
{
    static const struct {
        const char *json;
        bool ok;
        uint64_t v;
    } u64s[] = {
        { "0", true, 0 },
        { "4096", true, 4096 },
        { "9223372036854775807", true, INT64_MAX },
        { "18446744073709551615", true, UINT64_MAX },
        { "1e300", true, UINT64_MAX },
        { "1e999", true, UINT64_MAX },
        { "1024.0", true, 1024 },
        /* json-glib's int64 holds QEMU's uint64 bits */
        { "9223372036854775808", true, 9223372036854775808ULL },
        { "-1", true, UINT64_MAX },
        { "99999999999999999999", true, UINT64_MAX },
        { "-1e300", false, 0 },
        { "-0.5", false, 0 },
        { "1.5", false, 0 },
        { "\"5\"", false, 0 },
        { "true", false, 0 },
        { "null", false, 0 },
        { "[1]", false, 0 },
        { "{\"limit\": 1}", false, 0 },
    };
    uint64_t v;
    bool b;

    for (size_t i = 0; i < G_N_ELEMENTS(u64s); i++) {
        g_autoptr(JsonNode) n = json_from_string(u64s[i].json, NULL);

        g_test_message("value %s", u64s[i].json);
        g_assert_nonnull(n);
        v = 7;
        g_assert_cmpint(vtmemctl_json_u64(n, &v), ==, u64s[i].ok);
        g_assert_cmpuint(v, ==, u64s[i].ok ? u64s[i].v : 7);
    }
    g_assert_false(vtmemctl_json_u64(NULL, &v));
    {
        g_autoptr(JsonNode) t = json_from_string("true", NULL);
        g_autoptr(JsonNode) one = json_from_string("1", NULL);
        g_autoptr(JsonNode) s = json_from_string("\"true\"", NULL);

        g_assert_true(vtmemctl_json_bool(t, &b) && b);
        g_assert_false(vtmemctl_json_bool(one, &b));
        g_assert_false(vtmemctl_json_bool(s, &b));
        g_assert_false(vtmemctl_json_bool(NULL, &b));
    }
}

static void test_reply_text(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "plain é ✓", "plain é ✓" },
        { "a\x1b[2Jb\r\n\t", "a\\x1b[2Jb\\x0d\\x0a\\x09" },
        { "del\x7f", "del\\x7f" },
        { "csi\xc2\x9b" "31m", "csi\\u009b31m" },
        { "rtl\xe2\x80\xae" "gpj.exe", "rtl\\u202egpj.exe" },
        { "bad\xff\xc0", "bad\xef\xbf\xbd\xef\xbf\xbd" },
    };
    g_autofree char *null_text = vtmemctl_safe_text(NULL);
    g_autofree char *long_in = g_strnfill(1000, 'a');
    g_autofree char *long_out = vtmemctl_safe_text(long_in);
    g_autofree char *json = NULL;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *out = vtmemctl_safe_text(cases[i].in);

        g_assert_cmpstr(out, ==, cases[i].out);
        assert_terminal_safe(out);
    }
    g_assert_cmpstr(null_text, ==, "(null)");
    g_assert_cmpuint(strlen(long_out), ==, VTMEMCTL_MAX_SHOWN + 3);
    g_assert_true(g_str_has_suffix(long_out, "a..."));
    /* generated JSON keeps its layout; DEL, C1 and bidi become \u */
    json = vtmemctl_json_escape_controls("{\n  \"n\" : \"x\x7f\xc2\x85"
                                         "\xe2\x80\xae\\u001b\"\n}");
    g_assert_cmpstr(json, ==,
                    "{\n  \"n\" : \"x\\u007f\\u0085\\u202e\\u001b\"\n}");
    g_clear_pointer(&json, g_free);
    /* json-glib 1.6 generates a raw 0x1f (found by the fuzzer) */
    {
        g_autoptr(JsonNode) n = json_from_string("{\"a\\u001f\": \"\\u001f\"}",
                                                 NULL);
        g_autofree char *gen = json_to_string(n, TRUE);

        json = vtmemctl_json_escape_controls(gen);
        g_assert_cmpstr(json, ==, "{\n  \"a\\u001f\" : \"\\u001f\"\n}");
    }
}

static void test_reply_kv(void)
{
    g_autoptr(GHashTable) pool =
        vtmemctl_parse_kv("POOL limit=1024 charged=x vms= granule=01");
    g_autoptr(GHashTable) vm =
        vtmemctl_parse_kv("VM uuid=U weight=3 name=a b=c d");
    g_autoptr(GHashTable) junk = vtmemctl_parse_kv("VM");
    uint64_t v = 0;

    g_assert_true(vtmemctl_kv_u64(pool, "limit", &v));
    g_assert_cmpuint(v, ==, 1024);
    g_assert_false(vtmemctl_kv_u64(pool, "charged", &v));
    g_assert_false(vtmemctl_kv_u64(pool, "vms", &v));
    g_assert_false(vtmemctl_kv_u64(pool, "granule", &v));
    g_assert_false(vtmemctl_kv_u64(pool, "missing", &v));
    g_assert_false(vtmemctl_kv_u64(NULL, "limit", &v));
    g_assert_cmpstr(g_hash_table_lookup(vm, "name"), ==, "a b=c d");
    g_assert_true(vtmemctl_kv_u64(vm, "weight", &v));
    g_assert_cmpuint(v, ==, 3);
    g_assert_cmpuint(g_hash_table_size(junk), ==, 0);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    sock_path = g_strdup("/nonexistent-vtmem/vtmemd.sock");
    g_test_add_func("/vtmemctl/usage", test_usage);
    g_test_add_func("/vtmemctl/help", test_help);
    g_test_add_func("/vtmemctl/sizes", test_sizes);
    g_test_add_func("/vtmemctl/no-daemon", test_no_daemon);
    g_test_add_func("/vtmemctl/with-daemon", test_with_daemon);
    g_test_add_func("/vtmemctl/top", test_top);
    g_test_add_func("/vtmemctl/domains", test_domains);
    g_test_add_func("/vtmemctl/hostile-daemon", test_hostile_daemon);
    g_test_add_func("/vtmemctl/reply/qmp", test_reply_qmp);
    g_test_add_func("/vtmemctl/reply/limits", test_reply_limits);
    g_test_add_func("/vtmemctl/reply/qom-list", test_reply_qom_list);
    g_test_add_func("/vtmemctl/reply/values", test_reply_values);
    g_test_add_func("/vtmemctl/reply/text", test_reply_text);
    g_test_add_func("/vtmemctl/reply/kv", test_reply_kv);
    {
        int r = g_test_run();

        g_free(sock_path);
        return r;
    }
}
