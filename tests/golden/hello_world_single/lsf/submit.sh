#!/bin/bash
# maestro_compile: submits study 'hello_world_single' to LSF and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# Every job is submitted in dependency order with `bsub < script`, chained with
# -w 'done(ID)' (a whole job or array), 'done(ID[*])' (element i of an array waits for element i
# of its parent array of the same size) and -ti, so a job whose parent failed is terminated at
# once instead of pending forever. Jobs without parents are submitted held (-H) and released
# together with one `bresume` once everything is queued.
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
        bkill "${SUBMITTED[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
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

# submit VAR LABEL BSUB_ARGS... < SCRIPT: submit one job; its id goes into the variable VAR
submit() {
    local var=$1 label=$2 out id
    shift 2
    if ! out=$(bsub "$@" 2>&1); then
        fail "bsub failed for $label: $out"$'\n'"  command: bsub $* < (script of $label)"
    fi
    if [[ $out =~ Job\ \<([0-9]+)\>\ is\ submitted ]]; then
        id=${BASH_REMATCH[1]}
    else
        fail "cannot read a job id from bsub's output for $label: $out"
    fi
    SUBMITTED+=("$id")
    printf -v "$var" '%s' "$id"
}

# record_array JOB_ID NODE...: the nodes of an array, in task order
record_array() {
    local id=$1 task=1 node
    shift
    for node in "$@"; do
        printf '%s\t%s\t%s[%s]\n' "$NOW" "$node" "$id" "$task"
        (( task += 1 ))
    done >> "$LEDGER" || fail "cannot write $LEDGER"
}

record() {
    printf '%s\t%s\t%s\n' "$NOW" "$2" "$1" >> "$LEDGER" || fail "cannot write $LEDGER"
}

command -v bsub >/dev/null || { echo "submit.sh: error: bsub not found; submit from a machine of the LSF cluster" >&2; exit 1; }
mkdir -p "$STATE_DIR" || exit 1
# The lock is created atomically, so two concurrent submits cannot both proceed.
if ! ( set -o noclobber; echo "$NOW $$ $(hostname)" > "$STATE_DIR/submitted" ) 2>/dev/null; then
    echo "submit.sh: error: study $STUDY_DIR was already submitted (see $STATE_DIR/submitted and jobs.tsv); it is not submitted twice" >&2
    exit 1
fi
trap 'fail "interrupted"' INT TERM HUP

# J0 = step say_hi: 4 node(s) as a job array; waits for: none (held until everything is queued)
submit J0 say_hi -H -cwd @STUDY@/say_hi < @STUDY@/say_hi/say_hi.array.lsf.sh
ROOTS+=("${J0}")
record_array "${J0}" say_hi_NAME.Pam say_hi_NAME.Jim say_hi_NAME.Michael say_hi_NAME.Dwight

# everything is queued: release the held roots
if ! out=$(bresume "${ROOTS[@]}" 2>&1); then
    fail "bresume failed: $out"
fi
trap - INT TERM HUP
echo "submitted 1 LSF job(s) (1 array(s)) for 4 node(s); released ${#ROOTS[@]} held root job(s)"
