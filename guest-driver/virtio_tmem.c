// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * virtio_tmem: transcendent memory for KVM/QEMU guests.
 *
 * A swap block device (/dev/vtmem0) with frontswap semantics. Every page
 * written to it goes synchronously to the host through the virtio-tmem
 * device; a page the host refuses (or every page when there is no device)
 * goes to an in-guest backing block device instead. A page that is one
 * unsigned long repeated is kept in the slot table and sent nowhere. When
 * the kernel frees a swap slot, the host copy is invalidated at once.
 *
 * Slot table: one unsigned long per swap slot (see VT_* below): a bit
 * spinlock, a BUSY bit (an I/O owns the slot and may sleep; others wait on
 * slot_wq), INV (the host may hold a stale copy that a queued invalidate
 * will drop), FREE (freed while BUSY: the owner frees at the end), two
 * state bits (empty / host / same-filled / disk) and a 58-bit payload (the
 * same-filled value, or the disk block).
 *
 * Invalidate ordering: the device completes requests of its one queue in
 * order. A PUT of slot X clears X's INV bit and is added to the virtqueue
 * under host.lock; the invalidate worker, under host.lock, puts into its
 * batch only slots whose INV bit is still set, clears them and adds the
 * batch. So an invalidate of X is never made available after a PUT of X
 * that it would destroy, and a freed host copy is always invalidated
 * (either by the batch or by the PUT that replaced it).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/blkdev.h>
#include <linux/bio.h>
#include <linux/bit_spinlock.h>
#include <linux/bitmap.h>
#include <linux/delay.h>
#include <linux/ktime.h>
#include <linux/ratelimit.h>
#include <linux/highmem.h>
#include <linux/mempool.h>
#include <linux/pagemap.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include "virtio_tmem.h"
#include "vtmem_compat.h"

#define VT_LOCK		63
#define VT_BUSY		BIT(62)
#define VT_INV		BIT(61)
#define VT_FREE		BIT(60)
#define VT_STATE_SHIFT	58
#define VT_STATE_MASK	(3UL << VT_STATE_SHIFT)
#define VT_PAYLOAD_BITS	58
#define VT_PAYLOAD_MASK	(BIT(VT_PAYLOAD_BITS) - 1)

enum vt_state {
	VT_EMPTY = 0,
	/*
	 * payload: VT_HOST_LOST when the device went away, else the PUT
	 * sequence number << 1 (age, for shrink)
	 */
	VT_HOST = 1,
	VT_SAME = 2,	/* payload: value, sign-extended from bit 57 */
	VT_DISK = 3,	/* payload: block on the backing device */
};

#define VT_HOST_LOST	1UL
#define VT_SEQ_MASK	(VT_PAYLOAD_MASK >> 1)

/* Shrink: age histogram buckets, retry period while it cannot progress. */
#define VT_AGE_BUCKETS		64
#define VT_SHRINK_RETRY		HZ

#define VT_SECTORS_PER_PAGE	(PAGE_SIZE >> SECTOR_SHIFT)
#define VT_REQ_POOL	16
#define VT_FULL_BACKOFF	(HZ / 20)

struct vtmem_req {
	struct virtio_tmem_req_hdr hdr;
	struct virtio_tmem_resp resp;
	struct completion done;
	int status;
};

struct vtmem_host {
	spinlock_t lock;		/* vq, ready; orders PUT vs invalidate */
	struct virtio_device *vdev;
	struct virtqueue *vq;
	bool ready;
	u64 nr_slots;
	u32 max_batch;
	unsigned long done_count;	/* completions seen, for space waits */
	bool shrink_on;			/* VIRTIO_TMEM_F_SHRINK negotiated */
	/* After a refusal, skip PUTs for a while or until a host page is freed. */
	bool full;
	unsigned long full_since;
	wait_queue_head_t space_wq;
};

struct vtmem_stats {
	atomic64_t pages_host;
	atomic64_t pages_disk;
	atomic64_t pages_same;
	atomic64_t host_puts;
	atomic64_t host_refusals;
	atomic64_t host_skipped;
	atomic64_t host_gets;
	atomic64_t host_errors;
	atomic64_t inv_slots;
	atomic64_t inv_reqs;
	atomic64_t inv_overflows;
	atomic64_t range_reqs;
	atomic64_t notify_free;
	atomic64_t disk_reads;
	atomic64_t disk_writes;
	atomic64_t bio_pages;
	atomic64_t failed_reads;
	atomic64_t failed_writes;
	atomic64_t invalid_io;
	atomic64_t shrink_runs;
	atomic64_t shrink_pages;
	atomic64_t shrink_failures;
	atomic64_t shrink_stuck;	/* runs that could not reach the target */
	atomic64_t shrink_target;	/* last target read (bytes) */
	atomic64_t shrink_blocked;	/* 1: cannot shrink (no/full disk) */
};

