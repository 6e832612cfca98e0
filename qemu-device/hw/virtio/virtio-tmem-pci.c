/*
 * virtio-tmem PCI bindings (modern virtio 1.x only)
 *
 * Copyright (c) 2026 The vtmem authors
 *
 * This work is licensed under the terms of the GNU GPL, version 2 or
 * (at your option) any later version.  See the COPYING file in the
 * top-level directory.
 */

#include "qemu/osdep.h"

#include "hw/virtio/virtio-pci.h"
#include "hw/virtio/virtio-tmem.h"
#include "hw/qdev-properties.h"
#include "qapi/error.h"
#include "qemu/module.h"
#include "qom/object.h"
#include "virtio_tmem.h"

typedef struct VirtIOTmemPCI VirtIOTmemPCI;

/*
 * virtio-tmem-pci: This extends VirtioPCIProxy.
 */
#define TYPE_VIRTIO_TMEM_PCI "virtio-tmem-pci-base"
DECLARE_INSTANCE_CHECKER(VirtIOTmemPCI, VIRTIO_TMEM_PCI,
                         TYPE_VIRTIO_TMEM_PCI)

struct VirtIOTmemPCI {
    VirtIOPCIProxy parent_obj;
    VirtIOTmem vdev;
    OnOffAuto ioeventfd;
};

static VTMEM_PROPERTY_CONST Property virtio_tmem_pci_properties[] = {
    DEFINE_PROP_ON_OFF_AUTO("ioeventfd", VirtIOTmemPCI, ioeventfd,
                            ON_OFF_AUTO_AUTO),
    DEFINE_PROP_UINT32("vectors", VirtIOPCIProxy, nvectors,
                       DEV_NVECTORS_UNSPECIFIED),
    VTMEM_PROPERTIES_END
};

static void virtio_tmem_pci_realize(VirtIOPCIProxy *vpci_dev, Error **errp)
{
    VirtIOTmemPCI *dev = VIRTIO_TMEM_PCI(vpci_dev);
    DeviceState *vdev = DEVICE(&dev->vdev);

    /*
     * ioeventfd=auto: on with KVM or an IOThread, off otherwise. The
     * guest waits for every request (a swap-out or swap-in in progress).
     * Under TCG ioeventfd is emulated: each request becomes a hand-off to
     * the main loop, a halted vCPU and an interrupt. Served in the vCPU
     * thread instead, the answer is in the used ring when the kick
     * returns and the driver takes it without an interrupt
     * (docs/virtio-tmem.md, section 7: the figures). An IOThread needs
     * the host notifier. virtio_pci_realize() may have cleared the flag already
     * (KVM without enough ioeventfds, record/replay).
     */
    if (dev->ioeventfd == ON_OFF_AUTO_OFF ||
        (dev->ioeventfd == ON_OFF_AUTO_AUTO && !kvm_enabled() &&
         !dev->vdev.iothread)) {
        vpci_dev->flags &= ~VIRTIO_PCI_FLAG_USE_IOEVENTFD;
    }
    if (vpci_dev->nvectors == DEV_NVECTORS_UNSPECIFIED) {
        /* One for the request queue, one for configuration changes. */
        vpci_dev->nvectors = 2;
    }

    virtio_pci_force_virtio_1(vpci_dev);
    qdev_realize(vdev, BUS(&vpci_dev->bus), errp);
}

static void virtio_tmem_pci_class_init(ObjectClass *klass,
                                       VTMEM_CLASS_DATA *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioPCIClass *k = VIRTIO_PCI_CLASS(klass);
    PCIDeviceClass *pcidev_k = PCI_DEVICE_CLASS(klass);

    k->realize = virtio_tmem_pci_realize;
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);

    pcidev_k->vendor_id = PCI_VENDOR_ID_REDHAT_QUMRANET;
    pcidev_k->device_id = PCI_DEVICE_ID_VIRTIO_10_BASE + VIRTIO_ID_TMEM;
    pcidev_k->revision = VIRTIO_PCI_ABI_VERSION;
    pcidev_k->class_id = PCI_CLASS_OTHERS;
    device_class_set_props(dc, virtio_tmem_pci_properties);
}

static void virtio_tmem_pci_instance_init(Object *obj)
{
    VirtIOTmemPCI *dev = VIRTIO_TMEM_PCI(obj);

    /* Before virtio_pci_realize(), which may clear it (see realize). */
    dev->parent_obj.flags |= VIRTIO_PCI_FLAG_USE_IOEVENTFD;
    virtio_instance_init_common(obj, &dev->vdev, sizeof(dev->vdev),
                                TYPE_VIRTIO_TMEM);
    virtio_tmem_add_aliases(obj, OBJECT(&dev->vdev));
}

static const VirtioPCIDeviceTypeInfo virtio_tmem_pci_info = {
    .base_name     = TYPE_VIRTIO_TMEM_PCI,
    .generic_name  = "virtio-tmem-pci",
    .instance_size = sizeof(VirtIOTmemPCI),
    .instance_init = virtio_tmem_pci_instance_init,
    .class_init    = virtio_tmem_pci_class_init,
};

static void virtio_tmem_pci_register(void)
{
    virtio_pci_types_register(&virtio_tmem_pci_info);
}

type_init(virtio_tmem_pci_register)
