#!/bin/sh
# Prepare a CI job on a Debian 12 runner (or a debian:bookworm image), as root: Python with
# venv (apt-get if the image lacks it), pvkit with the extras in $PVKIT_EXTRAS (e.g.
# "test,plot") in .venv, then the host tools pvkit needs (`pvkit setup`: apt-get) unless
# PVKIT_SETUP=0.
set -eu
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip git
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
spec=.
[ -z "${PVKIT_EXTRAS:-}" ] || spec=".[$PVKIT_EXTRAS]"
.venv/bin/pip install --quiet --disable-pip-version-check -e "$spec"
[ "${PVKIT_SETUP:-1}" = 0 ] || .venv/bin/pvkit setup
