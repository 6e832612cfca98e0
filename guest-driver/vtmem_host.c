// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The virtio transport: requests on the one virtqueue, batched
 * invalidations of freed slots, attaching to and detaching from the device.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vtmem_drv.h"

static unsigned int poll_spins;
module_param(poll_spins, uint, 0644);
MODULE_PARM_DESC(poll_spins,
		 "Busy-poll iterations for a host reply before sleeping (default 0: sleep at once)");

/* ---- virtqueue ---- */

/* Complete the used requests. Caller holds h->lock. */
static bool vt_vq_drain_locked(struct vtmem_host *h)
{
	struct vtmem_req *req;
	unsigned int len;
	bool any = false;

	while ((req = virtqueue_get_buf(h->vq, &len)) != NULL) {
		if (len < sizeof(req->resp))
			req->status = VIRTIO_TMEM_S_IOERR;
		else
			req->status = le32_to_cpu(req->resp.status);
		h->done_count++;
		complete(&req->done);
		any = true;
	}
	return any;
}

static void vtmem_vq_done(struct virtqueue *vq)
{
	struct vtmem *vt = vq->vdev->priv;
	struct vtmem_host *h = &vt->host;
	unsigned long flags;

	spin_lock_irqsave(&h->lock, flags);
	do {
		virtqueue_disable_cb(vq);
		vt_vq_drain_locked(h);
	} while (!virtqueue_enable_cb(vq));
	spin_unlock_irqrestore(&h->lock, flags);
	wake_up_all(&h->space_wq);
}

static struct vtmem_req *vt_req_get(struct vtmem *vt, u32 type, u64 slot,
				    u64 count)
{
	struct vtmem_req *req = mempool_alloc(vt->req_pool, GFP_NOIO);

	req->hdr.type = cpu_to_le32(type);
	req->hdr.reserved = 0;
	req->hdr.slot = cpu_to_le64(slot);
	req->hdr.count = cpu_to_le64(count);
	req->resp.status = cpu_to_le32(VIRTIO_TMEM_S_IOERR);
	req->status = -ENODEV;
	init_completion(&req->done);
	return req;
}

/*
 * Adds the request under h->lock. Returns 0 when added, -ENODEV without
 * a device, -ENOSPC (with *seen set) when the ring is full.
 * Caller holds h->lock.
 */
static int vt_vq_add_locked(struct vtmem_host *h, struct vtmem_req *req,
			    struct scatterlist *data, bool data_in,
			    unsigned long *seen)
{
	struct scatterlist hdr, resp, *sgs[3];
	unsigned int n = 0, nout, nin;
	bool drained = false;
	int ret;

	if (!h->ready)
		return -ENODEV;
	sg_init_one(&hdr, &req->hdr, sizeof(req->hdr));
	sg_init_one(&resp, &req->resp, sizeof(req->resp));
	sgs[n++] = &hdr;
	if (data && !data_in)
		sgs[n++] = data;
	nout = n;
	if (data && data_in)
		sgs[n++] = data;
	sgs[n++] = &resp;
	nin = n - nout;
	ret = virtqueue_add_sgs(h->vq, sgs, nout, nin, req, GFP_ATOMIC);
	if (ret == -ENOSPC || ret == -ENOMEM) {
		*seen = h->done_count;
		return -ENOSPC;
	}
	if (ret)
		return ret;
	/*
	 * A device that serves the notification synchronously (QEMU under
	 * TCG or with ioeventfd=off) has completed the request when the kick
	 * returns: take it from the used ring at once, and keep the device
	 * from sending an interrupt that would find the ring empty (one per
	 * request otherwise). Callbacks are on again before h->lock is
	 * released, so a request completed later still interrupts.
	 */
	virtqueue_disable_cb(h->vq);
	virtqueue_kick(h->vq);
	do {
		if (vt_vq_drain_locked(h))
			drained = true;
	} while (!virtqueue_enable_cb(h->vq));
	if (drained)
		wake_up_all(&h->space_wq);
	return 0;
}

/*
 * Wait for a request: the device answers within microseconds, so poll the
 * used ring for a while before sleeping until the interrupt.
 */
