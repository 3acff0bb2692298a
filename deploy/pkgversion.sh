#!/bin/sh
# pkgversion.sh VERSION EPOCH: the package version (deb and rpm, through
# nfpm's semver parsing) of a `git describe --tags --always --dirty`, sorting
# as the builds do:
#   v1.2.3                   1.2.3
#   v1.2.3-rc.1              1.2.3-rc.1             (deb/rpm 1.2.3~rc.1: before 1.2.3)
#   v1.2.3-4-gabcdef0        1.2.3+4.gabcdef0       (after 1.2.3, before 1.2.4)
#   v1.2.3-4-gabcdef0-dirty  1.2.3+4.gabcdef0.dirty
#   v1.2.3-dirty             1.2.3+dirty
#   abcdef0[-dirty]          0.0.0+git20260102030405.abcdef0[.dirty] (no tag: the commit time)
set -eu
v=${1#v}
dirty=
case "$v" in
*-dirty) v=${v%-dirty} dirty=dirty ;;
esac
case "$v" in
[0-9]*.[0-9]*.[0-9]*)
	meta=$(printf '%s\n' "$v" | sed -n 's/^.*-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)$/\1.g\2/p')
	if [ -n "$meta" ]; then
		v=$(printf '%s\n' "$v" | sed 's/-[0-9][0-9]*-g[0-9a-f][0-9a-f]*$//')
	fi
	;;
*)
	meta="git$(date -u -d "@$2" +%Y%m%d%H%M%S).$v"
	v=0.0.0
	;;
esac
if [ -n "$dirty" ]; then
	meta=${meta:+$meta.}$dirty
fi
printf '%s\n' "$v${meta:++$meta}"
