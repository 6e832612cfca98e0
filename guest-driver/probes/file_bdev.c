// SPDX-License-Identifier: GPL-2.0-or-later
/* 6.9: file_bdev() gives the block device of an opened block device file. */
#include <linux/blkdev.h>
#include <linux/fs.h>

struct block_device *probe(struct file *f);
struct block_device *probe(struct file *f)
{
	return file_bdev(f);
}