static void vt_wait_req(struct vtmem_host *h, struct vtmem_req *req)
{
	unsigned int i, spins = READ_ONCE(poll_spins);
	unsigned long flags;

	for (i = 0; i < spins && !completion_done(&req->done); i++) {
		if (i % 16 == 15) {
			spin_lock_irqsave(&h->lock, flags);
			if (h->ready)
				vt_vq_drain_locked(h);
			spin_unlock_irqrestore(&h->lock, flags);
		}
		cpu_relax();
	}
	wait_for_completion(&req->done);
}

static void vt_wait_space(struct vtmem_host *h, unsigned long seen)
{
	wait_event_timeout(h->space_wq, READ_ONCE(h->done_count) != seen ||
			   !READ_ONCE(h->ready), HZ / 10);
}

/*
 * Add one request under h->lock. A PUT also clears its slot's pending
 * invalidate (the PUT replaces the host copy, or drops it when refused),
 * so that no queued invalidate of this slot can be ordered after it; if
 * the PUT cannot be added, the pending invalidate is restored.
 */
static int vt_host_add(struct vtmem *vt, struct vtmem_req *req, u32 type,
		       u64 slot, struct scatterlist *data, bool data_in,
		       unsigned long *seen)
{
	struct vtmem_host *h = &vt->host;
	bool put = type == VIRTIO_TMEM_T_PUT;
	unsigned long flags, sf;
	bool was_inv = false;
	int ret;

	spin_lock_irqsave(&h->lock, flags);
	if (put) {
		sf = vt_slot_lock(vt, slot);
		was_inv = vt->table[slot] & VT_INV;
		vt->table[slot] &= ~VT_INV;
		vt_slot_unlock(vt, slot, sf);
	}
	ret = vt_vq_add_locked(h, req, data, data_in, seen);
	if (ret && was_inv) {
		sf = vt_slot_lock(vt, slot);
		vt->table[slot] |= VT_INV;
		vt_slot_unlock(vt, slot, sf);
	}
	spin_unlock_irqrestore(&h->lock, flags);
	return ret;
}

/* One request, waited for: its status, or an errno */
int vt_host_call(struct vtmem *vt, u32 type, u64 slot, u64 count,
		 struct scatterlist *data, bool data_in)
{
	struct vtmem_host *h = &vt->host;
	struct vtmem_req *req = vt_req_get(vt, type, slot, count);
	unsigned long seen;
	int ret;

	while ((ret = vt_host_add(vt, req, type, slot, data, data_in,
				  &seen)) == -ENOSPC)
		vt_wait_space(h, seen);
	if (!ret) {
		vt_wait_req(h, req);
		ret = req->status;
	}
	mempool_free(req, vt->req_pool);
	return ret;
}

/* PUT one page (see vt_host_add() for its pending invalidate). */
int vt_host_put(struct vtmem *vt, u64 index, struct page *page,
		unsigned int off)
{
	struct scatterlist data;

	sg_init_table(&data, 1);
	sg_set_page(&data, page, PAGE_SIZE, off);
	return vt_host_call(vt, VIRTIO_TMEM_T_PUT, index, 0, &data, false);
}

/* ---- invalidations ---- */

void vt_queue_inv(struct vtmem *vt, u64 index)
{
	unsigned long flags;

	spin_lock_irqsave(&vt->pend_lock, flags);
	if (vt->pend_nr < vt->pend_cap)
		vt->pend[vt->pend_nr++] = index;
	else
		vt->pend_overflow = true;
	spin_unlock_irqrestore(&vt->pend_lock, flags);
	queue_work(vt->wq, &vt->inv_work);
}

/*
 * Send one INVALIDATE_BATCH for those of the n candidate slots whose INV
 * bit is still set. Slot selection, clearing INV and adding the request
 * happen under h->lock (see vt_host_put()).
 */
