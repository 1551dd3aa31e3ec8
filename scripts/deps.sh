#!/usr/bin/env bash
# Installs the Debian 12 packages Parta needs to build, run and test. Quiet
# when everything is there. As root it installs what is missing with apt-get
# (non-interactive); otherwise it prints the command to run and exits 1.
# `make run`, `make test` and `make bench` call it first.
set -u

# Compiler, code generator and the libraries the C code links against
# (cmocka and libcurl only for the tests). The gateway runs lws on libev:
# libev-dev to build, and lws's libev glue, which it loads at run time.
build_packages=(
    gcc make libc6-dev pkg-config protobuf-c-compiler
    libprotobuf-c-dev libczmq-dev libzmq3-dev libhiredis-dev libsqlite3-dev
    libsodium-dev libjansson-dev libwebsockets-dev libwebsockets-evlib-ev libev-dev
    libmagic-dev libstemmer-dev libcmocka-dev libcurl4-openssl-dev
)
# What `make run` and the tests start or use: Redis, node for the static and
# end-to-end tests (with Debian's ws and js-yaml modules), ps/pkill, curl.
run_packages=(
    redis-server nodejs node-ws node-js-yaml procps curl
)
packages=("${build_packages[@]}" "${run_packages[@]}")

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps: dpkg-query not found; Parta expects Debian 12 (bookworm) with: ${packages[*]}" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    # One line per installed architecture; "installed" on any of them is enough.
    if ! dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#packages[@]} Debian packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    echo "deps: install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive APT_LISTCHANGES_FRONTEND=none
apt_opts=(-q -y -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300)
log=$(mktemp)

# Package postinst scripts (redis-server's) try to start their service through
# invoke-rc.d / deb-systemd-invoke. Parta starts its own Redis, and in a
# container or chroot a service start can fail or leave a daemon behind, which
# would fail the install. A policy-rc.d that answers 101 ("action forbidden")
# makes both helpers skip the start; it is removed again when we are done. One
# that is already there is the administrator's and is left alone.
policy=/usr/sbin/policy-rc.d
own_policy=
cleanup() {
    [ -n "$own_policy" ] && rm -f "$policy"
    rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Temporary, while Parta installs its packages: no service starts.\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi

# The package lists need refreshing when there are none, or when one of the
# missing packages has no install candidate in them.
lists_need_update() {
    ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages' || return 0
    local p cand
    for p in "${missing[@]}"; do
        cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
        if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
            return 0
        fi
    done
    return 1
}

apt_update() {
    echo "deps: apt-get update"
    if ! apt-get "${apt_opts[@]}" update >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "deps: apt-get update failed" >&2
        exit 1
    fi
}

apt_install() {
    apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" >"$log" 2>&1
}

echo "deps: installing ${missing[*]}"
updated=
if lists_need_update; then
    apt_update
    updated=1
fi
if ! apt_install; then
    # Stale lists point at package versions the mirror no longer has.
    if [ -z "$updated" ]; then
        apt_update
        apt_install || { tail -n 30 "$log" >&2; echo "deps: apt-get install failed" >&2; exit 1; }
    else
        tail -n 30 "$log" >&2
        echo "deps: apt-get install failed" >&2
        exit 1
    fi
fi

still=()
for p in "${missing[@]}"; do
    dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
    echo "deps: still not installed after apt-get: ${still[*]}" >&2
    exit 1
fi
echo "deps: installed ${#missing[@]} packages"
