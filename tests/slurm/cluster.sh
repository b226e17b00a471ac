#!/bin/bash
# Test harness: a real one-node Slurm cluster with accounting (munge, MariaDB, slurmdbd,
# slurmctld, slurmd from Debian packages), for the Slurm end-to-end tests.
#   tests/slurm/cluster.sh up     install what is missing (apt), configure, start; idempotent
#   tests/slurm/cluster.sh down   stop the daemons this script started
#   tests/slurm/cluster.sh status exit 0 if the cluster answers
#   tests/slurm/cluster.sh ctld-stop|ctld-start   stop / start slurmctld alone (fault tests)
# Needs root (daemons, /etc/slurm). Takes about 30 s on a fresh machine plus package download.
set -euo pipefail

CLUSTER=mctest
ACCOUNT=mcacct
# a second account with a limit on queued jobs, as real sites have: the bundle tests submit with
# it (batch.bank), the other tests keep the unlimited one
LIMITED_ACCOUNT=mcbundle
LIMITED_MAX_SUBMIT=50
CONF=/etc/slurm/slurm.conf

install_packages() {
    # every command this script runs; packages can be half there (mariadbd without mysqld_safe)
    local cmd missing=0
    for cmd in slurmctld slurmd slurmdbd sacctmgr sinfo sbatch munged mysqld_safe mysqladmin mysql; do
        command -v "$cmd" >/dev/null || missing=1
    done
    (( missing )) || return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q slurm-wlm slurmdbd munge mariadb-server
}

start_munge() {
    mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
    [ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
}

start_mariadb() {
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    pgrep -x mariadbd >/dev/null || (mysqld_safe --user=mysql >/var/log/mysqld-mctest.log 2>&1 &)
    for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
    mysql -e "CREATE OR REPLACE USER 'slurm'@'localhost' IDENTIFIED BY 'mctest';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

write_config() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    chown slurm:slurm /var/spool/slurmctld /var/log/slurm
    cat > /etc/slurm/slurmdbd.conf <<EOC
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=mctest
StorageLoc=slurm_acct_db
EOC
    chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
    # No cgroups (proctrack/linuxproc, task/none). MinJobAge=2: finished jobs leave squeue within
    # seconds, so status must come from accounting, as on a busy cluster. OverSubscribe lets the
    # 2-core test machine run several one-task jobs at once. MaxArraySize/MaxJobCount are raised
    # (as sites running big sweeps do) so a 10,000-point sweep fits in one array per step.
    # AccountingStorageEnforce=limits: association limits (MaxSubmitJobs) hold, as on real sites.
    [ -f "$CONF" ] && cp "$CONF" "$CONF.before"
    cat > "$CONF" <<EOC
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=limits
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MinJobAge=2
MaxArraySize=100001
MaxJobCount=200000
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOC
}

start_slurm() {
    pgrep -x slurmdbd >/dev/null || /usr/sbin/slurmdbd
    for _ in $(seq 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
    sacctmgr -i add account "$ACCOUNT" >/dev/null 2>&1 || true
    sacctmgr -i add user "$(id -un)" account="$ACCOUNT" >/dev/null 2>&1 || true
    sacctmgr -i add account "$LIMITED_ACCOUNT" >/dev/null 2>&1 || true
    sacctmgr -i add user "$(id -un)" account="$LIMITED_ACCOUNT" >/dev/null 2>&1 || true
    sacctmgr -i modify user where name="$(id -un)" account="$LIMITED_ACCOUNT" set MaxSubmitJobs="$LIMITED_MAX_SUBMIT" >/dev/null 2>&1 || true
    # a controller started with an older configuration (no limits enforced) starts again
    if [ -f "$CONF.before" ] && ! cmp -s "$CONF" "$CONF.before" && pgrep -x slurmctld >/dev/null; then
        ctld_stop
    fi
    rm -f "$CONF.before"
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 60); do
        sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc' && return 0
        sleep 1
    done
    echo "cluster.sh: slurmd did not become idle; see /var/log/slurm/" >&2
    sinfo >&2 || true
    return 1
}

up() {
    install_packages
    start_munge
    start_mariadb
    write_config
    start_slurm
}

down() {
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    mysqladmin shutdown 2>/dev/null || true
}

# the controller alone, for the tests of a lost controller (its jobs survive in StateSaveLocation)
ctld_stop() {
    local pid
    pid=$(cat /run/slurmctld.pid 2>/dev/null || pgrep -x slurmctld || true)
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do pgrep -x slurmctld >/dev/null || return 0; sleep 0.5; done
    echo "cluster.sh: slurmctld did not stop" >&2
    return 1
}

ctld_start() {
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    for _ in $(seq 60); do
        sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc' && return 0
        sleep 1
    done
    echo "cluster.sh: slurmctld did not come back" >&2
    return 1
}

case "${1:-up}" in
    up) up ;;
    down) down ;;
    ctld-stop) ctld_stop ;;
    ctld-start) ctld_start ;;
    status) sinfo -h >/dev/null 2>&1 && sacct -n -X -j 1 >/dev/null 2>&1 ;;
    *) echo "usage: $0 up|down|status|ctld-stop|ctld-start" >&2; exit 2 ;;
esac
