// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * 6.11: queue features (synchronous, stable writes, rotational) are
 * queue_limits.features bits; QUEUE_FLAG_NONROT/ADD_RANDOM are gone.
 */
#include <linux/blkdev.h>

struct queue_limits probe = {
	.features = BLK_FEAT_SYNCHRONOUS | BLK_FEAT_STABLE_WRITES,
};
