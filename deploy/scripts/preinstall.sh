#!/bin/sh
# tollgate package: before its files are unpacked (deb preinst, rpm %pre).
# Makes the system groups and users that own them, unless they exist:
# tollgate (tollgate.service) and envoy (envoy@.service). Idempotent.
#   deb: preinst install|upgrade [OLD-VERSION], or abort-upgrade NEW-VERSION
#   rpm: %pre 1 (install) or 2 (upgrade)
set -e

# add_user NAME HOME COMMENT
add_user() {
	if ! getent group "$1" >/dev/null 2>&1; then
		groupadd --system "$1"
	fi
	if ! getent passwd "$1" >/dev/null 2>&1; then
		useradd --system --no-create-home --home-dir "$2" --shell /usr/sbin/nologin \
			--gid "$1" --comment "$3" "$1"
	fi
}

case "$1" in
abort-*) exit 0 ;;
esac
add_user tollgate /var/lib/tollgate "tollgate control plane"
add_user envoy /nonexistent "Envoy gateways (envoy@.service)"
exit 0
