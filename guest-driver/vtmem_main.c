// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * virtio_tmem: transcendent memory for KVM/QEMU guests.
 *
 * A swap block device (/dev/vtmem0) with frontswap semantics: pages go
 * synchronously to the host through the virtio-tmem device, refused ones
 * to an in-guest backing disk (see vtmem_drv.h for the design). This file:
 * the module, its parameters and the device's lifecycle.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vtmem_drv.h"

struct vtmem *vtmem_dev;
static int vtmem_major;

static bool sync_io = true;
module_param(sync_io, bool, 0444);
MODULE_PARM_DESC(sync_io,
		 "Synchronous swap device (SWP_SYNCHRONOUS_IO: swap-in frees the slot at once); 0: swap cache with readahead");

static unsigned int pend_max = 4096;
module_param(pend_max, uint, 0444);
MODULE_PARM_DESC(pend_max,
		 "Freed host slots queued for invalidation before falling back to a table scan");

void vt_detach_backing(struct vtmem *vt)
{
	if (!vt->bdev)
		return;
	filp_close(vt->backing_file, NULL);
	vt->backing_file = NULL;
	vt->bdev = NULL;
	kvfree(vt->blk_bitmap);
	vt->blk_bitmap = NULL;
	vt->nr_blocks = 0;
	vt->blk_hint = 0;
	kfree(vt->backing_name);
	vt->backing_name = NULL;
}

/* Drop everything: no table, no backing device, nothing on the host. */
void vt_reset(struct vtmem *vt)
{
	flush_work(&vt->bio_work);
	flush_work(&vt->inv_work);
	down_write(&vt->init_lock);
	spin_lock_irq(&vt->pend_lock);
	vt->pend_nr = 0;
	vt->pend_overflow = false;
	spin_unlock_irq(&vt->pend_lock);
	if (vt->table) {
		vfree(vt->table);
		vt->table = NULL;
		vt->nr_slots = 0;
		/* Safe without host_mutex: fails with -ENODEV when detached. */
		if (READ_ONCE(vt->host.ready))
			vt_host_call(vt, VIRTIO_TMEM_T_INVALIDATE_ALL, 0, 0,
				     NULL, false);
	}
	atomic64_set(&vt->stats.pages_host, 0);
	atomic64_set(&vt->stats.pages_disk, 0);
	atomic64_set(&vt->stats.pages_same, 0);
	vt_detach_backing(vt);
	set_capacity_and_notify(vt->disk, 0);
	up_write(&vt->init_lock);
}

static void vt_free(struct vtmem *vt)
{
	if (vt->wq)
		destroy_workqueue(vt->wq);
	mempool_destroy(vt->req_pool);
	kfree(vt->inv_batch);
	kfree(vt->inv_cand);
	kfree(vt->shrink_batch);
	kfree(vt->shrink_cand);
	if (vt->shrink_page)
		__free_page(vt->shrink_page);
	kfree(vt->pend);
	kfree(vt);
}

static int __init vtmem_init(void)
{
	struct vtmem *vt;
	struct gendisk *disk;
	int ret = -ENOMEM;

	vt = kzalloc(sizeof(*vt), GFP_KERNEL);
	if (!vt)
		return -ENOMEM;
	init_rwsem(&vt->init_lock);
	init_waitqueue_head(&vt->slot_wq);
	spin_lock_init(&vt->pend_lock);
	spin_lock_init(&vt->bio_lock);
	bio_list_init(&vt->bios);
	INIT_WORK(&vt->inv_work, vt_inv_work);
	INIT_WORK(&vt->bio_work, vt_bio_work);
	INIT_DELAYED_WORK(&vt->shrink_work, vt_shrink_work);
	mutex_init(&vt->host_mutex);
	spin_lock_init(&vt->host.lock);
	init_waitqueue_head(&vt->host.space_wq);

	vt->pend_cap = clamp(pend_max, 1U, 1U << 20);
	vt->pend = kcalloc(vt->pend_cap, sizeof(*vt->pend), GFP_KERNEL);
	vt->inv_cand = kcalloc(VIRTIO_TMEM_MAX_BATCH, sizeof(*vt->inv_cand),
			       GFP_KERNEL);
	vt->inv_batch = kcalloc(VIRTIO_TMEM_MAX_BATCH, sizeof(*vt->inv_batch),
				GFP_KERNEL);
	vt->shrink_cand = kcalloc(VIRTIO_TMEM_MAX_BATCH,
				  sizeof(*vt->shrink_cand), GFP_KERNEL);
	vt->shrink_batch = kcalloc(VIRTIO_TMEM_MAX_BATCH,
				   sizeof(*vt->shrink_batch), GFP_KERNEL);
	vt->shrink_page = alloc_page(GFP_KERNEL);
	vt->req_pool = mempool_create_kmalloc_pool(VT_REQ_POOL,
						   sizeof(struct vtmem_req));
	vt->wq = alloc_workqueue("vtmem", WQ_MEM_RECLAIM | WQ_UNBOUND, 0);
	if (!vt->pend || !vt->inv_cand || !vt->inv_batch || !vt->req_pool ||
	    !vt->wq || !vt->shrink_cand || !vt->shrink_batch ||
	    !vt->shrink_page)
		goto err_free;

	vtmem_major = register_blkdev(0, "vtmem");
	if (vtmem_major < 0) {
		ret = vtmem_major;
		goto err_free;
	}
	disk = vt_compat_alloc_disk(sync_io);
	if (IS_ERR(disk)) {
		ret = PTR_ERR(disk);
		goto err_blkdev;
	}
	vt->disk = disk;
	disk->major = vtmem_major;
	disk->first_minor = 0;
	disk->minors = 1;
	disk->flags |= GENHD_FL_NO_PART;
	disk->fops = sync_io ? &vtmem_fops : &vtmem_fops_cached;
	disk->private_data = vt;
	snprintf(disk->disk_name, DISK_NAME_LEN, "vtmem0");
	set_capacity(disk, 0);

	ret = device_add_disk(NULL, disk, vtmem_groups);
	if (ret)
		goto err_disk;
	vtmem_dev = vt;

	ret = register_virtio_driver(&vtmem_virtio_driver);
	if (ret)
		goto err_del;
	return 0;

err_del:
	vtmem_dev = NULL;
	del_gendisk(disk);
err_disk:
	put_disk(disk);
err_blkdev:
	unregister_blkdev(vtmem_major, "vtmem");
err_free:
	vt_free(vt);
	return ret;
}

static void __exit vtmem_exit(void)
{
	struct vtmem *vt = vtmem_dev;

	unregister_virtio_driver(&vtmem_virtio_driver);
	del_gendisk(vt->disk);
	vt_reset(vt);
	put_disk(vt->disk);
	unregister_blkdev(vtmem_major, "vtmem");
	vt_free(vt);
}

module_init(vtmem_init);
module_exit(vtmem_exit);

MODULE_DESCRIPTION("virtio-tmem: swap to host memory through virtio, disk fallback");
MODULE_LICENSE("GPL");
