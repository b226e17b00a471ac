#!/bin/bash
# maestro_compile: submits study 'resources' to Slurm and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# Every job is submitted in dependency order with `sbatch --parsable`, chained with
# --dependency=afterok/aftercorr and --kill-on-invalid-dep=yes (a failure cancels its
# descendants). Jobs without parents are submitted held and released together with one
# `scontrol release` once everything is queued, so no parent can finish before its children exist.
# Each job id is appended to jobs.tsv the moment it is known. If any submission fails, every
# job already submitted is cancelled, and the study can be submitted again once the cause is
# fixed. A study is submitted once: a second run of this script is refused.
set -u

STUDY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR="$STUDY_DIR/.maestro"
LEDGER="$STUDY_DIR/jobs.tsv"
SUBMITTED=()     # every job id submitted so far, for the rollback
ROOTS=()         # held jobs to release at the end
NOW=$(date +%s)

rollback() {
    trap - INT TERM HUP
    if (( ${#SUBMITTED[@]} )); then
        echo "submit.sh: cancelling the ${#SUBMITTED[@]} job(s) already submitted: ${SUBMITTED[*]}" >&2
        scancel "${SUBMITTED[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
    fi
    [[ -f $LEDGER ]] && mv "$LEDGER" "$STATE_DIR/jobs.rolled-back.$NOW.tsv"
    rm -f "$STATE_DIR/submitted"
}

fail() {
    echo "submit.sh: error: $*" >&2
    rollback
    echo "submit.sh: nothing of this study is queued any more; fix the cause and submit again" >&2
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

# record_array JOB_ID NODE...: the nodes of an array, in task order
record_array() {
    local id=$1 task=0 node
    shift
    for node in "$@"; do
        printf '%s\t%s\t%s_%s\n' "$NOW" "$node" "$id" "$task"
        (( task += 1 ))
    done >> "$LEDGER" || fail "cannot write $LEDGER"
}

record() {
    printf '%s\t%s\t%s\n' "$NOW" "$2" "$1" >> "$LEDGER" || fail "cannot write $LEDGER"
}

command -v sbatch >/dev/null || { echo "submit.sh: error: sbatch not found; submit from a machine of the Slurm cluster" >&2; exit 1; }
mkdir -p "$STATE_DIR" || exit 1
# The lock is created atomically, so two concurrent submits cannot both proceed.
if ! ( set -o noclobber; echo "$NOW $$ $(hostname)" > "$STATE_DIR/submitted" ) 2>/dev/null; then
    echo "submit.sh: error: study $STUDY_DIR was already submitted (see $STATE_DIR/submitted and jobs.tsv); it is not submitted twice" >&2
    exit 1
fi
trap 'fail "interrupted"' INT TERM HUP

max_array=$(scontrol show config 2>/dev/null | sed -n 's/^MaxArraySize *= *\([0-9]*\).*/\1/p')
if [[ -n $max_array ]] && (( max_array < 3 )); then
    fail "this cluster's MaxArraySize is $max_array but the study was compiled with arrays of up to 3 tasks; recompile with --max-array-size $max_array"
fi

# J0 = node setup; waits for: none (held until everything is queued)
submit J0 setup --hold -D @STUDY@/setup @STUDY@/setup/setup.slurm.sh
ROOTS+=("${J0}")
record "${J0}" setup
# J1 = node mpi; waits for: afterok J0
submit J1 mpi "--dependency=afterok:${J0}" --kill-on-invalid-dep=yes -D @STUDY@/mpi @STUDY@/mpi/mpi.slurm.sh
record "${J1}" mpi
# J2 = node long_run; waits for: afterok J1
submit J2 long_run "--dependency=afterok:${J1}" --kill-on-invalid-dep=yes -D @STUDY@/long_run @STUDY@/long_run/long_run.slurm.sh
record "${J2}" long_run
# J3 = step sweep: 3 node(s) as a job array; waits for: afterok J0
submit J3 sweep "--dependency=afterok:${J0}" --kill-on-invalid-dep=yes --array=0-2 -D @STUDY@/sweep @STUDY@/sweep/sweep.array.slurm.sh
record_array "${J3}" sweep_SIZE.8 sweep_SIZE.16 sweep_SIZE.32
# J4 = node summary; waits for: afterok J2, afterok J3
submit J4 summary "--dependency=afterok:${J2}:${J3}" --kill-on-invalid-dep=yes -D @STUDY@/summary @STUDY@/summary/summary.slurm.sh
record "${J4}" summary

# everything is queued: release the held roots
if ! out=$(scontrol release "$(IFS=,; echo "${ROOTS[*]}")" 2>&1); then
    fail "scontrol release failed: $out"
fi
trap - INT TERM HUP
echo "submitted 5 Slurm job(s) (1 array(s)) for 7 node(s); released ${#ROOTS[@]} held root job(s)"
