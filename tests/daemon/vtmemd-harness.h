/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Start and stop a real vtmemd for a test (the one place the daemon
 * tests spawn it). $VTMEMD is the binary; $VTMEMD_WRAPPER ("valgrind
 * ...") runs it under a tool.
 */
#ifndef VTMEMD_HARNESS_H
#define VTMEMD_HARNESS_H

#include <sys/resource.h>
#include <sys/types.h>

/*
 * Run vtmemd --socket SOCK ARGS... (NULL-terminated), output appended to
 * log (NULL: discarded), with RLIMIT_NOFILE = nofile when nofile > 0.
 * Returns once the socket accepts connections (up to timeout_ms), the
 * daemon's pid; fails the test if it does not come up.
 */
pid_t vtmemd_spawn(const char *sock, const char *log, rlim_t nofile,
                   const char *const *args, int timeout_ms);

/* Send sig and reap: returns the wait status. */
int vtmemd_stop(pid_t pid, int sig);

#endif /* VTMEMD_HARNESS_H */
