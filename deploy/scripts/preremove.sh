#!/bin/sh
# tollgate package: before its files are removed (deb prerm, rpm %preun).
# Removing the package (not upgrading it) stops tollgate.service; rpm also
# disables it (as %systemd_preun does); deb keeps the enablement until purge,
# so that reinstalling restores it. Running envoy@ instances are left alone:
# they keep serving their last configuration; stop them first if need be.
#   deb: prerm remove | upgrade NEW-VERSION | deconfigure ... | failed-upgrade ...
#   rpm: %preun 0 (erase) or 1 (upgrade)
set -e

command -v systemctl >/dev/null 2>&1 || exit 0
case "$1" in
remove)
	if [ -d /run/systemd/system ]; then
		systemctl stop tollgate.service || true
	fi
	;;
0)
	if [ -d /run/systemd/system ]; then
		systemctl --no-reload disable --now tollgate.service || true
	else
		systemctl --no-reload disable tollgate.service || true
	fi
	;;
esac
exit 0
