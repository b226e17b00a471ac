#!/bin/bash
# maestro_compile: runs study 'hello_world' on this machine, with no scheduler.
# Every step runs in dependency order, up to JOBS steps at a time; a failed step's descendants
# are not run. Plain bash: no Python is needed to run it.
#
#   ./submit.sh                start in the background (own session, survives logout), return
#   ./submit.sh --foreground   run here and wait until the study ends
#   ./submit.sh --jobs N       run at most N steps at once (default: number of cores)
#   ./submit.sh --nodes FILE   run again only the nodes named in FILE (one per line) of a study
#                              submitted before; every other node counts as done (maestro resubmit)
#
# Every step writes KEY=VALUE markers to <workspace>/<name>.status; `maestro status` reads them.
set -u

STUDY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR="$STUDY_DIR/.maestro"
LEDGER="$STUDY_DIR/jobs.tsv"

# --- the plan: one entry per node, in an order where parents come first ---
NODES=(
    hello_world
)
SCRIPTS=(
    hello_world/hello_world.sh
)
WORKSPACES=(
    hello_world
)
# output, error and status files are LOGS[i].out, .err and .status
LOGS=(
    hello_world/hello_world
)
# indices of each node's parents and children
PARENTS=(
    ""
)
CHILDREN=(
    ""
)

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

