#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Runs shellcheck on every shell script in the repository (by name or #! line).
# Usage: shellcheck.sh SOURCE_ROOT
set -eu
cd "${1:?usage: $0 SOURCE_ROOT}"
scripts=$(git ls-files | while read -r f; do
	case $f in
	*.sh) echo "$f" ;;
	*.*) ;;
	*) head -n 1 "$f" 2>/dev/null | grep -qE '^#!.*/(env )?(ba|da)?sh' && echo "$f" ;;
	esac
done)
# shellcheck disable=SC2086 # file names without spaces, from git
exec shellcheck -x $scripts
