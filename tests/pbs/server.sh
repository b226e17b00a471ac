#!/bin/bash
# Test harness: a real one-node OpenPBS server (server, scheduler, comm, mom and PBS's own
# postgres), for the PBS end-to-end tests.
#   tests/pbs/server.sh up      build+install OpenPBS if /opt/pbs/bin/qsub does not work, configure,
#                               start, create the test user; idempotent
#   tests/pbs/server.sh down    stop every PBS daemon
#   tests/pbs/server.sh status  exit 0 if the server answers and the node is usable
# Needs root. Source: <parent of the repository>/shared/vendor/openpbs-23.06.06.tar.gz
# (override with PBS_SOURCE_TARBALL). A clean build takes about 3 min on 2 cores.
# env: PBS_TEST_USER (default mcpbs), PBS_HOSTALIAS (default pbshost)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ALIAS=${PBS_HOSTALIAS:-pbshost}
TEST_USER=${PBS_TEST_USER:-mcpbs}
PBS_EXEC=/opt/pbs
PBS_HOME=/var/spool/pbs
VERSION=23.06.06
TARBALL=${PBS_SOURCE_TARBALL:-$REPO/../shared/vendor/openpbs-$VERSION.tar.gz}
BUILD_DIR=${PBS_BUILD_DIR:-/var/tmp/openpbs-build}
INIT=$PBS_EXEC/libexec/pbs_init.d
export PATH=$PBS_EXEC/bin:$PBS_EXEC/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
log() { echo "[pbs-server] $*" >&2; }

installed() { [ -x "$PBS_EXEC/bin/qsub" ] && "$PBS_EXEC/bin/qstat" --version >/dev/null 2>&1; }

build() {
    # a working install is reused: the build is the slow part (apt + 3 min of make)
    installed && return 0
    [ -f "$TARBALL" ] || { log "OpenPBS source not found: $TARBALL"; exit 1; }
    mkdir -p "$BUILD_DIR"
    [ -d "$BUILD_DIR/openpbs-$VERSION" ] || tar -xzf "$TARBALL" -C "$BUILD_DIR"
    bash "$HERE/build.sh" "$BUILD_DIR/openpbs-$VERSION"
}

