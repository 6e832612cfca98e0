/* SPDX-License-Identifier: GPL-2.0-or-later OR BSD-3-Clause */
/*
 * virtio-tmem: transcendent memory (frontswap semantics) over virtio.
 *
 * The one definition of the wire protocol, shared by the QEMU device
 * (qemu-device/), the Linux driver (guest-driver/), the tests and the
 * specification (docs/virtio-tmem.md). All fields are little-endian.
 */
#ifndef VIRTIO_TMEM_H
#define VIRTIO_TMEM_H

#include <linux/types.h>

/*
 * Device ID. Used by no device in QEMU 7.2, Linux 6.1 or the virtio 1.3
 * spec; it must stay below 64 because modern virtio-pci device IDs are
 * 0x1040 + ID and Linux rejects PCI device IDs above 0x107f.
 */
#define VIRTIO_ID_TMEM			63

/* Feature bits */
/* The device publishes shrink_target and accepts that the driver moves
 * pages away to meet it (config change interrupt on every change).
 */
#define VIRTIO_TMEM_F_SHRINK		0

/* Size of every page the device stores. */
#define VIRTIO_TMEM_PAGE_SIZE		4096

/* Most slots one INVALIDATE_BATCH request may name. */
#define VIRTIO_TMEM_MAX_BATCH		512

/* Virtqueue index: one request queue; the device completes its
 * requests in the order they were made available.
 */
#define VIRTIO_TMEM_VQ_REQ		0
#define VIRTIO_TMEM_NUM_VQS		1

struct virtio_tmem_config {
	/* Bytes per page: always VIRTIO_TMEM_PAGE_SIZE. Read-only. */
	__le32 page_size;
	/* Most slots in one INVALIDATE_BATCH request. Read-only. */
	__le32 max_batch;
	/* Slots 0 .. nr_slots - 1 are valid. Read-only. */
	__le64 nr_slots;
	/* Bytes of host memory the device may hold for this guest. */
	__le64 limit;
	/* Bytes of host memory the device holds now (compressed pages plus
	 * their metadata). Read at any time; no interrupt on change.
	 */
	__le64 usage;
	/* With VIRTIO_TMEM_F_SHRINK: the usage the device asks the driver to
	 * get down to by moving pages elsewhere. Equals limit when no shrink
	 * is wanted. A config change interrupt follows every change.
	 */
	__le64 shrink_target;
};

/* Request types */
/* Store one page in a slot: out: hdr, page; in: resp. */
#define VIRTIO_TMEM_T_PUT		1
/* Read one slot back: out: hdr; in: page, resp. */
#define VIRTIO_TMEM_T_GET		2
/* Drop one slot: out: hdr; in: resp. OK also if the slot was empty. */
#define VIRTIO_TMEM_T_INVALIDATE	3
/* Drop slots [slot, slot + count): out: hdr; in: resp. */
#define VIRTIO_TMEM_T_INVALIDATE_RANGE	4
/* Drop every slot: out: hdr; in: resp. */
#define VIRTIO_TMEM_T_INVALIDATE_ALL	5
/* Drop count slots listed after the header: out: hdr, __le64[count];
 * in: resp. count <= max_batch; if any slot is >= nr_slots: INVAL and
 * nothing is dropped.
 */
#define VIRTIO_TMEM_T_INVALIDATE_BATCH	6

struct virtio_tmem_req_hdr {
	__le32 type;
	__le32 reserved;	/* driver writes 0; device ignores */
	__le64 slot;		/* the slot, or first slot of a range */
	__le64 count;		/* RANGE and BATCH only; else 0 */
};

/* Status codes */
#define VIRTIO_TMEM_S_OK		0
/* PUT refused: the limit would be exceeded. Any older copy of the slot
 * is gone (a refused PUT never leaves a stale page behind).
 */
#define VIRTIO_TMEM_S_NOSPACE		1
/* GET of a slot that holds nothing. */
#define VIRTIO_TMEM_S_NOENT		2
/* Slot or range out of bounds, bad count, or bad buffer sizes. */
#define VIRTIO_TMEM_S_INVAL		3
/* Unknown request type. */
#define VIRTIO_TMEM_S_UNSUPP		4
/* The device failed internally; the slot holds nothing. */
#define VIRTIO_TMEM_S_IOERR		5

/*
 * The response is the last 4 bytes of the device-writable part; the used
 * length is the size of that part (4, or 4100 for GET). On a status other
 * than OK the device zeroes the bytes before the response. A request with
 * fewer than 4 or more than 4100 device-writable bytes (no room for a
 * status) makes the device set DEVICE_NEEDS_RESET instead.
 */
struct virtio_tmem_resp {
	__le32 status;
};

#endif /* VIRTIO_TMEM_H */
