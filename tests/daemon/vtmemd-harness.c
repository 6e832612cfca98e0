/* SPDX-License-Identifier: GPL-2.0-or-later */
#define _GNU_SOURCE
#include "vtmemd-harness.h"

#include <fcntl.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

static bool can_connect(const char *sock)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    g_strlcpy(sa.sun_path, sock, sizeof(sa.sun_path));
    ok = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(s);
    return ok;
}

pid_t vtmemd_spawn(const char *sock, const char *log, rlim_t nofile,
                   const char *const *args, int timeout_ms)
{
    const char *exe = g_getenv("VTMEMD");
    const char *wrapper = g_getenv("VTMEMD_WRAPPER");
    g_auto(GStrv) wrap = NULL;
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *nofile_cmd = NULL;
    int fd;
    pid_t pid;

    g_assert_nonnull(exe);
    /*
     * The limit is set by a shell: a test run under valgrind cannot set
     * it (valgrind keeps fds of its own above the client's limit).
     */
    if (nofile > 0) {
        nofile_cmd = g_strdup_printf("ulimit -n %lu && exec \"$0\" \"$@\"",
                                     (unsigned long)nofile);
        g_ptr_array_add(argv, "/bin/sh");
        g_ptr_array_add(argv, "-c");
        g_ptr_array_add(argv, nofile_cmd);
    }
    if (wrapper && *wrapper) {
        wrap = g_strsplit(wrapper, " ", -1);
        for (int j = 0; wrap[j]; j++) {
            g_ptr_array_add(argv, wrap[j]);
        }
    }
    g_ptr_array_add(argv, (char *)exe);
    g_ptr_array_add(argv, "--socket");
    g_ptr_array_add(argv, (char *)sock);
    for (int j = 0; args && args[j]; j++) {
        g_ptr_array_add(argv, (char *)args[j]);
    }
    g_ptr_array_add(argv, NULL);
    fd = open(log ? log : "/dev/null",
              O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    g_assert_cmpint(fd, >=, 0);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv->pdata[0], (char **)argv->pdata);
        _exit(127);
    }
    close(fd);
    for (int i = 0; i < timeout_ms / 5; i++) {
        if (can_connect(sock)) {
            return pid;
        }
        g_usleep(5000);
    }
    g_error("vtmemd did not come up on %s", sock);
}

int vtmemd_stop(pid_t pid, int sig)
{
    int status;

    kill(pid, sig);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return status;
}
