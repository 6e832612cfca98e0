# SPDX-License-Identifier: GPL-2.0-or-later
# Adds virtio-tmem to QEMU's hw/virtio/virtio.c (run by build-qemu.sh on
# the pristine file): its name in virtio_device_names[] (virtio_init()
# asserts that the device ID has one) and its feature names for
# x-query-virtio-status (qmp_decode_features() asserts on an unknown ID).
# QEMU 10.0 moved qmp_decode_features() to hw/virtio/virtio-qmp.c: run it
# on each file with -v want="PARTS", the parts that file must get:
#   7.2: virtio.c "include name map case";
#   10.0: virtio.c "include name", virtio-qmp.c "include map case".
# The IDs come from include/virtio_tmem.h. Every wanted anchor must match
# once, every other one never.
n_include == 0 && /^#include "(hw\/virtio\/virtio|virtio-qmp)\.h"$/ {
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
/^(static )?VirtioDeviceFeatures \*qmp_decode_features\(/ {
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
	if (want == "")
		want = "include name map case"
	count["include"] = n_include
	count["name"] = n_name
	count["map"] = n_map
	count["case"] = n_case
	for (part in count) {
		expect = index(" " want " ", " " part " ") ? 1 : 0
		if (count[part] != expect) {
			printf "virtio-c.awk: %s: the %s anchor matched %d times, not %d\n",
				FILENAME, part, count[part], expect > "/dev/stderr"
			exit 1
		}
	}
}
