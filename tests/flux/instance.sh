#!/bin/bash
# Test harness: a real Flux instance (flux-core 0.88.0) for the Flux tests.
#   tests/flux/instance.sh build          build flux-core into /opt/flux from the vendored tarball
#                                         (shared/vendor/flux-core-0.88.0.tar.gz beside the clone)
#                                         unless a working flux is there; idempotent; needs root
#   tests/flux/instance.sh start DIR [N]  start an instance of N brokers (default 1) on this machine,
#                                         detached, its state in DIR; prints its FLUX_URI (also DIR/uri)
#   tests/flux/instance.sh stop DIR       stop the instance started in DIR (and its jobs)
#   tests/flux/instance.sh status DIR     exit 0 if the instance started in DIR answers
# FLUX_PREFIX (default /opt/flux) is where flux is installed. Building takes about 2.5 min on 2 cores.
set -euo pipefail

PREFIX=${FLUX_PREFIX:-/opt/flux}
VERSION=0.88.0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shared/ (vendored sources) sits beside the clone: in CI a read-only copy, here beside the worktrees
SHARED=${MAESTRO_SHARED_DIR:-$(cd "$REPO/.." && pwd)/shared}

flux_works() {
    env -u FLUX_URI "$PREFIX/bin/flux" version >/dev/null 2>&1
}

build() {
    if flux_works; then
        echo "flux already built in $PREFIX: $("$PREFIX/bin/flux" version | head -1)"
        return 0
    fi
    local tarball=$SHARED/vendor/flux-core-$VERSION.tar.gz work
    [[ -f $tarball ]] || { echo "instance.sh: no flux at $PREFIX and no $tarball to build it from" >&2; exit 1; }
    [[ $(id -u) == 0 ]] || { echo "instance.sh: building flux needs root (apt build dependencies, $PREFIX)" >&2; exit 1; }
    # Debian bookworm has no flux-core package. Build dependencies as in flux-core's
    # scripts/install-deps-deb.sh, adapted (lua5.3: bookworm has no liblua5.1-dev; no docs).
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        autoconf automake libtool make pkg-config libc6-dev gcc g++ \
        libzmq3-dev uuid-dev libjansson-dev liblz4-dev libarchive-dev libhwloc-dev libsqlite3-dev \
        libncurses-dev lua5.3 liblua5.3-dev lua-posix \
        python3-dev python3-cffi python3-ply python3-setuptools python3-yaml jq time bc
    # unpacked outside the repository (which may be read-only); removed after the install
    work=$(mktemp -d /var/tmp/flux-build.XXXXXX)
    tar -xzf "$tarball" -C "$work"
    (
        # Debian's python3, not a pyenv or venv one: the bindings are built for the system Python
        export PATH=/usr/bin:/bin:/usr/sbin:/sbin PYTHON=/usr/bin/python3
        # configure takes the version from `git describe`; the archive has no .git
        export FLUX_VERSION=$VERSION
        cd "$work/flux-core-$VERSION"
        nice -n 19 ./autogen.sh
        nice -n 19 ./configure --prefix="$PREFIX" --disable-docs
        nice -n 19 make -j"$(nproc)"
        nice -n 19 make install
    )
    rm -rf "$work"
    "$PREFIX/bin/flux" version
}

start() {
    local dir=${1:?usage: $0 start DIR [N]} size=${2:-1} i
    flux_works || { echo "instance.sh: no working flux in $PREFIX (run: $0 build)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    rm -f "$dir/uri" "$dir/pid"
    # The initial program writes the instance's URI and waits; the instance lives until it ends.
    # The broker runs in a session of its own, so it outlives the command that started it.
    PATH=$PREFIX/bin:/usr/bin:/bin setsid "$PREFIX/bin/flux" start --test-size="$size" \
        sh -c 'printf "%s\n" "$FLUX_URI" > "$0/uri.new" && mv "$0/uri.new" "$0/uri" && exec sleep 1000000' "$dir" \
        > "$dir/broker.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    for (( i = 0; i < 600; i++ )); do
        if [[ -s $dir/uri ]] && FLUX_URI=$(cat "$dir/uri") "$PREFIX/bin/flux" uptime >/dev/null 2>&1; then
            cat "$dir/uri"
            return 0
        fi
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "instance.sh: the Flux instance did not start; $dir/broker.log:" >&2
    cat "$dir/broker.log" >&2
    stop "$dir"
    exit 1
}

stop() {
    local dir=${1:?usage: $0 stop DIR} pid i
    [[ -f $dir/pid ]] || return 0
    pid=$(cat "$dir/pid")
    if [[ -s $dir/uri ]]; then
        # ends the initial program: the instance cancels its jobs and shuts down
        FLUX_URI=$(cat "$dir/uri") timeout 60 "$PREFIX/bin/flux" shutdown --quiet >/dev/null 2>&1 || true
    fi
    for (( i = 0; i < 300; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # still there: end the session it leads (only that session: the broker and its initial program)
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

status() {
    local dir=${1:?usage: $0 status DIR}
    [[ -s $dir/uri ]] && FLUX_URI=$(cat "$dir/uri") "$PREFIX/bin/flux" uptime >/dev/null 2>&1
}

case ${1:-} in
    build) build ;;
    start) start "${@:2}" ;;
    stop) stop "${@:2}" ;;
    status) status "${@:2}" ;;
    *) echo "usage: $0 build | start DIR [N] | stop DIR | status DIR" >&2; exit 2 ;;
esac