void vt_send_batch(struct vtmem *vt, unsigned long *cand, unsigned int n,
		   __le64 *batch)
{
	struct vtmem_host *h = &vt->host;
	struct vtmem_req *req;
	struct scatterlist data;
	unsigned long flags, seen, sf;
	unsigned int i, cnt;
	int ret;

	req = vt_req_get(vt, VIRTIO_TMEM_T_INVALIDATE_BATCH, 0, 0);
	for (;;) {
		cnt = 0;
		spin_lock_irqsave(&h->lock, flags);
		for (i = 0; i < n; i++) {
			u64 s = cand[i];

			if (s >= vt->nr_slots)
				continue;
			sf = vt_slot_lock(vt, s);
			if (vt->table[s] & VT_INV) {
				vt->table[s] &= ~VT_INV;
				if (h->ready && s < h->nr_slots)
					batch[cnt++] = cpu_to_le64(s);
			}
			vt_slot_unlock(vt, s, sf);
		}
		if (!cnt) {
			spin_unlock_irqrestore(&h->lock, flags);
			ret = -ENODATA;
			break;
		}
		req->hdr.count = cpu_to_le64(cnt);
		sg_init_one(&data, batch, cnt * sizeof(__le64));
		ret = vt_vq_add_locked(h, req, &data, false, &seen);
		if (ret) {
			/* Not sent: put the flags back for a retry. */
			for (i = 0; i < cnt; i++) {
				u64 s = le64_to_cpu(batch[i]);

				sf = vt_slot_lock(vt, s);
				vt->table[s] |= VT_INV;
				vt_slot_unlock(vt, s, sf);
			}
		}
		spin_unlock_irqrestore(&h->lock, flags);
		if (ret != -ENOSPC)
			break;
		vt_wait_space(h, seen);
	}
	if (!ret) {
		vt_wait_req(h, req);
		if (req->status == VIRTIO_TMEM_S_OK) {
			atomic64_add(cnt, &vt->stats.inv_slots);
			atomic64_inc(&vt->stats.inv_reqs);
		} else {
			atomic64_inc(&vt->stats.host_errors);
		}
	} else if (ret == -ENODEV) {
		/* The device went away: it holds nothing, drop the flags. */
		for (i = 0; i < cnt; i++) {
			u64 s = le64_to_cpu(batch[i]);

			sf = vt_slot_lock(vt, s);
			vt->table[s] &= ~VT_INV;
			vt_slot_unlock(vt, s, sf);
		}
	}
	mempool_free(req, vt->req_pool);
}

void vt_inv_work(struct work_struct *work)
{
	struct vtmem *vt = container_of(work, struct vtmem, inv_work);
	unsigned int n, max = VIRTIO_TMEM_MAX_BATCH;
	bool scan;
	u64 i;

	down_read(&vt->init_lock);
	if (vt->host.max_batch)
		max = min_t(unsigned int, max, vt->host.max_batch);
	for (;;) {
		spin_lock_irq(&vt->pend_lock);
		n = min(vt->pend_nr, max);
		vt->pend_nr -= n;
		memcpy(vt->inv_cand, vt->pend + vt->pend_nr,
		       n * sizeof(*vt->inv_cand));
		scan = !n && vt->pend_overflow;
		if (scan)
			vt->pend_overflow = false;
		spin_unlock_irq(&vt->pend_lock);
		if (!vt->table)
			break;
		if (n) {
			vt_send_batch(vt, vt->inv_cand, n, vt->inv_batch);
			continue;
		}
		if (!scan)
			break;
		/* The pending array overflowed: find flagged slots. */
		atomic64_inc(&vt->stats.inv_overflows);
		n = 0;
		for (i = 0; i < vt->nr_slots; i++) {
			if (!(READ_ONCE(vt->table[i]) & VT_INV))
				continue;
			vt->inv_cand[n++] = i;
			if (n == max) {
				vt_send_batch(vt, vt->inv_cand, n, vt->inv_batch);
				n = 0;
			}
		}
		if (n)
			vt_send_batch(vt, vt->inv_cand, n, vt->inv_batch);
	}
	up_read(&vt->init_lock);
}

