// SPDX-License-Identifier: GPL-2.0-or-later
/* 6.3-6.10: QUEUE_FLAG_SYNCHRONOUS makes a swap device synchronous. */
#include <linux/blkdev.h>

void probe(struct request_queue *q);
void probe(struct request_queue *q)
{
	blk_queue_flag_set(QUEUE_FLAG_SYNCHRONOUS, q);
}
