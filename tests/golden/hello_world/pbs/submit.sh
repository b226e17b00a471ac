#!/bin/bash
# maestro_compile: submits study 'hello_world' to PBS and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# PBS has no usable job arrays for a workflow (no element-wise dependency; an array's exit
# status is its last sub-job's), so every node is one job, submitted in dependency order with
# `qsub` run in the node's workspace and chained with -W depend=afterok:ID[:ID...]. When a job
# fails, PBS deletes its afterok dependents, and theirs in turn. Jobs without parents are
# submitted held (-h) and released with one `qrls` once everything is queued. The rollback
# deletes every job it submitted: PBS would leave the dependents of a deleted held job held forever.
# Each job id is appended to jobs.tsv the moment it is known, and every job carries the study's
# tag (maestro_compile_@STUDYID@) so that it can be found even if its id never reached jobs.tsv. If any
# submission fails, every job of this submission is cancelled and the cancel is checked; the
# study can be submitted again once the cause is fixed. When a cancel cannot be confirmed, the
# jobs that may still be queued are named and kept on record, and `maestro submit DIR` recovers
# once the scheduler answers. A study is submitted once: a second run of this script is refused.
set -u

STUDY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR="$STUDY_DIR/.maestro"
LEDGER="$STUDY_DIR/jobs.tsv"
STUDY_TAG=maestro_compile_@STUDYID@    # in every job's project (-P)
SUBMITTED=()     # every job id submitted so far, for the rollback
ROOTS=()         # held jobs to release at the end
NOW=$(date +%s)

# still_queued ID...: those of the ids PBS still has (held, queued, running...); fails when
# qselect cannot tell
still_queued() {
    local out id
    out=$(qselect -s HQRSTWBEU 2>/dev/null) || return 1
    for id in "$@"; do
        grep -qxF -- "$id" <<< "$out" && echo "$id"
    done
    return 0
}
# tagged_jobs: our unfinished jobs whose project (-P) is this study's tag
tagged_jobs() {
    qselect -P "$STUDY_TAG" -s HQRSTWBEU
}

# verify_cancelled ID...: wait until none of the jobs is queued any more; on failure print the
# ones that may still be (all of them when the scheduler does not answer)
verify_cancelled() {
    local try queued
    for (( try = 0; try < 10; try++ )); do
        if queued=$(still_queued "$@"); then
            [[ -z $queued ]] && return 0
        elif (( try >= 1 )); then
            echo "$*"
            return 1
        fi
        sleep 1
    done
    echo $queued
    return 1
}

# rollback: cancel this submission's jobs (those recorded, and any found by the study's tag
# whose id was lost), and check; returns 1 when some may still be queued
rollback() {
    trap - INT TERM HUP
    local ids left
    ids=$(printf '%s\n' "${SUBMITTED[@]}" $(tagged_jobs 2>/dev/null) | sort -u)
    ids=(${ids})
    if (( ${#ids[@]} )); then
        echo "submit.sh: cancelling the ${#ids[@]} job(s) already submitted: ${ids[*]}" >&2
        qdel "${ids[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
        if ! left=$(verify_cancelled "${ids[@]}"); then
            echo "$left" > "$STATE_DIR/rollback.incomplete"
            echo "submit.sh: error: could not confirm that these job(s) are cancelled; they may still be queued (held): $left" >&2
            echo "submit.sh: jobs.tsv and the lock are kept; once PBS answers again, run 'maestro submit $STUDY_DIR' to finish the rollback and submit, or 'maestro cancel $STUDY_DIR'" >&2
            return 1
        fi
    fi
    [[ -f $LEDGER ]] && mv "$LEDGER" "$STATE_DIR/jobs.rolled-back.$NOW.tsv"
    rm -f "$STATE_DIR/rollback.incomplete" "$STATE_DIR/submitted"
    return 0
}

fail() {
    echo "submit.sh: error: $*" >&2
    if rollback; then
        echo "submit.sh: nothing of this study is queued any more; fix the cause and submit again" >&2
    fi
    exit 1
}

# submit VAR LABEL WORKDIR QSUB_ARGS...: run qsub in WORKDIR (the script's -o/-e are relative
# to it); the job id goes into the variable VAR
submit() {
    local var=$1 label=$2 workdir=$3 out id
    shift 3
    if ! out=$(cd "$workdir" 2>&1 && qsub "$@" 2>&1); then
        fail "qsub failed for $label: $out"$'\n'"  command: cd $workdir && qsub $*"
    fi
    id=${out##*$'\n'}     # "12.server"; an array: "13[].server"
    [[ $id =~ ^[0-9]+(\[\])?(\.[A-Za-z0-9_.-]+)?$ ]] || fail "cannot read a job id from qsub's output for $label: $out"
    SUBMITTED+=("$id")
    printf -v "$var" '%s' "$id"
}


record() {
    printf '%s\t%s\t%s\n' "$NOW" "$2" "$1" >> "$LEDGER" || fail "cannot write $LEDGER"
}

command -v qsub >/dev/null || { echo "submit.sh: error: qsub not found; submit from a machine of the PBS cluster" >&2; exit 1; }
mkdir -p "$STATE_DIR" || { echo "submit.sh: error: cannot write $STATE_DIR (a read-only or full file system?); nothing was submitted" >&2; exit 1; }
# The lock is created atomically, so two concurrent submits cannot both proceed. It names its
# owner (time, pid, host, boot) so that `maestro submit` can tell an interrupted submission.
BOOT=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo -)
if ! ( set -o noclobber; echo "$NOW $$ $(hostname) $BOOT" > "$STATE_DIR/submitted" ) 2>/dev/null; then
    if [[ -e $STATE_DIR/submitted ]]; then
        echo "submit.sh: error: study $STUDY_DIR was already submitted (see $STATE_DIR/submitted and jobs.tsv); it is not submitted twice" >&2
    else
        echo "submit.sh: error: cannot write $STATE_DIR/submitted (a read-only or full file system?); nothing was submitted" >&2
    fi
    exit 1
fi
trap 'fail "interrupted"' INT TERM HUP

# J0 = node hello_world; waits for: none (held until everything is queued)
submit J0 hello_world @STUDY@/hello_world -h @STUDY@/hello_world/hello_world.pbs.sh
ROOTS+=("${J0}")
record "${J0}" hello_world

# everything is queued and recorded: say so, then release the held roots
echo "$(date +%s)" > "$STATE_DIR/queued" || fail "cannot write $STATE_DIR/queued"
if (( ${#ROOTS[@]} )) && ! out=$(qrls "${ROOTS[@]}" 2>&1); then
    fail "qrls failed: $out"
fi
trap - INT TERM HUP
echo "$(date +%s)" > "$STATE_DIR/released" || echo "submit.sh: warning: cannot write $STATE_DIR/released (the study is queued and released)" >&2
echo "submitted 1 PBS job(s) (0 array(s)) for 1 node(s); released ${#ROOTS[@]} held root job(s)"
