/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vtmemd internals shared by its parts (docs/vtmemd.md):
 *   vtmemd.c          main, options, signals
 *   vtmemd-pool.c     the daemon's state, coalesced rebalancing
 *   vtmemd-conn.c     listener, connection caps, I/O, lifetime, ghosts
 *   vtmemd-device.c   device messages, claim bounds, peer identity
 *   vtmemd-control.c  control messages (root)
 *   vtmemd-state.c    per-VM settings and the state file
 *   vtmemd-pressure.c --auto-pool: memory state readings, the pool timer
 *   vtmemd-metrics.c  --metrics-listen: Prometheus text over HTTP
 * The parts are a library so that the fuzzer (tests/fuzz) drives the same
 * line handling without sockets.
 */
#ifndef VTMEMD_H
#define VTMEMD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

#include "vtmem-autopool.h"
#include "vtmem-policy.h"
#include "vtmem-pool-proto.h"
#include "vtmem-line-conn.h"
#include "vtmem-pool-util.h"

/*
 * A device may hold this much above its lease: the store's fixed costs
 * at creation and one reservation racing a lowered limit.
 */
#define VTMEMD_BASELINE_BYTES       VTMEM_POOL_GRANULE
/*
 * File descriptors kept out of the connection budget (stdio, listener,
 * GLib's wakeup and signal fds, the state file, accept's transient fd).
 */
#define VTMEMD_FD_SLACK             32
/* Connections only root (and the daemon's uid) may use. */
#define VTMEMD_CONTROL_RESERVE      8
/* Connections (ghosts included) per peer process: one per device. */
#define VTMEMD_MAX_PER_PID          8
/* At most one rebalancing pass per this many ms. */
#define VTMEMD_REBALANCE_MIN_MS     10
/*
 * A device whose refusal count grew is pressed for this long after
 * (default of --pressed-hold-ms): leases by demand follow a trend, not
 * one refused put.
 */
#define VTMEMD_PRESSED_HOLD_MS      10000
/* The listener pauses this long when the daemon is out of fds. */
#define VTMEMD_ACCEPT_BACKOFF_MS    100
/* At most one log line per this many seconds for a repeated condition. */
#define VTMEMD_LOG_INTERVAL_S       10

typedef enum {
    CONN_NEW,       /* accepted, no line yet */
    CONN_DEVICE,    /* registered device */
    CONN_CONTROL,   /* vtmemctl */
    CONN_GHOST,     /* device whose connection closed but whose process lives */
} ConnKind;

typedef struct Daemon Daemon;
typedef struct VtmemdMetrics VtmemdMetrics;

/* Where --auto-pool reads the VMs' memory state. */
typedef struct VtmemdCgroup {
    char *psi_dir;      /* memory.pressure here; NULL: the host's */
    char *mem_dir;      /* memory.current... here; NULL: no cgroup */
    bool v2_memory;     /* mem_dir has v2 files (else v1's) */
} VtmemdCgroup;

typedef struct Conn {
    Daemon *d;
    guint64 id;
    ConnKind kind;
    VtmemLineConn *lc;  /* the socket (fd -1 in the fuzzer); NULL: ghost */
    guint hello_src, pidfd_src;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    int pidfd;
    bool trusted;       /* uid 0 or the daemon's uid: may send control */
    char *label;        /* SO_PEERSEC, if any */
    char *doomed;       /* set: to be closed by the reaper, with this reason */
    bool bye;           /* device said BYE: it dropped everything */
    bool evicted;       /* root dropped it: no ghost */
    bool claim_warned;  /* logged a claim above its grant once */

    /* devices */
    char uuid[VTMEM_POOL_UUID_LEN + 1];
    char *name;
    uint64_t held;      /* last reported memory held (bounded) */
    uint64_t wanted;    /* last reported demand (<= VTMEM_POOL_MAX_BYTES) */
    uint64_t cap;       /* device's own limit (<= VTMEM_POOL_MAX_BYTES) */
    uint64_t limit;     /* limit the device confirmed (or reported) */
    bool has_pending;   /* a LIMIT was sent and not yet acknowledged */
    uint64_t pending;   /* its value */
    uint64_t seq;       /* last LIMIT sequence number sent */
    uint64_t target;    /* the policy's latest allocation */
    uint64_t granted;   /* most it may hold by its leases (w/o baseline) */
    bool has_counters;  /* it reported refusals and stored pages */
    uint64_t refusals;  /* puts its store refused for the limit, ever */
    uint64_t stored_pages;
    gint64 pressed_until;       /* monotonic us; pressed before */
    VtmemShareReason reason;    /* why its target is what it is */
} Conn;

