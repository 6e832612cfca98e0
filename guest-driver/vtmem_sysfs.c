// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * /sys/block/vtmem0/vtmem/: configuration and statistics.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vtmem_drv.h"

static ssize_t disksize_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;

	return sysfs_emit(buf, "%llu\n", (u64)vt->nr_slots << PAGE_SHIFT);
}

static ssize_t disksize_store(struct device *dev, struct device_attribute *attr,
			      const char *buf, size_t len)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;
	u64 size = memparse(buf, NULL);
	u64 nr = size >> PAGE_SHIFT;
	unsigned long *table;

	if (!nr)
		return -EINVAL;
	table = vzalloc(array_size(nr, sizeof(*table)));
	if (!table)
		return -ENOMEM;
	down_write(&vt->init_lock);
	if (vt->table) {
		up_write(&vt->init_lock);
		vfree(table);
		return -EBUSY;
	}
	vt->table = table;
	vt->nr_slots = nr;
	set_capacity_and_notify(vt->disk, nr * VT_SECTORS_PER_PAGE);
	up_write(&vt->init_lock);
	return len;
}

static ssize_t backing_dev_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;
	ssize_t ret;

	down_read(&vt->init_lock);
	ret = sysfs_emit(buf, "%s\n", vt->backing_name ?: "none");
	up_read(&vt->init_lock);
	return ret;
}

static ssize_t backing_dev_store(struct device *dev,
				 struct device_attribute *attr,
				 const char *buf, size_t len)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;
	struct block_device *bdev;
	struct file *file;
	unsigned long *bitmap;
	u64 nr_blocks;
	char *name;
	int ret = 0;

	name = kstrndup(buf, PATH_MAX, GFP_KERNEL);
	if (!name)
		return -ENOMEM;
	strim(name);

	down_write(&vt->init_lock);
	if (vt->table) {
		ret = -EBUSY;
		goto out;
	}
	if (!*name || !strcmp(name, "none")) {
		vt_detach_backing(vt);
		goto out;
	}
	if (vt->bdev) {
		ret = -EBUSY;
		goto out;
	}
	file = filp_open(name, O_RDWR | O_LARGEFILE | O_EXCL, 0);
	if (IS_ERR(file)) {
		ret = PTR_ERR(file);
		goto out;
	}
	if (!S_ISBLK(file_inode(file)->i_mode)) {
		filp_close(file, NULL);
		ret = -ENOTBLK;
		goto out;
	}
	bdev = vt_compat_file_bdev(file);
	nr_blocks = bdev_nr_sectors(bdev) / VT_SECTORS_PER_PAGE;
	bitmap = nr_blocks ? kvcalloc(BITS_TO_LONGS(nr_blocks), sizeof(long),
				      GFP_KERNEL) : NULL;
	if (!bitmap) {
		filp_close(file, NULL);
		ret = nr_blocks ? -ENOMEM : -EINVAL;
		goto out;
	}
	vt->backing_file = file;
	vt->bdev = bdev;
	vt->blk_bitmap = bitmap;
	vt->nr_blocks = nr_blocks;
	vt->blk_hint = 0;
	vt->backing_name = name;
	name = NULL;
	pr_info("%s: backing device %s, %llu blocks\n", vt->disk->disk_name,
		vt->backing_name, nr_blocks);
out:
	up_write(&vt->init_lock);
	kfree(name);
	return ret ? ret : len;
}

static ssize_t reset_store(struct device *dev, struct device_attribute *attr,
			   const char *buf, size_t len)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;
	struct gendisk *disk = vt->disk;
	bool do_reset;
	int ret;

	ret = kstrtobool(buf, &do_reset);
	if (ret)
		return ret;
	if (!do_reset)
		return -EINVAL;
	mutex_lock(&disk->open_mutex);
	if (disk_openers(disk) || vt->claim) {
		mutex_unlock(&disk->open_mutex);
		return -EBUSY;
	}
	vt->claim = true;
	mutex_unlock(&disk->open_mutex);

	vt_reset(vt);

	mutex_lock(&disk->open_mutex);
	vt->claim = false;
	mutex_unlock(&disk->open_mutex);
	return len;
}

/*
 * Statistics, split by concern the way zram splits mm_stat, io_stat and
 * bd_stat, as "key value" lines: mm_stat (where the pages are), io_stat
 * (requests to the host and bios), bd_stat (the backing disk), shrink_stat
 * (giving host memory back). stat is all four in that order, kept for
 * scripts written before the split.
 */
static int vt_mm_stat(struct vtmem *vt, char *buf, int at)
{
	struct vtmem_stats *s = &vt->stats;

	return sysfs_emit_at(buf, at,
		"pages_host %lld\npages_disk %lld\npages_same %lld\n",
		atomic64_read(&s->pages_host), atomic64_read(&s->pages_disk),
		atomic64_read(&s->pages_same));
}

