/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The pool's sharing policy: weighted max-min fairness with caps.
 * Pure function, no I/O: unit-tested directly (tests/daemon/test-policy.c).
 */
#ifndef VTMEM_POLICY_H
#define VTMEM_POLICY_H

#include <stddef.h>
#include <stdint.h>

typedef struct VtmemShare {
    uint64_t demand;    /* units the VM wants */
    uint64_t cap;       /* most units it may get (UINT64_MAX: no cap) */
    uint32_t weight;    /* share under contention; 0 is treated as 1 */
    uint64_t alloc;     /* out: units allocated */
} VtmemShare;

/*
 * Allocate at most total units among v[0..n-1]:
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
void vtmem_policy_allocate(VtmemShare *v, size_t n, uint64_t total);

#endif /* VTMEM_POLICY_H */