JOBS=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
FOREGROUND=0
LOCKED=0
NODES_FILE=""
while (( $# )); do
    case $1 in
        --foreground) FOREGROUND=1 ;;
        --jobs) JOBS=${2:-}; shift ;;
        --jobs=*) JOBS=${1#--jobs=} ;;
        --locked) LOCKED=1 ;;   # internal: the lock was taken by the process that detached us
        --nodes) NODES_FILE=${2:-}; shift ;;
        --nodes=*) NODES_FILE=${1#--nodes=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "submit.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if ! [[ $JOBS =~ ^[1-9][0-9]*$ ]]; then
    echo "submit.sh: --jobs needs a whole number >= 1, got '$JOBS'" >&2
    exit 2
fi
if [[ -n $NODES_FILE && ! -r $NODES_FILE ]]; then
    echo "submit.sh: --nodes: cannot read '$NODES_FILE'" >&2
    exit 2
fi

# A study runs once: the first submit creates .maestro/submitted atomically (noclobber).
take_lock() {
    mkdir -p "$STATE_DIR" || { echo "submit.sh: error: cannot write $STATE_DIR (a read-only or full file system?); nothing was submitted" >&2; exit 1; }
    if ! ( set -o noclobber; echo "$(date +%s) $$" > "$STATE_DIR/submitted" ) 2>/dev/null; then
        if [[ -e $STATE_DIR/submitted ]]; then
            echo "submit.sh: study $STUDY_DIR was already submitted (see $STATE_DIR/submitted); a study is not run twice" >&2
        else
            echo "submit.sh: cannot write $STATE_DIR/submitted (a read-only or full file system?); nothing was started" >&2
        fi
        exit 1
    fi
}

# A run of some nodes again (--nodes) needs the study's first run to have been submitted.
check_submitted() {
    if [[ ! -e $STATE_DIR/submitted ]]; then
        echo "submit.sh: --nodes runs nodes of a study again, but $STUDY_DIR was never submitted" >&2
        exit 1
    fi
}

# select_nodes FILE: SELECTED[i]=1 for every node named in FILE (one name per line)
select_nodes() {
    local -A index=()
    local i name
    for i in "${!NODES[@]}"; do
        index[${NODES[i]}]=$i
    done
    SELECTED=()
    while IFS= read -r name || [[ -n $name ]]; do
        [[ -n $name ]] || continue
        if [[ -z ${index[$name]+set} ]]; then
            echo "submit.sh: --nodes $1: there is no node '$name' in this study" >&2
            return 1
        fi
        SELECTED[${index[$name]}]=1
    done < "$1"
}

detach() {
    local old_pid="" pid="" child try tries=100
    if [[ -n $NODES_FILE ]]; then
        check_submitted
        select_nodes "$NODES_FILE" || exit 2   # here, so that a bad list is reported to the caller
        old_pid=$(cat "$STATE_DIR/runner.pid" 2>/dev/null)
        tries=600
    else
        take_lock
    fi
    local runner=(bash "${BASH_SOURCE[0]}" --foreground --locked --jobs "$JOBS")
    [[ -n $NODES_FILE ]] && runner+=(--nodes "$NODES_FILE")
    if command -v setsid >/dev/null; then
        setsid "${runner[@]}" </dev/null >>"$STATE_DIR/runner.log" 2>&1 &
    else
        nohup "${runner[@]}" </dev/null >>"$STATE_DIR/runner.log" 2>&1 &
    fi
    child=$!
    for (( try = 0; try < tries; try++ )); do
        pid=$(cat "$STATE_DIR/runner.pid" 2>/dev/null)
        [[ -n $pid && $pid != "$old_pid" ]] && break
        pid=""
        sleep 0.05
    done
    if [[ -n $NODES_FILE ]]; then
        if [[ -z $pid ]]; then   # a runner that starts later must not run behind our caller's back
            kill "$child" 2>/dev/null
            echo "submit.sh: the runner did not start (see $STATE_DIR/runner.log)" >&2
            exit 1
        fi
        echo "started ${#SELECTED[@]} of the study's ${#NODES[@]} step(s) again in the background (runner pid $pid, up to $JOBS at a time)"
        return
    fi
    echo "started ${#NODES[@]} step(s) in the background (runner pid ${pid:-?}, up to $JOBS at a time)"
}

mark() {  # mark NODE_INDEX KEY VALUE: append a marker on the node's behalf
    printf '%s=%s\n' "$2" "$3" >> "$STUDY_DIR/${LOGS[$1]}.status"
}

# --- the launcher: a bash process of its own (the runner's bash) that starts the steps and
# reports their ends ---
# The runner holds the whole plan (megabytes for a big study), and a fork copies the forking
# process's memory map: the small launcher forks for the steps instead. Requests come on fd 3 as
# records: an 8-digit length, then that many characters (bash reads a counted record in one
# system call, a line one byte at a time):
#   INDEX<TAB>NODE<TAB>WORKSPACE<TAB>SCRIPT<TAB>LOG   start the step (paths relative to the study)
#                                                    and append its line to the ledger (fd 5)
#   wait                                             report the next step to end
# A report is 16 digits: the step's INDEX (10) and EXIT_CODE (6).
# Bash 5.1 and later say which child ended (wait -n -p), so a step is one process; under older
# bash (or with MAESTRO_RUNNER_SUBSHELLS=1, which the tests use) each step runs under a subshell
# that writes its own report when the step ends, and "wait" does nothing.
launch_steps() {
    local study=$1 ledger=$2 jobs=$3 size request one_process=0 head=0 tail=0
    local -A index_of=()
    local -a queue=()
    if (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 501 )) && [[ -z ${MAESTRO_RUNNER_SUBSHELLS:-} ]]; then
        one_process=1
    fi
    cd "$study" || exit 1
    exec 5>>"$ledger" || exit 1
    while read -r -N 8 -u 3 size && read -r -N "$((10#$size))" -u 3 request; do
        if [[ $request == wait ]]; then
            (( one_process )) && { report_end || exit 1; }
        elif (( one_process && ${#index_of[@]} >= jobs )); then
            queue[tail++]=$request   # started as soon as a step ends, before the runner hears of it
        else
            start_request "$request"
        fi
    done
}

# start_request REQUEST (in the launcher): a child that runs the step
start_request() {
    local request=$1 i node workspace script log
    i=${request%%$'\t'*} request=${request#*$'\t'}
    node=${request%%$'\t'*} request=${request#*$'\t'}
    workspace=${request%%$'\t'*} request=${request#*$'\t'}
    script=${request%%$'\t'*} log=${request#*$'\t'}
    if (( one_process )); then
        run_step &
        index_of[$!]=$i
    else
        {
            ( run_step )
            printf '%010d%06d' "$i" "$?"
        } 3<&- &
        disown "$!"   # bash would keep every ended step in its job table, and search it at each end
    fi
}

# run_step (in a child of the launcher): the step's line in the ledger, then the step in its
# workspace with its output in its own files. The child writes the line: a redirection in the
# launcher would cost it a save and a restore of its output for every step.
run_step() {
    exec 3<&- 1>&5 5>&-
    printf '%(%s)T\t%s\t%s\n' -1 "$node" "$BASHPID"
    cd "$workspace" && exec "$study/$script" >"$study/$log.out" 2>"$study/$log.err"
}

# report_end (in the launcher): write "INDEX EXIT_CODE" of the next step to end. A step that has
# ended may have been put aside by bash already, where `wait -n` no longer sees it but `wait PID`
# does: those are asked for by pid first (kill -0 fails once a process is gone).
report_end() {
    local pid rc
    for pid in "${!index_of[@]}"; do
        kill -0 "$pid" 2>/dev/null && continue
        wait "$pid"
        rc=$?
        break
    done
    if [[ -z ${rc:-} ]]; then
        wait -n -p pid
        rc=$?
    fi
    if [[ -z ${pid:-} || -z ${index_of[$pid]:-} ]]; then   # none of ours was left in bash's list
        for pid in "${!index_of[@]}"; do
            wait "$pid"
            rc=$?
            break
        done
    fi
    [[ -n ${pid:-} && -n ${index_of[$pid]:-} ]] || return 1
    local ended=${index_of[$pid]}
    unset 'index_of[$pid]'
    if (( head < tail )); then
        start_request "${queue[head]}"
        unset 'queue[head]'
        (( head += 1 ))
    fi
    printf '%010d%06d' "$ended" "$rc"
}

start_launcher() {
    exec 4<&0   # the runner's stdin, which the steps get
    coproc LAUNCHER {
        exec "$BASH" -c "$(declare -f launch_steps start_request run_step report_end); launch_steps \"\$@\"" launcher "$STUDY_DIR" "$LEDGER" "$JOBS" \
            3<&0 0<&4 4<&-
    }
    exec 4<&-
    TO_LAUNCHER=${LAUNCHER[1]} FROM_LAUNCHER=${LAUNCHER[0]}
    # a launcher that hears of the ends itself (wait -n -p) holds up to JOBS more requests and
    # starts one as soon as a step ends: the freed core does not wait for the runner's bookkeeping
    AHEAD=0
    if (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 501 )) && [[ -z ${MAESTRO_RUNNER_SUBSHELLS:-} ]]; then
        AHEAD=$JOBS
    fi
}

# start_node I: a request to start the step, sent with the next "wait" (one write for both)
start_node() {
    local i=$1 request
    printf -v request '%s\t%s\t%s\t%s\t%s' "$i" "${NODES[i]}" "${WORKSPACES[i]}" "${SCRIPTS[i]}" "${LOGS[i]}"
    printf -v request '%s%08d%s' "$OUTBOX" "${#request}" "$request"
    OUTBOX=$request
    STATE[$i]=R
    (( running += 1 ))
}

# wait_next: the index of the next step to end and its exit code, in ENDED and RC
wait_next() {
    local report
    printf '%s%08dwait' "$OUTBOX" 4 >&"$TO_LAUNCHER"
    OUTBOX=""
    read -r -N 16 -u "$FROM_LAUNCHER" report && (( ${#report} == 16 )) || return 1
    ENDED=$((10#${report:0:10})) RC=$((10#${report:10}))
}

skip_descendants() {  # a failed node: none of its descendants may run
    local failed=$1 queue=(${CHILDREN[$1]}) head=0 c now
    while (( head < ${#queue[@]} )); do
        c=${queue[head]}
        (( head += 1 ))
        [[ ${STATE[$c]} == W ]] || continue
        STATE[$c]=S
        (( remaining -= 1 ))
        printf -v now '%(%s)T' -1
        mark "$c" SKIPPED "$now"
        mark "$c" REASON "ancestor ${NODES[failed]} failed"
        queue+=(${CHILDREN[c]})
    done
}

finish_node() {
    local i=$1 rc=$2 c
    (( running -= 1, remaining -= 1 ))
    if (( rc == 0 )); then
        STATE[$i]=D
        for c in ${CHILDREN[i]}; do
            [[ ${STATE[$c]} == W ]] || continue
            (( WAITING_ON[$c] -= 1 ))
            (( WAITING_ON[$c] == 0 )) && READY+=("$c")
        done
    else
        STATE[$i]=F
        skip_descendants "$i"
    fi
}

stop_tree() {  # stop_tree PID: TERM the process and everything under it (its children first
              # listed: once it ends they are no longer its children)
    local children child
    children=$(pgrep -P "$1")
    kill -TERM "$1" 2>/dev/null
    for child in $children; do
        stop_tree "$child"
    done
}

cancel() {  # TERM/INT/HUP: stop the running steps, do not start the others
    trap '' TERM INT HUP
    local i now
    printf -v now '%(%s)T' -1
    echo "$now" > "$STATE_DIR/cancelled"
    for i in "${!STATE[@]}"; do
        [[ ${STATE[$i]} == W ]] && mark "$i" CANCELLED "$now"
    done
    # our own process group holds every step we started (setsid made us its leader)
    if [[ $(ps -o pgid= $$ 2>/dev/null | tr -d ' ') == "$$" ]]; then
        kill -TERM -- -$$ 2>/dev/null
    elif [[ -n ${LAUNCHER_PID:-} ]]; then
        stop_tree "$LAUNCHER_PID"   # the launcher, each step's subshell, the step and what it runs
    fi
    wait
    for i in "${!STATE[@]}"; do   # handed to the launcher, which stopped before it started them
        [[ ${STATE[$i]} == R && ! -e $STUDY_DIR/${LOGS[i]}.status ]] && mark "$i" CANCELLED "$now"
    done
    echo "$(date +%s) cancelled" > "$STATE_DIR/runner.done"
    exit 143
}

run_dag() {
    if [[ -n $NODES_FILE ]]; then
        check_submitted
        # which nodes this runner runs: status does not take the others for pending
        cp "$NODES_FILE" "$STATE_DIR/runner.nodes" || exit 1
    else
        [[ $LOCKED == 1 ]] || take_lock
    fi
    echo $$ > "$STATE_DIR/runner.pid"
    local n=${#NODES[@]} i p head=0
    # per node, by index; hashed, as a step's children are far from it in the arrays (bash walks
    # an indexed array from its last used element)
    declare -gA STATE=() WAITING_ON=()
    READY=() SELECTED=()
    [[ -z $NODES_FILE ]] || select_nodes "$NODES_FILE" || exit 1
    running=0 remaining=0 OUTBOX=""
    for (( i = 0; i < n; i++ )); do
        if [[ -n $NODES_FILE && -z ${SELECTED[i]:-} ]]; then
            STATE[$i]=D   # not run again: done, as far as its children are concerned
            continue
        fi
        WAITING_ON[$i]=0
        for p in ${PARENTS[i]}; do
            [[ ${STATE[$p]} == D ]] || (( WAITING_ON[$i] += 1 ))
        done
        STATE[$i]=W
        (( remaining += 1 ))
        (( WAITING_ON[$i] == 0 )) && READY+=("$i")
    done
    echo "$(date '+%F %T') runner $$ starts $remaining step(s), up to $JOBS at a time"
    trap cancel TERM INT HUP
    start_launcher
    while (( remaining > 0 )); do
        while (( running < JOBS + AHEAD && head < ${#READY[@]} )); do
            start_node "${READY[head]}"
            (( head += 1 ))
        done
        (( running > 0 )) || break
        if ! wait_next; then
            echo "$(date '+%F %T') runner $$: its launcher stopped; the steps not started yet will not run"
            break
        fi
        finish_node "$ENDED" "$RC"
    done
    exec {TO_LAUNCHER}>&-   # the launcher's end of input: it exits
    wait
    local failed=0 skipped=0
    for i in "${!STATE[@]}"; do
        [[ ${STATE[$i]} == F ]] && (( failed += 1 ))
        [[ ${STATE[$i]} == S ]] && (( skipped += 1 ))
    done
    echo "$(date '+%F %T') study finished: $failed failed, $skipped not run because an ancestor failed"
    echo "$(date +%s) finished $failed $skipped" > "$STATE_DIR/runner.done"
    (( failed == 0 && remaining == 0 ))
}

if (( FOREGROUND )); then
    run_dag
else
    detach
fi