static int vt_io_stat(struct vtmem *vt, char *buf, int at)
{
	struct vtmem_stats *s = &vt->stats;

	return sysfs_emit_at(buf, at,
		"host_attached %d\nhost_puts %lld\nhost_refusals %lld\n"
		"host_skipped %lld\nhost_gets %lld\nhost_errors %lld\n"
		"invalidated_slots %lld\ninvalidate_batches %lld\n"
		"invalidate_ranges %lld\ninvalidate_overflows %lld\n"
		"notify_free %lld\nbio_pages %lld\nfailed_reads %lld\n"
		"failed_writes %lld\ninvalid_io %lld\n",
		READ_ONCE(vt->host.ready) ? 1 : 0,
		atomic64_read(&s->host_puts), atomic64_read(&s->host_refusals),
		atomic64_read(&s->host_skipped), atomic64_read(&s->host_gets),
		atomic64_read(&s->host_errors), atomic64_read(&s->inv_slots),
		atomic64_read(&s->inv_reqs), atomic64_read(&s->range_reqs),
		atomic64_read(&s->inv_overflows),
		atomic64_read(&s->notify_free), atomic64_read(&s->bio_pages),
		atomic64_read(&s->failed_reads),
		atomic64_read(&s->failed_writes), atomic64_read(&s->invalid_io));
}

static int vt_bd_stat(struct vtmem *vt, char *buf, int at)
{
	struct vtmem_stats *s = &vt->stats;
	u64 used = 0, total;

	down_read(&vt->init_lock);
	if (vt->blk_bitmap)
		used = bitmap_weight(vt->blk_bitmap, vt->nr_blocks);
	total = vt->nr_blocks;
	up_read(&vt->init_lock);
	return sysfs_emit_at(buf, at,
		"disk_blocks_used %llu\ndisk_blocks_total %llu\n"
		"disk_reads %lld\ndisk_writes %lld\n", used, total,
		atomic64_read(&s->disk_reads), atomic64_read(&s->disk_writes));
}

static int vt_shrink_stat(struct vtmem *vt, char *buf, int at)
{
	struct vtmem_stats *s = &vt->stats;

	return sysfs_emit_at(buf, at,
		"shrink_target %lld\nshrink_runs %lld\nshrink_pages %lld\n"
		"shrink_bytes %lld\nshrink_failures %lld\nshrink_stuck %lld\n"
		"shrink_blocked %lld\n",
		atomic64_read(&s->shrink_target), atomic64_read(&s->shrink_runs),
		atomic64_read(&s->shrink_pages),
		atomic64_read(&s->shrink_pages) * PAGE_SIZE,
		atomic64_read(&s->shrink_failures),
		atomic64_read(&s->shrink_stuck),
		atomic64_read(&s->shrink_blocked));
}

static ssize_t mm_stat_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return vt_mm_stat(dev_to_disk(dev)->private_data, buf, 0);
}

static ssize_t io_stat_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return vt_io_stat(dev_to_disk(dev)->private_data, buf, 0);
}

static ssize_t bd_stat_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return vt_bd_stat(dev_to_disk(dev)->private_data, buf, 0);
}

static ssize_t shrink_stat_show(struct device *dev,
				struct device_attribute *attr, char *buf)
{
	return vt_shrink_stat(dev_to_disk(dev)->private_data, buf, 0);
}

static ssize_t stat_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;
	int len;

	len = vt_mm_stat(vt, buf, 0);
	len += vt_io_stat(vt, buf, len);
	len += vt_bd_stat(vt, buf, len);
	len += vt_shrink_stat(vt, buf, len);
	return len;
}

static ssize_t host_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;
	u64 limit = 0, usage = 0, nr_slots = 0, target = 0;
	int attached, shrink = 0;

	mutex_lock(&vt->host_mutex);
	attached = !!vt->host.vdev;
	if (attached) {
		virtio_cread_le(vt->host.vdev, struct virtio_tmem_config,
				limit, &limit);
		usage = vt_read_usage(vt->host.vdev);
		virtio_cread_le(vt->host.vdev, struct virtio_tmem_config,
				shrink_target, &target);
		nr_slots = vt->host.nr_slots;
		shrink = READ_ONCE(vt->host.shrink_on);
	}
	mutex_unlock(&vt->host_mutex);
	return sysfs_emit(buf, "attached %d\nnr_slots %llu\nlimit %llu\nusage %llu\n"
			  "shrink %d\nshrink_target %llu\n",
			  attached, nr_slots, limit, usage, shrink, target);
}

static DEVICE_ATTR_RW(disksize);
static DEVICE_ATTR_RW(backing_dev);
static DEVICE_ATTR_WO(reset);
static DEVICE_ATTR_RO(stat);
static DEVICE_ATTR_RO(mm_stat);
static DEVICE_ATTR_RO(io_stat);
static DEVICE_ATTR_RO(bd_stat);
static DEVICE_ATTR_RO(shrink_stat);
static DEVICE_ATTR_RO(host);

static struct attribute *vtmem_attrs[] = {
	&dev_attr_disksize.attr,
	&dev_attr_backing_dev.attr,
	&dev_attr_reset.attr,
	&dev_attr_stat.attr,
	&dev_attr_mm_stat.attr,
	&dev_attr_io_stat.attr,
	&dev_attr_bd_stat.attr,
	&dev_attr_shrink_stat.attr,
	&dev_attr_host.attr,
	NULL,
};

static const struct attribute_group vtmem_group = {
	.name = "vtmem",
	.attrs = vtmem_attrs,
};

const struct attribute_group *vtmem_groups[] = {
	&vtmem_group,
	NULL,
};
