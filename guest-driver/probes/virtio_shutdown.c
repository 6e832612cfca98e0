// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * ~6.19: struct virtio_driver has ->shutdown; without it the virtio core
 * breaks and resets the device at shutdown, stranding in-flight requests.
 */
#include <linux/virtio.h>

static void probe_shutdown(struct virtio_device *vdev)
{
}

struct virtio_driver probe = { .shutdown = probe_shutdown };