typedef struct VmSettings {
    uint32_t weight;
    uint64_t vm_limit;  /* UINT64_MAX: none */
} VmSettings;

struct Daemon {
    GMainLoop *loop;
    char *socket_path;
    int listen_fd;
    guint listen_src;
    uint64_t pool_limit;    /* the pool now */
    uint64_t pool_ceiling;  /* --pool-limit: --auto-pool stays below */
    bool auto_pool;
    VtmemdCgroup cgroup;
    VtmemAutoPoolConfig autopool_cfg;
    VtmemAutoPoolState autopool_state;
    VtmemMemReading last_reading;
    uint32_t last_pressure;
    VtmemAutoPoolReason last_reason;
    guint autopool_src;
    gint64 autopool_warned;
    guint64 n_autopool, n_autopool_changes;
    VtmemdMetrics *metrics; /* NULL: no --metrics-listen */
    gint64 grace_until;     /* monotonic us; no increases before */
    guint grace_src;
    bool have_allow_gid;
    gid_t allow_gid;
    GList *conns;           /* Conn*, in accept order */
    guint n_conns;
    guint max_conns;        /* from RLIMIT_NOFILE */
    GHashTable *per_uid;    /* uid -> connections */
    GHashTable *per_pid;    /* pid -> connections */
    guint64 next_id;
    guint reap_src;
    guint rebalance_src;
    gint64 last_rebalance;  /* monotonic us */
    guint64 n_rebalances;
    guint64 n_decisions;    /* target changes (each logged with a reason) */
    gint64 pressed_hold_us; /* --pressed-hold-ms */
    guint pressed_src;      /* rebalances when a pressed device's hold ends */
    guint accept_src;       /* listener paused: resumes from here */
    gint64 accept_warned;   /* monotonic us of the last EMFILE line */
    guint64 accept_failures;
    GHashTable *settings;   /* lower-case uuid -> VmSettings */
    char *state_file;       /* per-VM settings survive restarts here */
};

/* vtmemd-pool.c */
void daemon_init(Daemon *d, uint64_t pool_limit, int grace_ms);
void daemon_fini(Daemon *d);
void daemon_schedule_rebalance(Daemon *d);
void rebalance(Daemon *d);
bool in_grace(Daemon *d);
bool conn_pressed(const Conn *c);

/* vtmemd-conn.c */
void conn_log(Conn *c, GLogLevelFlags level, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
void conn_send(Conn *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void conn_doom(Conn *c, const char *reason);
void conn_fail(Conn *c, const char *why);
uint64_t sat_add(uint64_t a, uint64_t b);
uint64_t conn_charge(const Conn *c);
uint64_t total_charge(Daemon *d);
Conn *conn_add(Daemon *d, int fd, uid_t uid, gid_t gid, pid_t pid, int pidfd);
void conn_input(Conn *c, const char *data, size_t len);
gboolean reap(gpointer data);
void conns_free(Daemon *d);
int make_listener(const char *path, GError **error);
void listener_start(Daemon *d);
guint max_connections(void);

/* vtmemd-device.c */
void handle_register(Conn *c, char **f, unsigned nf);
void handle_device_line(Conn *c, char **f, unsigned nf);
void send_limit(Conn *c, uint64_t limit);

/* vtmemd-control.c */
void handle_control_line(Conn *c, char **f, unsigned nf);

/* vtmemd-state.c */
VmSettings *settings_lookup(Daemon *d, const char *uuid, bool create);
void settings_save(Daemon *d);
bool settings_load(Daemon *d, GError **error);
uint64_t conn_cap(Daemon *d, Conn *c);
uint32_t conn_weight(Daemon *d, Conn *c);

/* vtmemd-pressure.c */
bool vtmemd_parse_psi(const char *text, VtmemMemReading *r);
bool vtmemd_read_memory(const VtmemdCgroup *cg, VtmemMemReading *r,
                        GError **error);
bool vtmemd_cgroup_resolve(const char *path, VtmemdCgroup *cg,
                           GError **error);
void vtmemd_cgroup_clear(VtmemdCgroup *cg);
void autopool_start(Daemon *d, guint interval_ms);

/* vtmemd-metrics.c */
char *vtmemd_metrics_render(Daemon *d);
bool metrics_start(Daemon *d, const char *spec, GError **error);
void metrics_refresh(Daemon *d);
void metrics_stop(Daemon *d);

#endif /* VTMEMD_H */
