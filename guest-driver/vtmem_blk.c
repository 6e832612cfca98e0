// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The block device: bios and rw_page for swap, slot-free notification.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vtmem_drv.h"

static bool vt_valid_io(struct vtmem *vt, sector_t sector, unsigned int size)
{
	u64 end;

	if (sector & (VT_SECTORS_PER_PAGE - 1))
		return false;
	if (size & (PAGE_SIZE - 1))
		return false;
	end = sector + (size >> SECTOR_SHIFT);
	return end <= (u64)vt->nr_slots * VT_SECTORS_PER_PAGE;
}

static void vt_do_bio(struct vtmem *vt, struct bio *bio)
{
	struct bvec_iter iter;
	struct bio_vec bv;
	u64 index;
	int ret = 0;

	down_read(&vt->init_lock);
	if (!vt->table ||
	    !vt_valid_io(vt, bio->bi_iter.bi_sector, bio->bi_iter.bi_size)) {
		atomic64_inc(&vt->stats.invalid_io);
		bio->bi_status = BLK_STS_IOERR;
		goto out;
	}
	index = bio->bi_iter.bi_sector / VT_SECTORS_PER_PAGE;
	switch (bio_op(bio)) {
	case REQ_OP_DISCARD:
	case REQ_OP_WRITE_ZEROES:
		vt_discard(vt, index, bio->bi_iter.bi_size >> PAGE_SHIFT);
		break;
	case REQ_OP_READ:
	case REQ_OP_WRITE:
		bio_for_each_segment(bv, bio, iter) {
			if (bv.bv_len != PAGE_SIZE) {
				atomic64_inc(&vt->stats.invalid_io);
				ret = -EINVAL;
			} else if (op_is_write(bio_op(bio))) {
				ret = vt_write_page(vt, index, bv.bv_page,
						    bv.bv_offset);
			} else {
				ret = vt_read_page(vt, index, bv.bv_page,
						   bv.bv_offset);
			}
			if (ret)
				break;
			atomic64_inc(&vt->stats.bio_pages);
			index++;
		}
		if (ret)
			bio->bi_status = BLK_STS_IOERR;
		break;
	case REQ_OP_FLUSH:
		break;
	default:
		bio->bi_status = BLK_STS_NOTSUPP;
		break;
	}
out:
	up_read(&vt->init_lock);
	bio_endio(bio);
}

void vt_bio_work(struct work_struct *work)
{
	struct vtmem *vt = container_of(work, struct vtmem, bio_work);
	struct bio *bio;

	for (;;) {
		spin_lock_irq(&vt->bio_lock);
		bio = bio_list_pop(&vt->bios);
		spin_unlock_irq(&vt->bio_lock);
		if (!bio)
			break;
		vt_do_bio(vt, bio);
	}
}

/*
 * With a backing device, bios are served by a worker: submit_bio_wait() to
 * the backing device cannot be called from submit_bio context
 * (current->bio_list). Without one (the backing device can only change
 * while the table is unset), they are served right here.
 */
static void vtmem_submit_bio(struct bio *bio)
{
	struct vtmem *vt = bio->bi_bdev->bd_disk->private_data;
	unsigned long flags;

	if (!READ_ONCE(vt->bdev)) {
		vt_do_bio(vt, bio);
		return;
	}

	spin_lock_irqsave(&vt->bio_lock, flags);
	bio_list_add(&vt->bios, bio);
	spin_unlock_irqrestore(&vt->bio_lock, flags);
	queue_work(vt->wq, &vt->bio_work);
}

#ifdef VT_HAVE_RW_PAGE
static int vtmem_rw_page(struct block_device *bdev, sector_t sector,
			 struct page *page, enum req_op op)
{
	struct vtmem *vt = bdev->bd_disk->private_data;
	u64 index = sector / VT_SECTORS_PER_PAGE;
	int ret;

	if (PageTransHuge(page))
		return -ENOTSUPP;
	down_read(&vt->init_lock);
	if (!vt->table || !vt_valid_io(vt, sector, PAGE_SIZE)) {
		atomic64_inc(&vt->stats.invalid_io);
		ret = -EINVAL;
	} else if (op_is_write(op)) {
		ret = vt_write_page(vt, index, page, 0);
	} else {
		ret = vt_read_page(vt, index, page, 0);
	}
	up_read(&vt->init_lock);
	/* On error the caller retries with a bio, which reports the error. */
	if (ret)
		return ret;
	page_endio(page, op_is_write(op), 0);
	return 0;
}
#endif

/* Atomic context, swap_lock held: must not sleep. */
static void vtmem_slot_free_notify(struct block_device *bdev,
				   unsigned long index)
{
	struct vtmem *vt = bdev->bd_disk->private_data;
	unsigned long e, inv, sf;

	atomic64_inc(&vt->stats.notify_free);
	if (!vt->table || index >= vt->nr_slots)
		return;
	sf = vt_slot_lock(vt, index);
	e = vt->table[index];
	if (e & VT_BUSY) {
		vt->table[index] = e | VT_FREE;
		vt_slot_unlock(vt, index, sf);
		return;
	}
	inv = vt_release(vt, e);
	vt->table[index] = vt_mk(VT_EMPTY, 0) | (e & VT_INV) | inv |
			   BIT(VT_LOCK);
	vt_slot_unlock(vt, index, sf);
	if (inv && !(e & VT_INV))
		vt_queue_inv(vt, index);
}

int vt_disk_open(struct gendisk *disk)
{
	struct vtmem *vt = disk->private_data;

	return vt->claim ? -EBUSY : 0;
}

/* Before 6.3, rw_page is what makes swap SWP_SYNCHRONOUS_IO. */
const struct block_device_operations vtmem_fops = {
	.owner = THIS_MODULE,
	.open = vt_compat_open,
	.submit_bio = vtmem_submit_bio,
#ifdef VT_HAVE_RW_PAGE
	.rw_page = vtmem_rw_page,
#endif
	.swap_slot_free_notify = vtmem_slot_free_notify,
};

/*
 * A swap device that is not SWP_SYNCHRONOUS_IO: swap-in goes through the
 * swap cache with readahead and keeps the slot (and the host copy) while
 * the page stays clean, so re-evicting it needs no PUT.
 */
const struct block_device_operations vtmem_fops_cached = {
	.owner = THIS_MODULE,
	.open = vt_compat_open,
	.submit_bio = vtmem_submit_bio,
	.swap_slot_free_notify = vtmem_slot_free_notify,
};