host_alias() {
    # PBS refuses loopback addresses ("Could not find any usable IP address"): name the server
    # after an alias of the first non-loopback address
    local ip
    ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.' | grep -v '^127\.' | head -1 || true)
    if [ -z "$ip" ]; then
        ip link add pbs0 type dummy 2>/dev/null || true
        ip addr add 192.0.2.254/32 dev pbs0 2>/dev/null || true
        ip link set pbs0 up 2>/dev/null || true
        ip=$(ip -4 -o addr show dev pbs0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
        [ -n "$ip" ] || { log "no non-loopback IPv4 address: PBS cannot run here"; exit 1; }
    fi
    if ! grep -qE "^${ip//./\\.}[[:space:]]+${ALIAS}\$" /etc/hosts; then
        # /etc/hosts may be a bind mount: rewrite it in place, never rename over it
        grep -vE "[[:space:]]${ALIAS}\$" /etc/hosts >"/tmp/hosts.pbs.$$" || true
        echo "$ip $ALIAS" >>"/tmp/hosts.pbs.$$"
        cat "/tmp/hosts.pbs.$$" >/etc/hosts; rm -f "/tmp/hosts.pbs.$$"
    fi
}

write_config() {
    [ -d "$PBS_HOME/mom_priv" ] || "$PBS_EXEC/libexec/pbs_postinstall" >/tmp/pbs-postinstall.log 2>&1
    cat >/etc/pbs.conf.new <<EOC
PBS_SERVER=$ALIAS
PBS_START_SERVER=1
PBS_START_SCHED=1
PBS_START_COMM=1
PBS_START_MOM=1
PBS_EXEC=$PBS_EXEC
PBS_HOME=$PBS_HOME
PBS_CORE_LIMIT=unlimited
PBS_SCP=/usr/bin/scp
PBS_LEAF_NAME=$ALIAS
PBS_MOM_NODE_NAME=$ALIAS
PBS_SERVER_HOST_NAME=$ALIAS
EOC
    if cmp -s /etc/pbs.conf.new /etc/pbs.conf; then rm -f /etc/pbs.conf.new; else mv /etc/pbs.conf.new /etc/pbs.conf; fi
    chmod 4755 "$PBS_EXEC/sbin/pbs_iff" "$PBS_EXEC/sbin/pbs_rcp"
    # the mom would copy job output with scp (and hang in state E): copy it locally
    grep -q '^\$usecp' "$PBS_HOME/mom_priv/config" || echo '$usecp *:/ /' >>"$PBS_HOME/mom_priv/config"
}

# (output captured first: grep -q closing the pipe early would fail the pipeline under pipefail)
running() { local out; out=$("$INIT" status 2>/dev/null || true); [[ $out == *"pbs_server is pid"* ]]; }
node_usable() { local out; out=$(pbsnodes "$ALIAS" 2>/dev/null || true); [[ $out =~ state\ =\ (free|job-busy) ]]; }

configure_server() {
    qmgr -c "list queue workq" >/dev/null 2>&1 || qmgr -c "create queue workq queue_type=execution,enabled=true,started=true"
    qmgr -c "set server default_queue=workq"
    # a queue with a limit on queued jobs per user, as sites have: the bundle tests fit a sweep into it
    # (tests/test_bundles_pbs.py); the other tests use workq, without limit
    qmgr -c "list queue bundleq" >/dev/null 2>&1 || qmgr -c "create queue bundleq queue_type=execution,enabled=true,started=true"
    qmgr -c "set queue bundleq max_queued = [u:PBS_GENERIC=50]"
    # finished jobs stay visible to qstat -x for an hour: status reads them there
    qmgr -c "set server job_history_enable=true"
    qmgr -c "set server job_history_duration=01:00:00"
    qmgr -c "set server scheduler_iteration=10"
    qmgr -c "set server mailer=/bin/true"
    qmgr -c "set server flatuid=true"
    qmgr -c "list node $ALIAS" >/dev/null 2>&1 || qmgr -c "create node $ALIAS"
}

python_deps() {
    # the tests run the CLI as the test user with the system Python: Debian's packages of our deps
    /usr/bin/python3 -c "import jinja2, yaml, voluptuous, tabulate" 2>/dev/null && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends python3-jinja2 python3-yaml python3-voluptuous python3-tabulate >/dev/null
}

up() {
    local start i
    start=$(date +%s)
    build
    python_deps
    host_alias
    write_config
    # root cannot submit (qsub: Bad UID for job execution): the tests submit as this user
    id "$TEST_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$TEST_USER"
    running || "$INIT" start >/tmp/pbs-start.log 2>&1 || { cat /tmp/pbs-start.log; exit 1; }
    for i in $(seq 60); do qstat -B >/dev/null 2>&1 && break; sleep 1; done
    qstat -B >/dev/null || { log "server did not answer"; cat /tmp/pbs-start.log; exit 1; }
    configure_server
    for i in $(seq 60); do node_usable && break; sleep 1; done
    node_usable || { log "node not usable:"; pbsnodes -a; exit 1; }
    log "up in $(( $(date +%s) - start ))s"
}

down() {
    [ -x "$INIT" ] || return 0
    "$INIT" stop >/tmp/pbs-stop.log 2>&1 || true
    local i
    for i in $(seq 30); do
        pgrep -x pbs_server.bin >/dev/null || pgrep -x pbs_mom >/dev/null || pgrep -x pbs_sched >/dev/null \
            || pgrep -x pbs_comm >/dev/null || break
        sleep 1
    done
    log "down"
}

status() {
    installed && running && qstat -B >/dev/null 2>&1 && node_usable && id "$TEST_USER" >/dev/null 2>&1 \
        && /usr/bin/python3 -c "import jinja2, yaml, voluptuous, tabulate" 2>/dev/null
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
