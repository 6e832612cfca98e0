# SPDX-License-Identifier: GPL-2.0-or-later
# Adds virtio-tmem to QEMU 7.2's hw/virtio/virtio.c (run by build-qemu.sh on
# the pristine file): its name in virtio_device_names[] (virtio_init()
# asserts that the device ID has one) and its feature names for
# x-query-virtio-status (qmp_decode_features() asserts on an unknown ID).
# The IDs come from include/virtio_tmem.h. Every anchor must match once.
/^#include "hw\/virtio\/virtio.h"$/ {
	print
	print "#include \"vtmem/virtio_tmem.h\""
	n_include++
	next
}
/^    \[VIRTIO_ID_GPIO\] = "virtio-gpio"$/ {
	print $0 ","
	print "    [VIRTIO_ID_TMEM] = \"virtio-tmem\""
	n_name++
	next
}
/^static VirtioDeviceFeatures \*qmp_decode_features\(/ {
	print "#ifdef CONFIG_VIRTIO_TMEM"
	print "/* virtio-tmem features */"
	print "static qmp_virtio_feature_map_t virtio_tmem_feature_map[] = {"
	print "    FEATURE_ENTRY(VIRTIO_TMEM_F_SHRINK, \\"
	print "            \"VIRTIO_TMEM_F_SHRINK: Device publishes a shrink target\"),"
	print "    { -1, \"\" }"
	print "};"
	print "#endif"
	print ""
	print
	n_map++
	next
}
/^    \/\* No features \*\/$/ {
	print "#ifdef CONFIG_VIRTIO_TMEM"
	print "    case VIRTIO_ID_TMEM:"
	print "        features->dev_features ="
	print "            CONVERT_FEATURES(strList, virtio_tmem_feature_map, 0, bitmap);"
	print "        break;"
	print "#endif"
	print
	n_case++
	next
}
{ print }
END {
	if (n_include != 1 || n_name != 1 || n_map != 1 || n_case != 1) {
		print "virtio-c.awk: an anchor in virtio.c did not match once" > "/dev/stderr"
		exit 1
	}
}
