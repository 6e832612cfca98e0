#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Prints the URI of the Debian archive this machine's apt is configured with
# (the first "deb" source that carries the machine's own release suite, not
# its security archive), so that sources for other suites (deb-src,
# bookworm-backports, trixie) and chroots use the same mirror as the host.
# Usage: scripts/apt-mirror.sh          (or: . scripts/apt-mirror.sh; debian_mirror)
# Exits 1 with a message when no such source is configured.

debian_mirror() {
	# shellcheck source=/dev/null
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || codename=bookworm
	# deb822 files: a stanza's Types, URIs and Suites, in any order.
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		uri=$(awk -v want="$codename" '
			function flush() {
				if (!found && types ~ /(^| )deb( |$)/ &&
				    (" " suites " ") ~ (" " want " ")) {
					split(uris, u, " "); print u[1]; found = 1
				}
				types = uris = suites = ""
			}
			found { exit }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			tolower($1) == "types:" { $1 = ""; types = $0 }
			tolower($1) == "uris:" { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
			tolower($1) == "suites:" { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
			END { flush() }' "$f")
		[ -z "$uri" ] || { echo "${uri%/}"; return 0; }
	done
	# One-line format: deb [options] URI SUITE COMPONENTS...
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		uri=$(awk -v want="$codename" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i + 1) == want) { print $i; exit }
			}' "$f")
		[ -z "$uri" ] || { echo "${uri%/}"; return 0; }
	done
	echo "apt-mirror.sh: no 'deb' source for $codename in /etc/apt/sources.list{,.d}" >&2
	return 1
}

# Run as a command (not sourced): print the mirror.
case $0 in
*apt-mirror.sh) debian_mirror ;;
esac
