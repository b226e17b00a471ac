#!/bin/bash
# maestro_compile: submits study 'size_sweep' to Slurm and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# Every job is submitted in dependency order with `sbatch --parsable`, chained with
# --dependency=afterok/aftercorr and --kill-on-invalid-dep=yes (a failure cancels its
# descendants). Jobs without parents are submitted held and released together with one
# `scontrol release` once everything is queued, so no parent can finish before its children exist.
# Each job id is appended to jobs.tsv the moment it is known, and every job carries the study's
# tag (maestro_compile:@STUDYID@) so that it can be found even if its id never reached jobs.tsv. If any
# submission fails, every job of this submission is cancelled and the cancel is checked; the
# study can be submitted again once the cause is fixed. When a cancel cannot be confirmed, the
# jobs that may still be queued are named and kept on record, and `maestro submit DIR` recovers
# once the scheduler answers. A study is submitted once: a second run of this script is refused.
set -u

STUDY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR="$STUDY_DIR/.maestro"
LEDGER="$STUDY_DIR/jobs.tsv"
STUDY_TAG=maestro_compile:@STUDYID@    # in every job's comment (squeue %k)
SUBMITTED=()     # every job id submitted so far, for the rollback
ROOTS=()         # held jobs to release at the end
NOW=$(date +%s)

# still_queued ID...: the ids still in the queue; fails when squeue cannot tell
still_queued() {
    local out
    if ! out=$(squeue -h -o %F -j "$(IFS=,; echo "$*")" 2>&1); then
        [[ $out == *"Invalid job id"* ]] && return 0   # none of them is known any more
        return 1
    fi
    printf '%s\n' "$out" | sort -u
}
# tagged_jobs: ids of our queued jobs whose comment starts with this study's tag
tagged_jobs() {
    squeue --me -h -o '%F|%k' | while IFS='|' read -r id comment; do
        [[ $comment == "$STUDY_TAG" || $comment == "$STUDY_TAG "* ]] && echo "$id"
    done | sort -u
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
        scancel "${ids[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
        if ! left=$(verify_cancelled "${ids[@]}"); then
            echo "$left" > "$STATE_DIR/rollback.incomplete"
            echo "submit.sh: error: could not confirm that these job(s) are cancelled; they may still be queued (held): $left" >&2
            echo "submit.sh: jobs.tsv and the lock are kept; once Slurm answers again, run 'maestro submit $STUDY_DIR' to finish the rollback and submit, or 'maestro cancel $STUDY_DIR'" >&2
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

# submit VAR LABEL SBATCH_ARGS...: submit one job; its id goes into the variable VAR
submit() {
    local var=$1 label=$2 out id
    shift 2
    if ! out=$(sbatch --parsable "$@" 2>&1); then
        fail "sbatch failed for $label: $out"$'\n'"  command: sbatch --parsable $*"
    fi
    id=${out##*$'\n'}     # --parsable prints "id" or "id;cluster" as its last line
    id=${id%%;*}
    [[ $id =~ ^[0-9]+$ ]] || fail "cannot read a job id from sbatch's output for $label: $out"
    SUBMITTED+=("$id")
    printf -v "$var" '%s' "$id"
}

# record_array JOB_ID NODE...: the nodes of an array, in task order, in one checked write
record_array() {
    local id=$1 task=0 node line lines=""
    shift
    for node in "$@"; do
        printf -v line '%s\t%s\t%s_%s\n' "$NOW" "$node" "$id" "$task"
        lines+=$line
        task=$(( task + 1 ))
    done
    printf '%s' "$lines" >> "$LEDGER" || fail "cannot write $LEDGER"
}

record() {
    printf '%s\t%s\t%s\n' "$NOW" "$2" "$1" >> "$LEDGER" || fail "cannot write $LEDGER"
}

command -v sbatch >/dev/null || { echo "submit.sh: error: sbatch not found; submit from a machine of the Slurm cluster" >&2; exit 1; }
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

max_array=$(scontrol show config 2>/dev/null | sed -n 's/^MaxArraySize *= *\([0-9]*\).*/\1/p')
if [[ -n $max_array ]] && (( max_array < 3 )); then
    fail "this cluster's MaxArraySize is $max_array but the study was compiled with arrays of up to 3 tasks; recompile with --max-array-size $max_array"
fi

# J0 = step run_simulation: 3 node(s) as a job array; waits for: none (held until everything is queued)
submit J0 run_simulation --hold --array=0-2 -D @STUDY@/run_simulation @STUDY@/run_simulation/run_simulation.array.slurm.sh
ROOTS+=("${J0}")
record_array "${J0}" run_simulation_SIZE.10 run_simulation_SIZE.100 run_simulation_SIZE.1000
# J1 = node aggregate_results; waits for: afterok J0
submit J1 aggregate_results "--dependency=afterok:${J0}" --kill-on-invalid-dep=yes -D @STUDY@/aggregate_results @STUDY@/aggregate_results/aggregate_results.slurm.sh
record "${J1}" aggregate_results

# everything is queued and recorded: say so, then release the held roots
echo "$(date +%s)" > "$STATE_DIR/queued" || fail "cannot write $STATE_DIR/queued"
if ! out=$(scontrol release "$(IFS=,; echo "${ROOTS[*]}")" 2>&1); then
    fail "scontrol release failed: $out"
fi
trap - INT TERM HUP
echo "$(date +%s)" > "$STATE_DIR/released" || echo "submit.sh: warning: cannot write $STATE_DIR/released (the study is queued and released)" >&2
echo "submitted 2 Slurm job(s) (1 array(s)) for 4 node(s); released ${#ROOTS[@]} held root job(s)"
