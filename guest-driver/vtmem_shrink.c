// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Shrink: give host memory back by moving pages to the backing disk when
 * the device asks (VIRTIO_TMEM_F_SHRINK).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vtmem_drv.h"

static unsigned int shrink_rate_mb = 64;
module_param(shrink_rate_mb, uint, 0644);
MODULE_PARM_DESC(shrink_rate_mb,
		 "Most MiB/s moved from the host to the backing disk when the host asks for memory back (0: no limit; default 64)");

static unsigned int shrink_batch = 64;
module_param(shrink_batch, uint, 0644);
MODULE_PARM_DESC(shrink_batch,
		 "Pages moved per shrink batch (one INVALIDATE_BATCH each; 1..512, default 64)");

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

void vt_shrink_work(struct work_struct *work)
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
