// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * The slot table and page I/O: one entry per swap slot (vtmem_drv.h),
 * owned by one I/O at a time; pages go to the host, the backing disk, or
 * stay in the entry when same-filled.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vtmem_drv.h"

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

void vt_account(struct vtmem *vt, unsigned long e, long delta)
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

long vt_blk_alloc(struct vtmem *vt)
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

void vt_blk_free(struct vtmem *vt, unsigned long b)
{
	if (vt->blk_bitmap && b < vt->nr_blocks)
		clear_bit(b, vt->blk_bitmap);
}

int vt_disk_io(struct vtmem *vt, unsigned long blk, struct page *page,
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
unsigned long vt_release(struct vtmem *vt, unsigned long e)
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
void __vt_slot_end(struct vtmem *vt, u64 i, unsigned long new,
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

void vt_slot_end(struct vtmem *vt, u64 i, unsigned long new,
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

/* ---- page I/O ---- */

int vt_write_page(struct vtmem *vt, u64 index, struct page *page,
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

int vt_read_page(struct vtmem *vt, u64 index, struct page *page,
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
void vt_discard(struct vtmem *vt, u64 first, u64 n)
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

/* Own slot i unless an I/O owns it; returns the entry in *e. */
bool vt_slot_trybegin(struct vtmem *vt, u64 i, unsigned long *e)
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
