#!/bin/sh
# tollgate package: after its files are removed (deb postrm, rpm %postun).
# systemd forgets the removed units; an rpm upgrade restarts the service (as
# %systemd_postun_with_restart does); a deb purge drops the enablement links
# of tollgate.service and of envoy@ instances. The tollgate and envoy users
# and /var/lib/tollgate (the API store) are kept: remove them by hand.
#   deb: postrm remove | purge | upgrade NEW-VERSION | disappear | abort-* | failed-upgrade
#   rpm: %postun 0 (erase) or 1 (upgrade)
set -e

if [ "$1" = purge ]; then
	rm -f /etc/systemd/system/multi-user.target.wants/tollgate.service
	for link in /etc/systemd/system/*.wants/envoy@*.service; do
		if [ -L "$link" ]; then
			rm -f "$link"
		fi
	done
fi

command -v systemctl >/dev/null 2>&1 || exit 0
[ -d /run/systemd/system ] || exit 0
case "$1" in
remove | purge | 0) systemctl daemon-reload || true ;;
[0-9]*)
	systemctl daemon-reload || true
	systemctl try-restart tollgate.service || true
	;;
esac
exit 0
