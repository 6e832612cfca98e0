/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The automatic pool size (vtmemd --auto-pool, docs/vtmemd.md): from the
 * memory state of the VMs' cgroup and the host, a new pool limit and the
 * reason for it. A pure function, no I/O: unit-tested directly
 * (tests/daemon/test-autopool.c); vtmemd-pressure.c reads the files.
 */
#ifndef VTMEM_AUTOPOOL_H
#define VTMEM_AUTOPOOL_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Pressure is in hundredths of a percent of wall time (PSI's avg10 of
 * "12.34" is 1234); 10000 is all the time.
 */
#define VTMEM_PRESSURE_ALL  10000u

typedef struct VtmemMemReading {
    uint64_t now_ms;            /* monotonic */
    uint64_t mem_available;     /* /proc/meminfo MemAvailable, bytes */
    bool has_cgroup;
    uint64_t cg_current;        /* memory.current (v1: usage_in_bytes) */
    uint64_t cg_max;            /* memory.max; UINT64_MAX: none */
    uint64_t cg_high;           /* memory.high; UINT64_MAX: none */
    uint32_t some_avg10;        /* memory.pressure "some" avg10 */
    uint32_t full_avg10;        /* memory.pressure "full" avg10 */
    uint64_t some_total_us;     /* memory.pressure "some" total */
    uint64_t full_total_us;
    uint64_t charged;           /* what the pool's leases charge now */
} VtmemMemReading;

typedef struct VtmemAutoPoolConfig {
    uint64_t ceiling;           /* --pool-limit: never above */
    uint64_t floor;             /* never below (unless ceiling is lower) */
    uint64_t reserve;           /* memory left free for everything else */
    uint64_t granule;           /* sizes are multiples; the dead band */
    uint32_t shrink_at;         /* pressure at or above: shrink */
    uint32_t grow_below;        /* growth only once pressure fell below */
    uint32_t shrink_pct;        /* of the pool, per decision (>= 1 granule) */
    uint64_t grow_step;         /* most growth per decision */
    uint64_t grow_hold_ms;      /* no growth this long after a shrink */
    uint64_t min_interval_ms;   /* decisions at most this often */
} VtmemAutoPoolConfig;

typedef struct VtmemAutoPoolState {
    uint64_t pool;              /* current pool limit */
    bool has_prev;              /* the fields below are set */
    uint64_t prev_ms;           /* last decision */
    uint64_t prev_some_total_us;
    uint64_t last_shrink_ms;
    bool has_shrunk;
} VtmemAutoPoolState;

typedef enum {
    VTMEM_AUTOPOOL_STEADY,      /* within a granule of its goal */
    VTMEM_AUTOPOOL_PRESSURE,    /* pressure >= shrink_at: shrunk */
    VTMEM_AUTOPOOL_AT_FLOOR,    /* pressure, but already at the floor */
    VTMEM_AUTOPOOL_LOW_FREE,    /* free memory below the reserve */
    VTMEM_AUTOPOOL_GROW,        /* free memory and no pressure */
    VTMEM_AUTOPOOL_PRESSURED,   /* room, but pressure >= grow_below */
    VTMEM_AUTOPOOL_SETTLING,    /* room, but a shrink was too recent */
    VTMEM_AUTOPOOL_RATE_LIMIT,  /* too soon after the last decision */
} VtmemAutoPoolReason;

typedef struct VtmemAutoPoolDecision {
    uint64_t pool;              /* the new pool limit */
    VtmemAutoPoolReason reason;
    uint32_t pressure;          /* the pressure it used */
    uint64_t goal;              /* where free memory alone would put it */
} VtmemAutoPoolDecision;

/*
 * Pressure: the "some" stall share since the previous decision, from the
 * totals (avg10 only at the first decision): it reacts within one
 * interval, where avg10 (a 10 s decaying average) would keep shrinking
 * the pool for some 20 s after pressure ended; grow_hold_ms is the
 * smoothing instead.
 * Free: MemAvailable, and the cgroup's min(max, high) - current if any.
 * Goal: charged + free - reserve (below charged when free < reserve),
 * in granules, within [floor, ceiling].
 * Then, in this order:
 *   pressure >= shrink_at: pool -= max(granule, pool * shrink_pct / 100),
 *     no lower than the floor, lower still if the goal is lower;
 *   goal <= pool - granule: pool = goal (free memory below the reserve);
 *   goal >= pool + granule: grow by at most grow_step toward the goal,
 *     only if pressure is below grow_below (< shrink_at: the band
 *     between them holds, the hysteresis) and grow_hold_ms passed since
 *     the last shrink;
 *   otherwise the pool stays.
 * Guarantees: floor' <= pool <= ceiling (floor' = min(floor, ceiling)
 * rounded to granules), the pool is a multiple of granule; on constant
 * input it reaches a fixed point and stays there.
 */
VtmemAutoPoolDecision vtmem_autopool_decide(const VtmemAutoPoolConfig *cfg,
                                            const VtmemAutoPoolState *prev,
                                            const VtmemMemReading *r,
                                            VtmemAutoPoolState *next);

const char *vtmem_autopool_reason_str(VtmemAutoPoolReason reason);

#endif /* VTMEM_AUTOPOOL_H */
