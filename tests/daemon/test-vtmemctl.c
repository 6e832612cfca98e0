/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemctl without a libvirt daemon: argument errors, bad sizes, an
 * unreachable vtmemd, set-pool-limit against a real vtmemd, and domain
 * lookups against libvirt's built-in test driver (test:///default).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "vtmem-pool-proto.h"

static char *sock_path;

/* Run vtmemctl with args; returns exit status, stdout, stderr. */
static int run(char **out, char **err, const char *first, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) e = NULL;
    g_auto(GStrv) env = g_get_environ();
    const char *a;
    va_list ap;
    int status;

    g_ptr_array_add(argv, (char *)g_getenv("VTMEMCTL"));
    va_start(ap, first);
    for (a = first; a; a = va_arg(ap, const char *)) {
        g_ptr_array_add(argv, (char *)a);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    env = g_environ_setenv(env, VTMEM_POOL_SOCKET_ENV, sock_path, TRUE);
    env = g_environ_unsetenv(env, "LIBVIRT_DEFAULT_URI");
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL,
                               out, err, &status, &e));
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
    static const char *const bad[] = { "", "-1", "+5", "1.5G", "12X", "G", "1 G", "0x10",
                                       "99999999999999999999999", "2E", "2GiBs", "16777216T" };

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

static void test_with_daemon(void)
{
    g_autofree char *dir = g_dir_make_tmp("vtmemctl-test-XXXXXX", NULL);
    g_autofree char *sock = g_build_filename(dir, "vtmemd.sock", NULL);
    g_autofree char *saved = sock_path;
    pid_t pid;
    int status;

    sock_path = sock;
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(null, 1);
        dup2(null, 2);
        execl(g_getenv("VTMEMD"), "vtmemd", "--socket", sock, "--pool-limit", "1G", NULL);
        _exit(127);
    }
    for (int i = 0; i < 400 && !g_file_test(sock, G_FILE_TEST_EXISTS); i++) {
        g_usleep(5000);
    }
    {
        g_autofree char *o = NULL;
        g_autofree char *e = NULL;

        g_assert_cmpint(run(&o, &e, "set-pool-limit", "512M", NULL), ==, 0);
        g_assert_cmpstr(o, ==, "pool limit set to 512.0 MiB\n");
        g_clear_pointer(&o, g_free);
        g_clear_pointer(&e, g_free);
        /* no libvirt here: the pool part still shows, exit 4 */
        g_assert_cmpint(run(&o, &e, "--connect", "bogus:///nothing", "status", NULL), ==, 4);
        g_assert_true(g_str_has_prefix(o, "pool: vtmemd at "));
        g_assert_nonnull(strstr(o, "limit 512.0 MiB"));
        g_assert_nonnull(strstr(e, "cannot connect to libvirt at bogus:///nothing"));
        g_clear_pointer(&o, g_free);
        g_clear_pointer(&e, g_free);
        g_assert_cmpint(run(&o, &e, "--connect", "test:///default", "status", "--json", NULL), ==, 0);
        g_assert_nonnull(strstr(o, "\"pool_limit\" : 536870912"));
        g_assert_nonnull(strstr(o, "\"domains\" : []"));
        g_clear_pointer(&o, g_free);
        g_clear_pointer(&e, g_free);
        /* a vtmemd error is reported as such: exit 5, its text */
        g_assert_cmpint(run(&o, &e, "evict",
                            "12345678-9ABC-DEF0-1234-56789abcdef0", NULL), ==, 5);
        g_assert_true(g_str_has_prefix(e, "vtmemctl: vtmemd refused: "));
        g_assert_cmpstr(o, ==, "");
        g_clear_pointer(&o, g_free);
        g_clear_pointer(&e, g_free);
        g_assert_cmpint(run(&o, &e, "--connect", "test:///default",
                            "set-weight", "test", "200", NULL), ==, 0);
        g_assert_cmpstr(o, ==, "test: weight 200 (persisted, applied live)\n");
    }
    kill(pid, SIGTERM);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_rmdir(dir);
    sock_path = g_steal_pointer(&saved);
}

/* libvirt's test driver runs in-process: no libvirtd needed. */
static void test_domains(void)
{
    CHECK(2, "no domain 'nosuchvm'", "--connect", "test:///default", "set-limit", "nosuchvm", "1G");
    CHECK(2, "no domain 'nosuchvm'", "--connect", "test:///default", "set-weight", "nosuchvm", "5");
    CHECK(2, "no domain 'nosuchvm'", "--connect", "test:///default", "apply", "nosuchvm");
    /* the test driver has no QEMU monitor: a libvirt error */
    CHECK(4, "QMP", "--connect", "test:///default", "set-limit", "test", "1G");
    /* weights are persisted in the metadata; the daemon is down */
    CHECK(3, "vtmemd is not running", "--connect", "test:///default", "set-weight", "test", "200");
    CHECK(4, "cannot connect to libvirt", "--connect", "bogus:///x", "set-limit", "vm", "1G");
    CHECK(2, "no domain 'nosuchvm'", "--connect", "test:///default", "compact", "nosuchvm");
    CHECK(4, "QMP", "--connect", "test:///default", "compact", "test");
    CHECK(4, "cannot connect to libvirt", "--connect", "bogus:///x", "compact", "vm");
    CHECK(1, "bad size", "--connect", "bogus:///x", "set-limit", "vm", "1Q");
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
    g_test_add_func("/vtmemctl/domains", test_domains);
    {
        int r = g_test_run();

        g_free(sock_path);
        return r;
    }
}
