#!/bin/sh
# tollgate package: after its files are in place (deb postinst, rpm %post).
# A first install enables tollgate.service and, when systemd runs, starts
# it; an upgrade restarts it if it is enabled (deb; rpm restarts it from the
# old package's %postun), leaving a service the operator disabled alone.
#   deb: postinst configure [LAST-CONFIGURED-VERSION] (empty: first install),
#        or abort-remove|abort-deconfigure|abort-upgrade ... (undo a prerm)
#   rpm: %post 1 (install) or 2 (upgrade)
set -e

case "$1" in
configure) if [ -z "$2" ]; then action=install; else action=upgrade; fi ;;
abort-remove | abort-deconfigure | abort-upgrade) action=upgrade ;;
1) action=install ;;
[0-9]*) action=rpm-upgrade ;;
*) exit 0 ;;
esac

command -v systemctl >/dev/null 2>&1 || exit 0
running=false
if [ -d /run/systemd/system ]; then
	running=true
	systemctl daemon-reload || true
fi

case "$action" in
install)
	# Enabling needs no running systemd (an image being built): it only
	# makes the symbolic link, and the service starts at the next boot.
	if [ "$running" = true ]; then
		systemctl enable --now tollgate.service ||
			echo "tollgate: the service did not start: see journalctl -u tollgate" >&2
	else
		systemctl enable tollgate.service || true
	fi
	;;
upgrade)
	if [ "$running" = true ] && systemctl --quiet is-enabled tollgate.service; then
		systemctl restart tollgate.service ||
			echo "tollgate: the service did not restart: see journalctl -u tollgate" >&2
	fi
	;;
esac
exit 0
