#!/usr/bin/env bash
# Make sure the system packages the embedded local stack needs are installed:
# PostgreSQL 15 server binaries and the wal2json output plugin (Debian: postgresql-15,
# postgresql-15-wal2json). Silent when everything is present. Installs them with apt-get when
# run as root or by a user with passwordless sudo; otherwise says what to install and exits 1.
set -euo pipefail

PG_BINDIR=${CDC_DEVSTACK_PG_BINDIR:-/usr/lib/postgresql/15/bin}
PACKAGES=(postgresql-15 postgresql-15-wal2json)

say() { echo "ensure_system_deps: $*" >&2; }

pkglibdir() {
    if [[ -x $PG_BINDIR/pg_config ]]; then
        "$PG_BINDIR/pg_config" --pkglibdir
    else
        echo "$(dirname "$PG_BINDIR")/lib"
    fi
}

missing() {
    local bin
    for bin in initdb postgres pg_ctl; do
        [[ -x $PG_BINDIR/$bin ]] || { echo "$PG_BINDIR/$bin"; return 0; }
    done
    [[ -f $(pkglibdir)/wal2json.so ]] || { echo "$(pkglibdir)/wal2json.so"; return 0; }
    return 1
}

what=$(missing) || exit 0

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    say "$what is missing, and installing needs root."
    say "install the Debian packages: sudo apt-get install -y ${PACKAGES[*]}"
    say "(then run make test again)"
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "$what is missing and this system has no apt-get."
    say "install PostgreSQL 15 with the wal2json plugin (Debian packages: ${PACKAGES[*]})"
    say "or point CDC_DEVSTACK_PG_BINDIR at a PostgreSQL 15 bin directory that has wal2json."
    exit 1
fi

say "$what is missing: installing ${PACKAGES[*]}"
# Keep the package from creating (and starting) a default cluster on port 5432: the devstack
# makes its own clusters on free ports. Only done when postgresql-common is not configured yet.
if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    "${SUDO[@]}" mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${SUDO[@]}" apt-get update -qq &&
       "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           -o Dpkg::Options::=--force-confold "${PACKAGES[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    say "apt-get could not install ${PACKAGES[*]} (output above)."
    say "on Ubuntu or older Debian, add the PostgreSQL apt repository (https://wiki.postgresql.org/wiki/Apt) first."
    exit 1
fi

if what=$(missing); then
    say "still missing after installing: $what"
    exit 1
fi
say "installed ${PACKAGES[*]}"