struct vtmem {
	struct gendisk *disk;
	struct rw_semaphore init_lock;	/* table, backing device */
	bool claim;			/* reset in progress, under open_mutex */

	unsigned long *table;
	u64 nr_slots;
	wait_queue_head_t slot_wq;

	struct block_device *bdev;
	struct file *backing_file;	/* holds bdev open, exclusively */
	char *backing_name;
	unsigned long *blk_bitmap;
	u64 nr_blocks;
	unsigned long blk_hint;

	spinlock_t pend_lock;		/* pend, pend_nr, pend_overflow */
	unsigned long *pend;
	unsigned int pend_nr;
	unsigned int pend_cap;
	bool pend_overflow;
	struct work_struct inv_work;
	unsigned long *inv_cand;	/* inv worker only */
	__le64 *inv_batch;		/* inv worker only */

	spinlock_t bio_lock;		/* bios */
	struct bio_list bios;
	struct work_struct bio_work;

	struct workqueue_struct *wq;
	mempool_t *req_pool;

	/* Shrink worker (one instance; see vt_shrink_work()). */
	struct delayed_work shrink_work;
	atomic64_t put_seq;		/* PUT sequence: age of host pages */
	struct page *shrink_page;	/* bounce page for GET -> disk */
	unsigned long *shrink_cand;	/* shrink worker only */
	__le64 *shrink_batch;		/* shrink worker only */

	struct mutex host_mutex;	/* probe / remove */
	struct vtmem_host host;
	struct vtmem_stats stats;
};

static struct vtmem *vtmem_dev;
static int vtmem_major;

static bool sync_io = true;
module_param(sync_io, bool, 0444);
MODULE_PARM_DESC(sync_io,
		 "Synchronous swap device (SWP_SYNCHRONOUS_IO: swap-in frees the slot at once); 0: swap cache with readahead");

static unsigned int pend_max = 4096;
module_param(pend_max, uint, 0444);
MODULE_PARM_DESC(pend_max,
		 "Freed host slots queued for invalidation before falling back to a table scan");

static unsigned int shrink_rate_mb = 64;
module_param(shrink_rate_mb, uint, 0644);
MODULE_PARM_DESC(shrink_rate_mb,
		 "Most MiB/s moved from the host to the backing disk when the host asks for memory back (0: no limit; default 64)");

static unsigned int shrink_batch = 64;
module_param(shrink_batch, uint, 0644);
MODULE_PARM_DESC(shrink_batch,
		 "Pages moved per shrink batch (one INVALIDATE_BATCH each; 1..512, default 64)");

static unsigned int poll_spins;
module_param(poll_spins, uint, 0644);
MODULE_PARM_DESC(poll_spins,
		 "Busy-poll iterations for a host reply before sleeping (default 0: sleep at once)");

/* ---- slot table ---- */

static inline enum vt_state vt_state(unsigned long e)
{
	return (e & VT_STATE_MASK) >> VT_STATE_SHIFT;
}

static inline unsigned long vt_payload(unsigned long e)
{
	return e & VT_PAYLOAD_MASK;
}

static inline unsigned long vt_mk(enum vt_state s, unsigned long payload)
{
	return ((unsigned long)s << VT_STATE_SHIFT) | (payload & VT_PAYLOAD_MASK);
}

/*
 * Interrupts are off while a slot lock is held: the virtqueue callback
 * takes host.lock, and host.lock holders take slot locks.
 */
static inline unsigned long vt_slot_lock(struct vtmem *vt, u64 i)
{
	unsigned long flags;

	local_irq_save(flags);
	bit_spin_lock(VT_LOCK, &vt->table[i]);
	return flags;
}

static inline void vt_slot_unlock(struct vtmem *vt, u64 i, unsigned long flags)
{
	bit_spin_unlock(VT_LOCK, &vt->table[i]);
	local_irq_restore(flags);
}

/* Same-filled value that fits in the payload: sign-extend from bit 57. */
static inline bool vt_same_fits(unsigned long v)
{
	long s = (long)(v << (BITS_PER_LONG - VT_PAYLOAD_BITS)) >>
		 (BITS_PER_LONG - VT_PAYLOAD_BITS);

	return (unsigned long)s == v;
}

