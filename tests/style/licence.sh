#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Every source, build and script file names its licence (an SPDX line, or
# QEMU's licence paragraph in the device files), and COPYING is there.
# Usage: licence.sh SOURCE_ROOT
set -eu
cd "${1:?usage: $0 SOURCE_ROOT}"
[ -f COPYING ] || { echo "COPYING is missing"; exit 1; }
missing=$(git ls-files | while read -r f; do
	case $f in
	# (*.png: plots; the script that draws each one names its licence)
	*.md | *.txt | *.json | *.png | *.gitignore | */corpus/* | COPYING) continue ;;
	esac
	head -n 20 "$f" | grep -q 'SPDX-License-Identifier:\|licensed under the terms of the GNU GPL' ||
		echo "$f"
done)
[ -z "$missing" ] || { echo "no licence line in:"; echo "$missing"; exit 1; }
echo "every file names its licence"