/* usage changes without a config generation bump: read it until stable. */
u64 vt_read_usage(struct virtio_device *vdev)
{
	u64 a, b;
	int i;

	virtio_cread_le(vdev, struct virtio_tmem_config, usage, &a);
	for (i = 0; i < 4; i++) {
		virtio_cread_le(vdev, struct virtio_tmem_config, usage, &b);
		if (a == b)
			break;
		a = b;
	}
	return a;
}

static void vtmem_config_changed(struct virtio_device *vdev)
{
	struct vtmem *vt = vdev->priv;

	if (vt && READ_ONCE(vt->host.shrink_on))
		mod_delayed_work(vt->wq, &vt->shrink_work, 0);
}

/* ---- host attach / detach ---- */

/* The device is gone: its pages are unreadable, nothing to invalidate. */
static void vt_host_lost(struct vtmem *vt)
{
	unsigned long e, sf;
	u64 i;

	down_read(&vt->init_lock);
	for (i = 0; vt->table && i < vt->nr_slots; i++) {
		sf = vt_slot_lock(vt, i);
		e = vt->table[i];
		/* An owner (BUSY) accounts for its own old contents. */
		if (!(e & VT_BUSY) && vt_state(e) == VT_HOST &&
		    vt_payload(e) != VT_HOST_LOST) {
			vt_account(vt, e, -1);
			e = (e & ~VT_PAYLOAD_MASK) | VT_HOST_LOST;
		}
		vt->table[i] = e & ~VT_INV;
		vt_slot_unlock(vt, i, sf);
	}
	up_read(&vt->init_lock);
}

/* Set up the queue and start using the device. Caller holds host_mutex. */
static int vt_host_start(struct vtmem *vt, struct virtio_device *vdev)
{
	struct vtmem_host *h = &vt->host;
	struct virtqueue *vq;
	u32 page_size, max_batch;
	u64 nr_slots;
	unsigned long flags;
	int ret;

	virtio_cread_le(vdev, struct virtio_tmem_config, page_size, &page_size);
	virtio_cread_le(vdev, struct virtio_tmem_config, max_batch, &max_batch);
	virtio_cread_le(vdev, struct virtio_tmem_config, nr_slots, &nr_slots);
	if (page_size != VIRTIO_TMEM_PAGE_SIZE || PAGE_SIZE != page_size) {
		dev_err(&vdev->dev, "unsupported page size %u\n", page_size);
		return -EINVAL;
	}
	vq = virtio_find_single_vq(vdev, vtmem_vq_done, "requests");
	if (IS_ERR(vq))
		return PTR_ERR(vq);
	vdev->priv = vt;
	h->vdev = vdev;
	h->vq = vq;
	h->nr_slots = nr_slots;
	h->max_batch = clamp_t(u32, max_batch, 1, VIRTIO_TMEM_MAX_BATCH);
	virtio_device_ready(vdev);
	spin_lock_irqsave(&h->lock, flags);
	h->ready = true;
	spin_unlock_irqrestore(&h->lock, flags);

	/* Whatever an earlier driver instance left on the host is stale. */
	ret = vt_host_call(vt, VIRTIO_TMEM_T_INVALIDATE_ALL, 0, 0, NULL, false);
	if (ret)
		dev_warn(&vdev->dev, "INVALIDATE_ALL failed: %d\n", ret);
	if (virtio_has_feature(vdev, VIRTIO_TMEM_F_SHRINK)) {
		WRITE_ONCE(h->shrink_on, true);
		mod_delayed_work(vt->wq, &vt->shrink_work, 0);
	}
	return 0;
}

/*
 * Stop using the device: drop its pages, reset it, fail what is in
 * flight, free the queue. Pages it held become unreadable. Caller holds
 * host_mutex.
 */