static inline unsigned long vt_same_value(unsigned long e)
{
	return (unsigned long)((long)(e << (BITS_PER_LONG - VT_PAYLOAD_BITS)) >>
			       (BITS_PER_LONG - VT_PAYLOAD_BITS));
}

static bool vt_page_same_filled(const void *ptr, unsigned long *value)
{
	const unsigned long *page = ptr;
	unsigned long val = page[0];
	unsigned int pos, last = PAGE_SIZE / sizeof(*page) - 1;

	if (val != page[last])
		return false;
	for (pos = 1; pos < last; pos++) {
		if (val != page[pos])
			return false;
	}
	*value = val;
	return true;
}

static void vt_account(struct vtmem *vt, unsigned long e, long delta)
{
	switch (vt_state(e)) {
	case VT_HOST:
		if (vt_payload(e) != VT_HOST_LOST)
			atomic64_add(delta, &vt->stats.pages_host);
		break;
	case VT_SAME:
		atomic64_add(delta, &vt->stats.pages_same);
		break;
	case VT_DISK:
		atomic64_add(delta, &vt->stats.pages_disk);
		break;
	default:
		break;
	}
}

/* ---- backing disk blocks ---- */

static long vt_blk_alloc(struct vtmem *vt)
{
	unsigned long hint = READ_ONCE(vt->blk_hint), b;
	int pass;

	if (!vt->blk_bitmap)
		return -ENODEV;
	for (pass = 0; pass < 2; pass++) {
		b = hint;
		for (;;) {
			b = find_next_zero_bit(vt->blk_bitmap, vt->nr_blocks, b);
			if (b >= vt->nr_blocks)
				break;
			if (!test_and_set_bit(b, vt->blk_bitmap)) {
				WRITE_ONCE(vt->blk_hint, b + 1);
				return b;
			}
			b++;
		}
		hint = 0;
	}
	return -ENOSPC;
}

static void vt_blk_free(struct vtmem *vt, unsigned long b)
{
	if (vt->blk_bitmap && b < vt->nr_blocks)
		clear_bit(b, vt->blk_bitmap);
}

