/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The kernel API differences the driver meets between
 * Linux 6.1 and 7.x. Each is decided by a feature probe (probes/NAME.c,
 * compiled against the target headers by probe.sh into vtmem_probed.h as
 * VT_HAVE_NAME), not by LINUX_VERSION_CODE: distribution kernels (RHEL 9's
 * 5.14) carry newer block APIs than their version says.
 */
#ifndef VTMEM_COMPAT_H
#define VTMEM_COMPAT_H

#include <linux/blkdev.h>
#include <linux/fs.h>
#include "vtmem_probed.h"

/*
 * A gendisk for a page-sized swap device: 4 KiB blocks, discard and
 * write-zeroes of any size, non-rotational, no entropy, stable pages
 * (the host reads the page while the PUT is in flight). @synchronous makes
 * swap SWP_SYNCHRONOUS_IO: BLK_FEAT_SYNCHRONOUS (6.11+),
 * QUEUE_FLAG_SYNCHRONOUS (6.3-6.10) or, before 6.3, ->rw_page (the caller's
 * fops). Returns an ERR_PTR on failure.
 */
static inline struct gendisk *vt_compat_alloc_disk(bool synchronous)
{
	struct gendisk *disk;
#ifdef VT_HAVE_BLK_ALLOC_DISK_LIM
	struct queue_limits lim = {
		.logical_block_size = PAGE_SIZE,
		.physical_block_size = PAGE_SIZE,
		.io_min = PAGE_SIZE,
		.io_opt = PAGE_SIZE,
		.dma_alignment = PAGE_SIZE - 1,
		.discard_granularity = PAGE_SIZE,
		.max_hw_discard_sectors = UINT_MAX,
		.max_write_zeroes_sectors = UINT_MAX,
#ifdef VT_HAVE_BLK_FEATURES
		.features = BLK_FEAT_STABLE_WRITES |
			    (synchronous ? BLK_FEAT_SYNCHRONOUS : 0),
#endif
	};

	disk = blk_alloc_disk(&lim, NUMA_NO_NODE);
	if (IS_ERR(disk))
		return disk;
#else
	struct request_queue *q;

	disk = blk_alloc_disk(NUMA_NO_NODE);
	if (!disk)
		return ERR_PTR(-ENOMEM);
	q = disk->queue;
	blk_queue_physical_block_size(q, PAGE_SIZE);
	blk_queue_logical_block_size(q, PAGE_SIZE);
	blk_queue_io_min(q, PAGE_SIZE);
	blk_queue_io_opt(q, PAGE_SIZE);
	blk_queue_dma_alignment(q, PAGE_SIZE - 1);
	q->limits.discard_granularity = PAGE_SIZE;
	blk_queue_max_discard_sectors(q, UINT_MAX);
	blk_queue_max_write_zeroes_sectors(q, UINT_MAX);
#endif
#ifndef VT_HAVE_BLK_FEATURES
	/* Queue flags until 6.10; from 6.11 non-rotational is the default. */
	blk_queue_flag_set(QUEUE_FLAG_NONROT, disk->queue);
	blk_queue_flag_clear(QUEUE_FLAG_ADD_RANDOM, disk->queue);
	blk_queue_flag_set(QUEUE_FLAG_STABLE_WRITES, disk->queue);
#ifdef VT_HAVE_QUEUE_FLAG_SYNCHRONOUS
	if (synchronous)
		blk_queue_flag_set(QUEUE_FLAG_SYNCHRONOUS, disk->queue);
#endif
#endif
	return disk;
}

/*
 * ->open() takes the gendisk and a blk_mode_t since 6.5, the block device
 * and an fmode_t before. Both call the driver's vt_disk_open().
 */
int vt_disk_open(struct gendisk *disk);

#ifdef VT_HAVE_OPEN_GENDISK
static inline int vt_compat_open(struct gendisk *disk, blk_mode_t mode)
{
	return vt_disk_open(disk);
}
#else
static inline int vt_compat_open(struct block_device *bdev, fmode_t mode)
{
	return vt_disk_open(bdev->bd_disk);
}
#endif

/*
 * The backing block device is opened as a file with O_EXCL, which claims
 * it exclusively on every kernel since 6.1 (blkdev_get_by_path() is gone
 * in 6.8), as zram does; filp_close() releases it.
 */
static inline struct block_device *vt_compat_file_bdev(struct file *file)
{
#ifdef VT_HAVE_FILE_BDEV
	return file_bdev(file);
#else
	return I_BDEV(file->f_mapping->host);
#endif
}

#endif /* VTMEM_COMPAT_H */
