/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * virtio_tmem: transcendent memory for KVM/QEMU guests (private header).
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
 *
 * Files: vtmem_main.c (module, lifecycle), vtmem_slots.c (slot table and
 * page I/O), vtmem_host.c (the virtio transport, invalidations, attach and
 * detach), vtmem_shrink.c (giving host memory back), vtmem_blk.c (block
 * device operations), vtmem_sysfs.c (/sys/block/vtmem0/vtmem/).
 */

#ifndef VTMEM_DRV_H
#define VTMEM_DRV_H

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

static inline u64 vt_host_age(unsigned long e)
{
	return vt_payload(e) >> 1;
}

static inline bool vt_is_host(unsigned long e)
{
	return vt_state(e) == VT_HOST && vt_payload(e) != VT_HOST_LOST;
}

extern struct vtmem *vtmem_dev;
extern const struct attribute_group *vtmem_groups[];
extern const struct block_device_operations vtmem_fops;
extern const struct block_device_operations vtmem_fops_cached;
extern struct virtio_driver vtmem_virtio_driver;

/* vtmem_slots.c */
void vt_account(struct vtmem *vt, unsigned long e, long delta);
long vt_blk_alloc(struct vtmem *vt);
void vt_blk_free(struct vtmem *vt, unsigned long b);
int vt_disk_io(struct vtmem *vt, unsigned long blk, struct page *page,
	       unsigned int off, bool write);
bool vt_slot_trybegin(struct vtmem *vt, u64 i, unsigned long *e);
unsigned long vt_release(struct vtmem *vt, unsigned long e);
void __vt_slot_end(struct vtmem *vt, u64 i, unsigned long new,
		   unsigned long addflags, bool queue);
void vt_slot_end(struct vtmem *vt, u64 i, unsigned long new,
		 unsigned long addflags);
int vt_write_page(struct vtmem *vt, u64 index, struct page *page,
		  unsigned int off);
int vt_read_page(struct vtmem *vt, u64 index, struct page *page,
		 unsigned int off);
void vt_discard(struct vtmem *vt, u64 first, u64 n);

/* vtmem_host.c */
int vt_host_call(struct vtmem *vt, u32 type, u64 slot, u64 count,
		 struct scatterlist *data, bool data_in);
int vt_host_put(struct vtmem *vt, u64 index, struct page *page,
		unsigned int off);
void vt_queue_inv(struct vtmem *vt, u64 index);
void vt_send_batch(struct vtmem *vt, unsigned long *cand, unsigned int n,
		   __le64 *batch);
void vt_inv_work(struct work_struct *work);
u64 vt_read_usage(struct virtio_device *vdev);

/* vtmem_shrink.c */
void vt_shrink_work(struct work_struct *work);

/* vtmem_blk.c */
void vt_bio_work(struct work_struct *work);

/* vtmem_main.c */
void vt_reset(struct vtmem *vt);
void vt_detach_backing(struct vtmem *vt);

#endif /* VTMEM_DRV_H */