static int vt_disk_io(struct vtmem *vt, unsigned long blk, struct page *page,
		      unsigned int off, bool write)
{
	struct bio *bio;
	int ret;

	bio = bio_alloc(vt->bdev, 1, (write ? REQ_OP_WRITE : REQ_OP_READ) |
			REQ_SYNC, GFP_NOIO);
	bio->bi_iter.bi_sector = (sector_t)blk * VT_SECTORS_PER_PAGE;
	__bio_add_page(bio, page, PAGE_SIZE, off);
	ret = submit_bio_wait(bio);
	bio_put(bio);
	atomic64_inc(write ? &vt->stats.disk_writes : &vt->stats.disk_reads);
	return ret;
}

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
	virtqueue_kick(h->vq);
	/*
	 * A device that serves the notification synchronously (QEMU with
	 * ioeventfd=off) has completed the request already: no need to
	 * sleep until the interrupt.
	 */
	if (vt_vq_drain_locked(h))
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
static int vt_host_call(struct vtmem *vt, u32 type, u64 slot, u64 count,
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
static int vt_host_put(struct vtmem *vt, u64 index, struct page *page,
		       unsigned int off)
{
	struct scatterlist data;

	sg_init_table(&data, 1);
	sg_set_page(&data, page, PAGE_SIZE, off);
	return vt_host_call(vt, VIRTIO_TMEM_T_PUT, index, 0, &data, false);
}

/* ---- invalidations ---- */

static void vt_queue_inv(struct vtmem *vt, u64 index)
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
static void vt_send_batch(struct vtmem *vt, unsigned long *cand, unsigned int n,
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

static void vt_inv_work(struct work_struct *work)
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

/* ---- slot ownership ---- */

/* Wait until no I/O owns the slot, take it; returns the entry. */
static unsigned long vt_slot_begin(struct vtmem *vt, u64 i)
{
	unsigned long e, sf;

	for (;;) {
		sf = vt_slot_lock(vt, i);
		e = vt->table[i];
		if (!(e & VT_BUSY)) {
			vt->table[i] = e | VT_BUSY;
			vt_slot_unlock(vt, i, sf);
			return e & ~BIT(VT_LOCK);
		}
		vt_slot_unlock(vt, i, sf);
		wait_event(vt->slot_wq, !(READ_ONCE(vt->table[i]) & VT_BUSY));
	}
}

/*
 * Free the contents of entry e (slot lock held or slot owned); returns
 * the flag bits to add (VT_INV when a host copy must be invalidated).
 */
static unsigned long vt_release(struct vtmem *vt, unsigned long e)
{
	vt_account(vt, e, -1);
	switch (vt_state(e)) {
	case VT_HOST:
		if (vt_payload(e) != VT_HOST_LOST) {
			WRITE_ONCE(vt->host.full, false);
			return VT_INV;
		}
		break;
	case VT_DISK:
		vt_blk_free(vt, vt_payload(e));
		break;
	default:
		break;
	}
	return 0;
}

/*
 * Give up ownership, storing new (state and payload). A free that came
 * while the slot was owned is carried out now.
 */
static void __vt_slot_end(struct vtmem *vt, u64 i, unsigned long new,
			  unsigned long addflags, bool queue)
{
	unsigned long e, flags, sf;

	sf = vt_slot_lock(vt, i);
	e = vt->table[i];
	flags = (e & VT_INV) | addflags;
	if (e & VT_FREE) {
		flags |= vt_release(vt, new);
		new = vt_mk(VT_EMPTY, 0);
	}
	vt->table[i] = new | flags | BIT(VT_LOCK);
	vt_slot_unlock(vt, i, sf);
	if (queue && (flags & VT_INV) && !(e & VT_INV))
		vt_queue_inv(vt, i);
	if (wq_has_sleeper(&vt->slot_wq))
		wake_up_all(&vt->slot_wq);
}

static void vt_slot_end(struct vtmem *vt, u64 i, unsigned long new,
			unsigned long addflags)
{
	__vt_slot_end(vt, i, new, addflags, true);
}

/* Host entry with its age: the PUT sequence number (bit 0 stays clear). */
static inline unsigned long vt_mk_host(struct vtmem *vt)
{
	u64 seq = atomic64_inc_return(&vt->put_seq);

	return vt_mk(VT_HOST, (seq & VT_SEQ_MASK) << 1);
}

static inline u64 vt_host_age(unsigned long e)
{
	return vt_payload(e) >> 1;
}

/* ---- page I/O ---- */

static int vt_write_page(struct vtmem *vt, u64 index, struct page *page,
			 unsigned int off)
{
	unsigned long old, new, addflags = 0, value;
	bool same, put_sent = false;
	long blk;
	void *mem;
	int ret;

	old = vt_slot_begin(vt, index);

	mem = kmap_local_page(page);
	same = vt_page_same_filled(mem + off, &value);
	kunmap_local(mem);
	if (same && vt_same_fits(value)) {
		new = vt_mk(VT_SAME, value);
		goto done;
	}

	if (READ_ONCE(vt->host.full) &&
	    time_before(jiffies, READ_ONCE(vt->host.full_since) + VT_FULL_BACKOFF))
		atomic64_inc(&vt->stats.host_skipped);
	else if (READ_ONCE(vt->host.ready) &&
		 index < READ_ONCE(vt->host.nr_slots)) {
		ret = vt_host_put(vt, index, page, off);
		if (ret >= 0)
			put_sent = true;
		if (ret == VIRTIO_TMEM_S_OK) {
			atomic64_inc(&vt->stats.host_puts);
			new = vt_mk_host(vt);
			goto done;
		}
		if (ret == VIRTIO_TMEM_S_NOSPACE) {
			atomic64_inc(&vt->stats.host_refusals);
			WRITE_ONCE(vt->host.full_since, jiffies);
			WRITE_ONCE(vt->host.full, true);
		} else {
			atomic64_inc(&vt->stats.host_errors);
		}
	}

	if (vt->bdev) {
		if (vt_state(old) == VT_DISK) {
			blk = vt_payload(old);
		} else {
			blk = vt_blk_alloc(vt);
			if (blk < 0)
				goto fail;
		}
		ret = vt_disk_io(vt, blk, page, off, true);
		if (ret) {
			if (vt_state(old) == VT_DISK)
				old = vt_mk(VT_DISK, blk);
			else
				vt_blk_free(vt, blk);
			goto fail;
		}
		new = vt_mk(VT_DISK, blk);
		if (vt_state(old) == VT_DISK) {
			/* Same block, rewritten in place: keep it. */
			vt_account(vt, old, -1);
			old = vt_mk(VT_EMPTY, 0);
		}
		goto done;
	}
fail:
	atomic64_inc(&vt->stats.failed_writes);
	new = vt_mk(VT_EMPTY, 0);
	ret = -EIO;
	goto out;
done:
	ret = 0;
	vt_account(vt, new, 1);
out:
	/* The old contents: a sent PUT already replaced or dropped a host copy. */
	if (!(vt_state(old) == VT_HOST && put_sent))
		addflags = vt_release(vt, old);
	else
		vt_account(vt, old, -1);
	vt_slot_end(vt, index, new, addflags);
	return ret;
}

static int vt_read_page(struct vtmem *vt, u64 index, struct page *page,
			unsigned int off)
{
	struct scatterlist data;
	unsigned long e, value;
	void *mem;
	int ret = 0;

	e = vt_slot_begin(vt, index);
	switch (vt_state(e)) {
	case VT_EMPTY:
	case VT_SAME:
		value = vt_state(e) == VT_SAME ? vt_same_value(e) : 0;
		mem = kmap_local_page(page);
		memset64(mem + off, value, PAGE_SIZE / sizeof(u64));
		kunmap_local(mem);
		break;
	case VT_DISK:
		ret = vt->bdev ? vt_disk_io(vt, vt_payload(e), page, off, false)
			       : -EIO;
		break;
	case VT_HOST:
		if (vt_payload(e) == VT_HOST_LOST) {
			ret = -EIO;
			break;
		}
		sg_init_table(&data, 1);
		sg_set_page(&data, page, PAGE_SIZE, off);
		ret = vt_host_call(vt, VIRTIO_TMEM_T_GET, index, 0, &data, true);
		if (ret == VIRTIO_TMEM_S_OK) {
			atomic64_inc(&vt->stats.host_gets);
		} else {
			atomic64_inc(&vt->stats.host_errors);
			ret = -EIO;
		}
		break;
	}
	vt_slot_end(vt, index, e & (VT_STATE_MASK | VT_PAYLOAD_MASK), 0);
	if (ret) {
		atomic64_inc(&vt->stats.failed_reads);
		ret = -EIO;
	}
	flush_dcache_page(page);
	return ret;
}

/* Drop slots [first, first + n): owned while the host drops the range. */
static void vt_discard(struct vtmem *vt, u64 first, u64 n)
{
	unsigned long e;
	bool host = false;
	u64 i;
	int ret;

	if (first >= vt->nr_slots)
		return;
	n = min(n, vt->nr_slots - first);
	for (i = first; i < first + n; i++) {
		e = vt_slot_begin(vt, i);
		if (vt_state(e) == VT_HOST && vt_payload(e) != VT_HOST_LOST)
			host = true;
		vt_account(vt, e, -1);
		if (vt_state(e) == VT_DISK)
			vt_blk_free(vt, vt_payload(e));
	}
	if (host && READ_ONCE(vt->host.ready) && first < vt->host.nr_slots) {
		ret = vt_host_call(vt, VIRTIO_TMEM_T_INVALIDATE_RANGE, first,
				   min(n, vt->host.nr_slots - first), NULL, false);
		if (ret == VIRTIO_TMEM_S_OK)
			atomic64_inc(&vt->stats.range_reqs);
		else if (ret != -ENODEV)
			atomic64_inc(&vt->stats.host_errors);
	}
	for (i = first; i < first + n; i++)
		vt_slot_end(vt, i, vt_mk(VT_EMPTY, 0), 0);
}

/* ---- shrink: give host memory back by moving pages to the disk ---- */

/*
 * With VIRTIO_TMEM_F_SHRINK the device publishes shrink_target (the
 * device's effective limit) and notifies every change. While the device's
 * usage is above it, this worker moves host pages to the backing disk,
 * oldest PUT first:
 *
 *  1. scan the table: ages (PUT sequence numbers) of the host pages;
 *  2. histogram of the ages in VT_AGE_BUCKETS buckets; the number of pages
 *     to move is (usage - target) / (usage / host pages), the cutoff is
 *     the first bucket where the cumulative count reaches it;
 *  3. scan the table in slot order, move each host page older than the
 *     cutoff: own the slot (BUSY; a busy slot is skipped), GET it into a
 *     bounce page, write it to a newly allocated disk block, store the
 *     disk entry with INV set; every shrink_batch pages, one
 *     INVALIDATE_BATCH drops the host copies (those still flagged INV: a
 *     PUT since then replaced the copy and cleared the flag), then read
 *     usage again and sleep to keep to shrink_rate_mb.
 *
 * Repeated while usage > target and pages move. Without a backing disk,
 * with a full one, or when nothing can move, the worker says so (stat
 * shrink_blocked, a rate-limited log line) and retries every second.
 */

/* usage changes without a config generation bump: read it until stable. */
static u64 vt_read_usage(struct virtio_device *vdev)
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

/* Own slot i unless an I/O owns it; returns the entry in *e. */
static bool vt_slot_trybegin(struct vtmem *vt, u64 i, unsigned long *e)
{
	unsigned long sf, v;
	bool ok;

	sf = vt_slot_lock(vt, i);
	v = vt->table[i];
	ok = !(v & VT_BUSY);
	if (ok)
		vt->table[i] = v | VT_BUSY;
	vt_slot_unlock(vt, i, sf);
	*e = v & ~BIT(VT_LOCK);
	return ok;
}

static inline bool vt_is_host(unsigned long e)
{
	return vt_state(e) == VT_HOST && vt_payload(e) != VT_HOST_LOST;
}

/*
 * Copy owned host slot i to a new disk block: the block, or -ENOSPC
 * (disk full), -ENODEV (no disk), -EIO.
 */
static long vt_shrink_copy(struct vtmem *vt, u64 i)
{
	struct scatterlist data;
	long blk;
	int ret;

	blk = vt_blk_alloc(vt);
	if (blk < 0)
		return blk;
	sg_init_table(&data, 1);
	sg_set_page(&data, vt->shrink_page, PAGE_SIZE, 0);
	ret = vt_host_call(vt, VIRTIO_TMEM_T_GET, i, 0, &data, true);
	if (ret != VIRTIO_TMEM_S_OK) {
		if (ret != -ENODEV)
			atomic64_inc(&vt->stats.host_errors);
		vt_blk_free(vt, blk);
		return -EIO;
	}
	atomic64_inc(&vt->stats.host_gets);
	if (vt_disk_io(vt, blk, vt->shrink_page, 0, true)) {
		vt_blk_free(vt, blk);
		return -EIO;
	}
	return blk;
}

struct vt_shrink_run {
	u64 target;
	u64 moved;		/* this run */
	ktime_t start;
	bool blocked;		/* no disk or disk full */
	bool done;		/* usage <= target */
};

/* Send the batch, check usage, keep to the rate. Drops init_lock a while. */
static void vt_shrink_flush(struct vtmem *vt, struct vt_shrink_run *r,
			    unsigned int *n)
{
	unsigned int rate = READ_ONCE(shrink_rate_mb);
	s64 due_us;

	if (*n)
		vt_send_batch(vt, vt->shrink_cand, *n, vt->shrink_batch);
	*n = 0;
	if (vt_read_usage(vt->host.vdev) <= r->target)
		r->done = true;
	if (r->done || !rate)
		return;
	/* moved pages at rate MiB/s: moved * 4096 * 1e6 / (rate << 20) us */
	due_us = div64_u64(r->moved * USEC_PER_SEC, (u64)rate * 256) -
		 ktime_us_delta(ktime_get(), r->start);
	up_read(&vt->init_lock);
	if (due_us > 0)
		usleep_range(due_us, due_us + due_us / 8 + 50);
	else
		cond_resched();
	down_read(&vt->init_lock);
}

/* One pass, init_lock held for reading: moves pages older than cutoff. */
static void vt_shrink_pass(struct vtmem *vt, struct vt_shrink_run *r,
			   u64 cutoff)
{
	unsigned int n = 0, max;
	unsigned long e;
	long blk;
	u64 i;

	max = clamp_t(unsigned int, READ_ONCE(shrink_batch), 1,
		      vt->host.max_batch);
	for (i = 0; vt->table && i < vt->nr_slots && !r->done; i++) {
		e = READ_ONCE(vt->table[i]);
		if (!vt_is_host(e) || vt_host_age(e) >= cutoff || (e & VT_BUSY))
			continue;
		if (!vt_slot_trybegin(vt, i, &e))
			continue;
		if (!vt_is_host(e) || vt_host_age(e) >= cutoff) {
			vt_slot_end(vt, i, e & (VT_STATE_MASK | VT_PAYLOAD_MASK), 0);
			continue;
		}
		blk = vt_shrink_copy(vt, i);
		if (blk < 0) {
			vt_slot_end(vt, i, e & (VT_STATE_MASK | VT_PAYLOAD_MASK), 0);
			if (blk == -EIO) {
				atomic64_inc(&vt->stats.shrink_failures);
				continue;
			}
			r->blocked = true;
			break;
		}
		/* The disk has the page; the host copy goes in our batch. */
		vt_account(vt, e, -1);
		vt_account(vt, vt_mk(VT_DISK, blk), 1);
		__vt_slot_end(vt, i, vt_mk(VT_DISK, blk), VT_INV, false);
		atomic64_inc(&vt->stats.shrink_pages);
		r->moved++;
		vt->shrink_cand[n++] = i;
		if (n == max)
			vt_shrink_flush(vt, r, &n);
		else
			cond_resched();
	}
	if (n || !r->done)
		vt_shrink_flush(vt, r, &n);
}

/* Age cutoff such that about need host pages are older; 0: no host page. */
static u64 vt_shrink_cutoff(struct vtmem *vt, u64 usage, u64 target)
{
	u64 cnt[VT_AGE_BUCKETS] = {};
	u64 lo = U64_MAX, hi = 0, pages = 0, need, width, sum = 0, i, a;
	unsigned long e;
	unsigned int b;

	for (i = 0; i < vt->nr_slots; i++) {
		e = READ_ONCE(vt->table[i]);
		if (!vt_is_host(e))
			continue;
		a = vt_host_age(e);
		lo = min(lo, a);
		hi = max(hi, a);
		pages++;
	}
	if (!pages)
		return 0;
	need = DIV_ROUND_UP(usage - target, max_t(u64, usage / pages, 1));
	width = div64_u64(hi - lo, VT_AGE_BUCKETS) + 1;
	for (i = 0; i < vt->nr_slots; i++) {
		e = READ_ONCE(vt->table[i]);
		if (!vt_is_host(e))
			continue;
		a = vt_host_age(e);
		if (a < lo)	/* PUT since the first scan: young */
			continue;
		b = min_t(u64, div64_u64(a - lo, width), VT_AGE_BUCKETS - 1);
		cnt[b]++;
	}
	for (b = 0; b < VT_AGE_BUCKETS; b++) {
		sum += cnt[b];
		if (sum >= need)
			break;
	}
	if (b >= VT_AGE_BUCKETS - 1)
		return U64_MAX;
	return lo + (u64)(b + 1) * width;
}

static DEFINE_RATELIMIT_STATE(vt_shrink_rs, 60 * HZ, 1);

static void vt_shrink_work(struct work_struct *work)
{
	struct vtmem *vt = container_of(to_delayed_work(work), struct vtmem,
					shrink_work);
	struct vtmem_host *h = &vt->host;
	struct vt_shrink_run r = {};
	const char *why;
	u64 usage, cutoff, before;
	int passes;

	if (!READ_ONCE(h->shrink_on))
		return;
	virtio_cread_le(h->vdev, struct virtio_tmem_config, shrink_target,
			&r.target);
	atomic64_set(&vt->stats.shrink_target, r.target);
	usage = vt_read_usage(h->vdev);
	if (usage <= r.target) {
		atomic64_set(&vt->stats.shrink_blocked, 0);
		return;
	}
	atomic64_inc(&vt->stats.shrink_runs);
	r.start = ktime_get();
	down_read(&vt->init_lock);
	for (passes = 0; passes < 8 && vt->table && !r.done; passes++) {
		if (!vt->bdev) {
			r.blocked = true;
			break;
		}
		cutoff = vt_shrink_cutoff(vt, usage, r.target);
		if (!cutoff)
			break;
		before = r.moved;
		vt_shrink_pass(vt, &r, cutoff);
		if (r.blocked || r.moved == before)
			break;
		usage = vt_read_usage(h->vdev);
		r.done = usage <= r.target;
	}
	if (!vt->table) {
		up_read(&vt->init_lock);
		return;
	}
	why = r.blocked ? (vt->bdev ? "backing disk full" : "no backing disk") :
			  "no host page can move now";
	up_read(&vt->init_lock);
	atomic64_set(&vt->stats.shrink_blocked, r.blocked ? 1 : 0);
	if (r.done)
		return;
	if (!r.blocked && r.moved) {
		/* Progress, but not there yet (racing PUTs, 8 passes): go on. */
		if (READ_ONCE(h->shrink_on))
			queue_delayed_work(vt->wq, &vt->shrink_work, 1);
		return;
	}
	atomic64_inc(&vt->stats.shrink_stuck);
	if (__ratelimit(&vt_shrink_rs))
		dev_warn(&h->vdev->dev,
			 "cannot shrink to %llu bytes (host holds %llu): %s\n",
			 r.target, vt_read_usage(h->vdev), why);
	if (READ_ONCE(h->shrink_on))
		queue_delayed_work(vt->wq, &vt->shrink_work, VT_SHRINK_RETRY);
}

static void vtmem_config_changed(struct virtio_device *vdev)
{
	struct vtmem *vt = vdev->priv;

	if (vt && READ_ONCE(vt->host.shrink_on))
		mod_delayed_work(vt->wq, &vt->shrink_work, 0);
}

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

static void vt_bio_work(struct work_struct *work)
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

static int vt_disk_open(struct gendisk *disk)
{
	struct vtmem *vt = disk->private_data;

	return vt->claim ? -EBUSY : 0;
}

/* Before 6.3, rw_page is what makes swap SWP_SYNCHRONOUS_IO. */
static const struct block_device_operations vtmem_fops = {
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
static const struct block_device_operations vtmem_fops_cached = {
	.owner = THIS_MODULE,
	.open = vt_compat_open,
	.submit_bio = vtmem_submit_bio,
	.swap_slot_free_notify = vtmem_slot_free_notify,
};

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

static unsigned int vtmem_features[] = {
	VIRTIO_TMEM_F_SHRINK,
};

static struct virtio_driver vtmem_virtio_driver = {
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

/* ---- setup and sysfs ---- */

static void vt_detach_backing(struct vtmem *vt)
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
static void vt_reset(struct vtmem *vt)
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

static ssize_t stat_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct vtmem *vt = dev_to_disk(dev)->private_data;
	struct vtmem_stats *s = &vt->stats;
	u64 blocks_used = 0;

	down_read(&vt->init_lock);
	if (vt->blk_bitmap)
		blocks_used = bitmap_weight(vt->blk_bitmap, vt->nr_blocks);
	up_read(&vt->init_lock);

	return sysfs_emit(buf,
		"pages_host %lld\npages_disk %lld\npages_same %lld\n"
		"disk_blocks_used %llu\ndisk_blocks_total %llu\n"
		"host_attached %d\nhost_puts %lld\nhost_refusals %lld\n"
		"host_skipped %lld\n"
		"host_gets %lld\nhost_errors %lld\ninvalidated_slots %lld\n"
		"invalidate_batches %lld\ninvalidate_ranges %lld\n"
		"invalidate_overflows %lld\nnotify_free %lld\n"
		"disk_reads %lld\ndisk_writes %lld\nbio_pages %lld\n"
		"failed_reads %lld\nfailed_writes %lld\ninvalid_io %lld\n"
		"shrink_target %lld\nshrink_runs %lld\nshrink_pages %lld\n"
		"shrink_bytes %lld\nshrink_failures %lld\nshrink_stuck %lld\n"
		"shrink_blocked %lld\n",
		atomic64_read(&s->pages_host), atomic64_read(&s->pages_disk),
		atomic64_read(&s->pages_same), blocks_used, vt->nr_blocks,
		READ_ONCE(vt->host.ready) ? 1 : 0,
		atomic64_read(&s->host_puts), atomic64_read(&s->host_refusals),
		atomic64_read(&s->host_skipped),
		atomic64_read(&s->host_gets), atomic64_read(&s->host_errors),
		atomic64_read(&s->inv_slots), atomic64_read(&s->inv_reqs),
		atomic64_read(&s->range_reqs), atomic64_read(&s->inv_overflows),
		atomic64_read(&s->notify_free), atomic64_read(&s->disk_reads),
		atomic64_read(&s->disk_writes), atomic64_read(&s->bio_pages),
		atomic64_read(&s->failed_reads),
		atomic64_read(&s->failed_writes), atomic64_read(&s->invalid_io),
		atomic64_read(&s->shrink_target), atomic64_read(&s->shrink_runs),
		atomic64_read(&s->shrink_pages),
		atomic64_read(&s->shrink_pages) * PAGE_SIZE,
		atomic64_read(&s->shrink_failures),
		atomic64_read(&s->shrink_stuck),
		atomic64_read(&s->shrink_blocked));
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
static DEVICE_ATTR_RO(host);

static struct attribute *vtmem_attrs[] = {
	&dev_attr_disksize.attr,
	&dev_attr_backing_dev.attr,
	&dev_attr_reset.attr,
	&dev_attr_stat.attr,
	&dev_attr_host.attr,
	NULL,
};

static const struct attribute_group vtmem_group = {
	.name = "vtmem",
	.attrs = vtmem_attrs,
};

static const struct attribute_group *vtmem_groups[] = {
	&vtmem_group,
	NULL,
};

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

MODULE_DEVICE_TABLE(virtio, vtmem_id_table);
MODULE_DESCRIPTION("virtio-tmem: swap to host memory through virtio, disk fallback");
MODULE_LICENSE("GPL");
