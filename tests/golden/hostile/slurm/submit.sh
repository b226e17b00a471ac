#!/bin/bash
# maestro_compile: submits study 'hostile study: 'single' "double" $HOME \ é ü' to Slurm and returns.
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
if [[ -n $max_array ]] && (( max_array < 6 )); then
    fail "this cluster's MaxArraySize is $max_array but the study was compiled with arrays of up to 6 tasks; recompile with --max-array-size $max_array"
fi

# J0 = step say it's "loud" $x ü: 6 node(s) as a job array; waits for: none (held until everything is queued)
submit J0 'say it'"'"'s "loud" $x ü' --hold --array=0-5 -D '@STUDY@/say it'"'"'s "loud" $x ü' '@STUDY@/say it'"'"'s "loud" $x ü/say_its_loud_x_.array.slurm.sh'
ROOTS+=("${J0}")
record_array "${J0}" 'say it'"'"'s "loud" $x ü_W=two words' 'say it'"'"'s "loud" $x ü_W=it'"'"'s' 'say it'"'"'s "loud" $x ü_W=say "hi"' 'say it'"'"'s "loud" $x ü_W=cost $5' 'say it'"'"'s "loud" $x ü_W=back\slash' 'say it'"'"'s "loud" $x ü_W=naïve ü'
# J1 = step copy_$x:ü: 6 node(s) as a job array; waits for: aftercorr J0
submit J1 'copy_$x:ü' "--dependency=aftercorr:${J0}" --kill-on-invalid-dep=yes --array=0-5 -D '@STUDY@/copy_$x:ü' '@STUDY@/copy_$x:ü/copy_x.array.slurm.sh'
record_array "${J1}" 'copy_$x:ü_W=two words' 'copy_$x:ü_W=it'"'"'s' 'copy_$x:ü_W=say "hi"' 'copy_$x:ü_W=cost $5' 'copy_$x:ü_W=back\slash' 'copy_$x:ü_W=naïve ü'
# J2 = node gather "all" ü; waits for: afterok J1
submit J2 'gather "all" ü' "--dependency=afterok:${J1}" --kill-on-invalid-dep=yes -D '@STUDY@/gather "all" ü' '@STUDY@/gather "all" ü/gather_all_.slurm.sh'
record "${J2}" 'gather "all" ü'

# everything is queued: release the held roots
if ! out=$(scontrol release "$(IFS=,; echo "${ROOTS[*]}")" 2>&1); then
    fail "scontrol release failed: $out"
fi
trap - INT TERM HUP
echo "submitted 3 Slurm job(s) (2 array(s)) for 13 node(s); released ${#ROOTS[@]} held root job(s)"
