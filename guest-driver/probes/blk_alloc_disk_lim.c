// SPDX-License-Identifier: GPL-2.0-or-later
/* 6.9 (74fa8f9c): blk_alloc_disk(lim, node), ERR_PTR on failure. */
#include <linux/blkdev.h>

struct gendisk *probe(struct queue_limits *lim);
struct gendisk *probe(struct queue_limits *lim)
{
	return blk_alloc_disk(lim, NUMA_NO_NODE);
}
