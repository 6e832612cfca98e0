/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtmem-autopool.h"

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static uint64_t round_down(uint64_t v, uint64_t g)
{
    return v / g * g;
}

/* The "some" stall share since the previous decision, from the totals. */
static uint32_t recent_pressure(const VtmemAutoPoolState *prev,
                                const VtmemMemReading *r)
{
    uint64_t dt_us, stall;

    if (!prev->has_prev || r->now_ms <= prev->prev_ms ||
        r->some_total_us < prev->prev_some_total_us) {
        return 0;
    }
    dt_us = (r->now_ms - prev->prev_ms) * 1000;
    stall = r->some_total_us - prev->prev_some_total_us;
    if (stall >= dt_us) {
        return VTMEM_PRESSURE_ALL;
    }
    return (uint32_t)(stall * VTMEM_PRESSURE_ALL / dt_us);
}

static uint64_t free_memory(const VtmemMemReading *r)
{
    uint64_t free_b = r->mem_available;

    if (r->has_cgroup) {
        uint64_t lim = min_u64(r->cg_max, r->cg_high);

        if (lim != UINT64_MAX) {
            free_b = min_u64(free_b,
                             lim > r->cg_current ? lim - r->cg_current : 0);
        }
    }
    return free_b;
}

VtmemAutoPoolDecision vtmem_autopool_decide(const VtmemAutoPoolConfig *cfg,
                                            const VtmemAutoPoolState *prev,
                                            const VtmemMemReading *r,
                                            VtmemAutoPoolState *next)
{
    const uint64_t g = cfg->granule ? cfg->granule : 1;
    const uint64_t ceil_g = round_down(cfg->ceiling, g);
    const uint64_t floor_g = min_u64(round_down(cfg->floor + g - 1, g),
                                     ceil_g);
    VtmemAutoPoolDecision out = { 0 };
    uint64_t pool = min_u64(max_u64(round_down(prev->pool, g), floor_g),
                            ceil_g);
    uint64_t free_b, goal;
    uint32_t pressure;

    *next = *prev;
    if (prev->has_prev) {
        pressure = recent_pressure(prev, r);
    } else {
        pressure = r->some_avg10 > VTMEM_PRESSURE_ALL ? VTMEM_PRESSURE_ALL
                                                      : r->some_avg10;
    }
    free_b = free_memory(r);
    if (free_b >= cfg->reserve) {
        goal = r->charged + min_u64(free_b - cfg->reserve,
                                    UINT64_MAX - r->charged);
    } else {
        goal = r->charged > cfg->reserve - free_b
               ? r->charged - (cfg->reserve - free_b) : 0;
    }
    goal = min_u64(max_u64(round_down(goal, g), floor_g), ceil_g);
    out.pressure = pressure;
    out.goal = goal;

    if (prev->has_prev && r->now_ms >= prev->prev_ms &&
        r->now_ms - prev->prev_ms < cfg->min_interval_ms) {
        out.pool = pool;
        out.reason = VTMEM_AUTOPOOL_RATE_LIMIT;
        next->pool = pool;
        return out;
    }
    next->has_prev = true;
    next->prev_ms = r->now_ms;
    next->prev_some_total_us = r->some_total_us;

    if (pressure >= cfg->shrink_at) {
        uint64_t cut = max_u64(g, round_down(pool / 100 * cfg->shrink_pct,
                                             g));
        uint64_t np = pool > floor_g + cut ? pool - cut : floor_g;

        np = min_u64(np, goal);
        if (np < pool) {
            out.reason = VTMEM_AUTOPOOL_PRESSURE;
            next->has_shrunk = true;
            next->last_shrink_ms = r->now_ms;
        } else {
            out.reason = VTMEM_AUTOPOOL_AT_FLOOR;
        }
        pool = np;
    } else if (goal + g <= pool) {
        pool = goal;
        out.reason = VTMEM_AUTOPOOL_LOW_FREE;
        next->has_shrunk = true;
        next->last_shrink_ms = r->now_ms;
    } else if (goal >= pool + g) {
        if (pressure >= cfg->grow_below) {
            out.reason = VTMEM_AUTOPOOL_PRESSURED;
        } else if (prev->has_shrunk &&
                   r->now_ms - prev->last_shrink_ms < cfg->grow_hold_ms) {
            out.reason = VTMEM_AUTOPOOL_SETTLING;
        } else {
            pool = min_u64(goal, pool + max_u64(round_down(cfg->grow_step,
                                                           g), g));
            out.reason = VTMEM_AUTOPOOL_GROW;
        }
    } else {
        out.reason = VTMEM_AUTOPOOL_STEADY;
    }
    out.pool = pool;
    next->pool = pool;
    return out;
}

const char *vtmem_autopool_reason_str(VtmemAutoPoolReason reason)
{
    switch (reason) {
    case VTMEM_AUTOPOOL_STEADY:
        return "steady: within a granule of the goal";
    case VTMEM_AUTOPOOL_PRESSURE:
        return "shrink: memory pressure";
    case VTMEM_AUTOPOOL_AT_FLOOR:
        return "hold: memory pressure, at the floor";
    case VTMEM_AUTOPOOL_LOW_FREE:
        return "shrink: free memory below the reserve";
    case VTMEM_AUTOPOOL_GROW:
        return "grow: free memory, no pressure";
    case VTMEM_AUTOPOOL_PRESSURED:
        return "hold: pressure not below the growth threshold";
    case VTMEM_AUTOPOOL_SETTLING:
        return "hold: too soon after a shrink";
    case VTMEM_AUTOPOOL_RATE_LIMIT:
        return "hold: too soon after the last decision";
    }
    return "?";
}
