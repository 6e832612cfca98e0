// SPDX-License-Identifier: GPL-2.0-or-later
/* 6.5 (d32e2bf8, 05bdb996): ->open(struct gendisk *, blk_mode_t). */
#include <linux/blkdev.h>

static int probe_open(struct gendisk *disk, blk_mode_t mode)
{
	return 0;
}

const struct block_device_operations probe = { .open = probe_open };
