/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The pool's sharing policy: weighted max-min fairness with caps, and the
 * lease arithmetic that moves devices toward their shares.
 * Pure functions, no I/O: unit-tested directly (tests/daemon/test-policy.c).
 */
#ifndef VTMEM_POLICY_H
#define VTMEM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Under contention an idle VM keeps at least this percentage of its
 * weighted share of the whole pool (or its want, if smaller); the rest of
 * its share is lent to the pressed VMs.
 */
#define VTMEM_POLICY_IDLE_KEEP_PCT  50

/* Why a VM got what it got (out). */
typedef enum VtmemShareReason {
    VTMEM_SHARE_WANT,       /* all it wants */
    VTMEM_SHARE_CAP,        /* wants more, held at its cap (per-VM limit) */
    VTMEM_SHARE_FAIR,       /* its weighted max-min share */
    VTMEM_SHARE_PRESSED,    /* pressed: shares what the idle VMs lend */
    VTMEM_SHARE_LENT,       /* idle: part of its share lent to pressed VMs */
} VtmemShareReason;

typedef struct VtmemShare {
    uint64_t demand;    /* units the VM wants */
    uint64_t cap;       /* most units it may get (UINT64_MAX: no cap) */
    uint32_t weight;    /* share under contention; 0 is treated as 1 */
    bool pressed;       /* its puts are being refused (demand signal) */
    uint64_t alloc;     /* out: units allocated */
    VtmemShareReason reason;    /* out */
} VtmemShare;

/* "want", "cap", "fair", "pressed", "lent" */
const char *vtmem_share_reason_name(VtmemShareReason r);

/*
 * Allocate at most total units among v[0..n-1]. When every VM is pressed,
 * or none is, the allocation is plain weighted max-min
 * (vtmem_policy_allocate_fair). When some are pressed and some idle:
 *  - every idle VM i is guaranteed its floor
 *      min(want_i, total * weight_i / sum(all weights) * KEEP_PCT / 100);
 *  - the pressed VMs share total - sum(floors) by weighted max-min;
 *  - the idle VMs get their floors, and share what is left above them
 *    by weighted max-min.
 * So a pressed VM gets more than an idle one of the same weight when both
 * want more than their share, an idle VM's lease above its floor is lent
 * while another VM is pressed, and comes back when that VM stops being
 * pressed or it is pressed itself.
 * Guarantees: sum(alloc) <= total; alloc_i <= want_i; deterministic.
 */
void vtmem_policy_allocate(VtmemShare *v, size_t n, uint64_t total);

/*
 * Plain weighted max-min, ignoring `pressed`. Allocate at most total
 * units among v[0..n-1]:
 *  - every VM gets at most want_i = min(demand_i, cap_i);
 *  - if the wants fit in total, everyone gets what it wants;
 *  - otherwise total is handed out completely (work-conserving), in
 *    proportion to weight, except that a VM whose want is below its
 *    proportional share keeps just its want and the rest is shared again
 *    among the others (weighted max-min fairness / water-filling).
 *    Rounding leftovers (< one unit per VM) go to the VMs with the largest
 *    fractional share, lowest index first on ties.
 * Guarantees: sum(alloc) <= total; alloc_i <= want_i; deterministic.
 */
void vtmem_policy_allocate_fair(VtmemShare *v, size_t n, uint64_t total);

/* One device's lease as the daemon sees it (bytes). */
typedef struct VtmemLease {
    uint64_t held;      /* memory the device reported holding */
    uint64_t limit;     /* limit it acknowledged (or reported) */
    bool has_pending;   /* a LIMIT is sent and not yet acknowledged */
    uint64_t pending;   /* its value */
    uint64_t target;    /* where the policy wants the limit */
    bool send;          /* out: send LIMIT `pending` now */
} VtmemLease;

/* Upper bound of what the device may hold: max(limit, pending, held). */
uint64_t vtmem_lease_charge(const VtmemLease *l);

/*
 * Move devices toward their targets without ever overcommitting:
 *  - every device without a LIMIT in flight whose target is below its
 *    limit is lowered to its target (always safe: the lowered part counts
 *    as used until the device acknowledges it);
 *  - if allow_raise, devices below their target are raised, in order,
 *    as far as the headroom pool_limit - (other_charge + sum of charges)
 *    allows; none is raised when there is no headroom.
 * A device to which a LIMIT is to be sent gets send = true and
 * has_pending/pending set to it. Guarantee: a raise never makes
 * other_charge + sum of charges exceed pool_limit; a device with a LIMIT
 * in flight is left alone.
 */
void vtmem_lease_plan(VtmemLease *v, size_t n, uint64_t pool_limit,
                      uint64_t other_charge, bool allow_raise);

#endif /* VTMEM_POLICY_H */
