/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "vtmem-policy.h"

#include <stdbool.h>

#include <glib.h>

__extension__ typedef unsigned __int128 u128;

static uint64_t want_of(const VtmemShare *s)
{
    return s->demand < s->cap ? s->demand : s->cap;
}

static uint64_t weight_of(const VtmemShare *s)
{
    return s->weight ? s->weight : 1;
}

void vtmem_policy_allocate_fair(VtmemShare *v, size_t n, uint64_t total)
{
    g_autofree bool *active = NULL;
    g_autofree uint64_t *frac = NULL;
    uint64_t sum = 0, remaining = total;
    size_t i, n_active = n;
    bool overflow = false;

    for (i = 0; i < n; i++) {
        uint64_t w = want_of(&v[i]);

        v[i].alloc = 0;
        if (sum + w < sum) {
            overflow = true;
        }
        sum += w;
    }
    if (!overflow && sum <= total) {
        for (i = 0; i < n; i++) {
            v[i].alloc = want_of(&v[i]);
        }
        return;
    }

    active = g_new(bool, n);
    frac = g_new0(uint64_t, n);
    for (i = 0; i < n; i++) {
        active[i] = true;
    }

    /* Water-filling: satisfy every VM whose want fits in its share. */
    while (n_active > 0) {
        u128 wsum = 0;
        bool satisfied = false;

        for (i = 0; i < n; i++) {
            if (active[i]) {
                wsum += weight_of(&v[i]);
            }
        }
        for (i = 0; i < n; i++) {
            if (active[i] && (u128)want_of(&v[i]) * wsum <=
                             (u128)remaining * weight_of(&v[i])) {
                v[i].alloc = want_of(&v[i]);
                remaining -= v[i].alloc;
                active[i] = false;
                n_active--;
                satisfied = true;
            }
        }
        if (satisfied) {
            continue;
        }
        /* Nobody left is satisfied: split remaining by weight. */
        {
            uint64_t given = 0, leftover;

            for (i = 0; i < n; i++) {
                if (active[i]) {
                    u128 p = (u128)remaining * weight_of(&v[i]);

                    v[i].alloc = (uint64_t)(p / wsum);
                    frac[i] = (uint64_t)(p % wsum);
                    given += v[i].alloc;
                }
            }
            leftover = remaining - given;  /* < n_active */
            while (leftover > 0) {
                size_t best = n;

                for (i = 0; i < n; i++) {
                    if (active[i] && v[i].alloc < want_of(&v[i]) &&
                        (best == n || frac[i] > frac[best])) {
                        best = i;
                    }
                }
                if (best == n) {
                    break;
                }
                v[best].alloc++;
                active[best] = false;   /* one extra unit each at most */
                leftover--;
            }
        }
        break;
    }
}

const char *vtmem_share_reason_name(VtmemShareReason r)
{
    static const char *const names[] = {
        [VTMEM_SHARE_WANT] = "want",
        [VTMEM_SHARE_CAP] = "cap",
        [VTMEM_SHARE_FAIR] = "fair",
        [VTMEM_SHARE_PRESSED] = "pressed",
        [VTMEM_SHARE_LENT] = "lent",
    };

    return (size_t)r < G_N_ELEMENTS(names) ? names[r] : "?";
}

/*
 * Among the VMs with pressed == which: each gets floor[i] (their sum is
 * at most budget) plus a weighted max-min share of the rest of budget
 * up to its want. Returns the units used.
 */
static uint64_t allocate_group(VtmemShare *v, size_t n, bool which,
                               const uint64_t *floor, uint64_t budget)
{
    g_autofree VtmemShare *g = g_new(VtmemShare, n ? n : 1);
    size_t m = 0, i;
    uint64_t used = 0;

    for (i = 0; i < n; i++) {
        if (v[i].pressed == which) {
            g[m] = v[i];
            g[m].demand = want_of(&v[i]) - floor[i];
            g[m].cap = UINT64_MAX;
            budget -= floor[i];
            m++;
        }
    }
    vtmem_policy_allocate_fair(g, m, budget);
    for (i = 0, m = 0; i < n; i++) {
        if (v[i].pressed == which) {
            v[i].alloc = floor[i] + g[m++].alloc;
            used += v[i].alloc;
        }
    }
    return used;
}

void vtmem_policy_allocate(VtmemShare *v, size_t n, uint64_t total)
{
    g_autofree uint64_t *floor = NULL;
    size_t n_pressed = 0, i;
    bool mixed;

    for (i = 0; i < n; i++) {
        n_pressed += v[i].pressed;
    }
    mixed = n_pressed > 0 && n_pressed < n;
    if (!mixed) {
        vtmem_policy_allocate_fair(v, n, total);
    } else {
        u128 wsum = 0, floors = 0;

        floor = g_new0(uint64_t, n);
        for (i = 0; i < n; i++) {
            wsum += weight_of(&v[i]);
        }
        for (i = 0; i < n; i++) {
            if (!v[i].pressed) {
                u128 f = (u128)total * weight_of(&v[i]) *
                         VTMEM_POLICY_IDLE_KEEP_PCT / (wsum * 100);

                floor[i] = f < want_of(&v[i]) ? (uint64_t)f : want_of(&v[i]);
                floors += floor[i];
            }
        }
        /* floors <= total * KEEP_PCT / 100: the idle VMs' guarantee */
        total -= allocate_group(v, n, true, floor, total - (uint64_t)floors);
        allocate_group(v, n, false, floor, total);
    }
    for (i = 0; i < n; i++) {
        if (v[i].alloc >= want_of(&v[i])) {
            v[i].reason = v[i].cap < v[i].demand ? VTMEM_SHARE_CAP
                                                 : VTMEM_SHARE_WANT;
        } else if (!mixed) {
            v[i].reason = VTMEM_SHARE_FAIR;
        } else {
            v[i].reason = v[i].pressed ? VTMEM_SHARE_PRESSED
                                       : VTMEM_SHARE_LENT;
        }
    }
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

uint64_t vtmem_lease_charge(const VtmemLease *l)
{
    uint64_t ch = l->limit;

    if (l->has_pending && l->pending > ch) {
        ch = l->pending;
    }
    return l->held > ch ? l->held : ch;
}

void vtmem_lease_plan(VtmemLease *v, size_t n, uint64_t pool_limit,
                      uint64_t other_charge, bool allow_raise)
{
    uint64_t charged = other_charge, headroom;
    size_t i;

    for (i = 0; i < n; i++) {
        v[i].send = false;
    }
    /* Decreases first: always safe. */
    for (i = 0; i < n; i++) {
        if (!v[i].has_pending && v[i].target < v[i].limit) {
            v[i].has_pending = true;
            v[i].pending = v[i].target;
            v[i].send = true;
        }
    }
    if (!allow_raise) {
        return;
    }
    for (i = 0; i < n; i++) {
        charged = sat_add(charged, vtmem_lease_charge(&v[i]));
    }
    headroom = pool_limit > charged ? pool_limit - charged : 0;
    for (i = 0; i < n && headroom > 0; i++) {
        VtmemLease *l = &v[i];
        uint64_t before, after, nl;

        if (l->has_pending || l->target <= l->limit) {
            continue;
        }
        before = vtmem_lease_charge(l);
        /* the highest limit whose charge fits in the headroom */
        nl = l->target;
        if ((nl > l->held ? nl : l->held) - before > headroom) {
            nl = before + headroom;
        }
        if (nl <= l->limit) {
            continue;
        }
        after = nl > l->held ? nl : l->held;
        headroom -= after - before;
        l->has_pending = true;
        l->pending = nl;
        l->send = true;
    }
}