static void vt_host_stop(struct vtmem *vt, struct virtio_device *vdev)
{
	struct vtmem_host *h = &vt->host;
	struct vtmem_req *req;
	unsigned long flags;

	/* The shrink worker uses h->vdev: stop it first. */
	WRITE_ONCE(h->shrink_on, false);
	cancel_delayed_work_sync(&vt->shrink_work);
	vt_host_call(vt, VIRTIO_TMEM_T_INVALIDATE_ALL, 0, 0, NULL, false);
	spin_lock_irqsave(&h->lock, flags);
	h->ready = false;
	spin_unlock_irqrestore(&h->lock, flags);
	virtio_reset_device(vdev);
	spin_lock_irqsave(&h->lock, flags);
	while ((req = virtqueue_detach_unused_buf(h->vq)) != NULL) {
		req->status = -ENODEV;
		complete(&req->done);
	}
	spin_unlock_irqrestore(&h->lock, flags);
	wake_up_all(&h->space_wq);
	vdev->config->del_vqs(vdev);
	h->vq = NULL;
	h->nr_slots = 0;
	vt_host_lost(vt);
}

static int vtmem_probe(struct virtio_device *vdev)
{
	struct vtmem *vt = vtmem_dev;
	int ret;

	if (!vdev->config->get) {
		dev_err(&vdev->dev, "config access disabled\n");
		return -EINVAL;
	}
	mutex_lock(&vt->host_mutex);
	if (vt->host.vdev) {
		dev_warn(&vdev->dev, "a virtio-tmem device is already attached\n");
		ret = -EBUSY;
	} else {
		ret = vt_host_start(vt, vdev);
	}
	mutex_unlock(&vt->host_mutex);
	if (!ret)
		dev_info(&vdev->dev, "attached to %s: %llu host slots\n",
			 vt->disk->disk_name, vt->host.nr_slots);
	return ret;
}

static void vtmem_remove(struct virtio_device *vdev)
{
	struct vtmem *vt = vdev->priv;

	mutex_lock(&vt->host_mutex);
	if (vt->host.vdev == vdev) {
		vt_host_stop(vt, vdev);
		vt->host.vdev = NULL;
	}
	mutex_unlock(&vt->host_mutex);
	dev_info(&vdev->dev, "detached\n");
}

#ifdef VT_HAVE_VIRTIO_SHUTDOWN
/*
 * Without this handler the virtio core breaks and resets the device at
 * shutdown: requests in flight (swap may still be active) would never
 * complete. Detach as on removal: the host drops our pages, requests in
 * flight fail, later I/O goes to the backing disk or fails.
 */
static void vtmem_shutdown(struct virtio_device *vdev)
{
	vtmem_remove(vdev);
}
#endif

#ifdef CONFIG_PM_SLEEP
/*
 * The device is reset on resume and then holds nothing: refuse to suspend
 * while it holds pages (they would be lost); swapoff first.
 */
static int vtmem_freeze(struct virtio_device *vdev)
{
	struct vtmem *vt = vdev->priv;
	s64 n = atomic64_read(&vt->stats.pages_host);

	if (n > 0) {
		dev_warn(&vdev->dev, "%lld pages on the host: not suspending (swapoff first)\n",
			 n);
		return -EBUSY;
	}
	mutex_lock(&vt->host_mutex);
	vt_host_stop(vt, vdev);
	mutex_unlock(&vt->host_mutex);
	return 0;
}

static int vtmem_restore(struct virtio_device *vdev)
{
	struct vtmem *vt = vdev->priv;
	int ret;

	mutex_lock(&vt->host_mutex);
	ret = vt_host_start(vt, vdev);
	mutex_unlock(&vt->host_mutex);
	return ret;
}
#endif

static const struct virtio_device_id vtmem_id_table[] = {
	{ VIRTIO_ID_TMEM, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, vtmem_id_table);

static unsigned int vtmem_features[] = {
	VIRTIO_TMEM_F_SHRINK,
};

struct virtio_driver vtmem_virtio_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = vtmem_id_table,
	.feature_table = vtmem_features,
	.feature_table_size = ARRAY_SIZE(vtmem_features),
	.config_changed = vtmem_config_changed,
	.probe = vtmem_probe,
	.remove = vtmem_remove,
#ifdef VT_HAVE_VIRTIO_SHUTDOWN
	.shutdown = vtmem_shutdown,
#endif
#ifdef CONFIG_PM_SLEEP
	.freeze = vtmem_freeze,
	.restore = vtmem_restore,
#endif
};
