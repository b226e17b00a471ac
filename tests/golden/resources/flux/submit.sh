#!/bin/bash
# maestro_compile: submits study 'resources' to Flux and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# Flux has no job arrays: every node is one job, submitted in dependency order with
# `flux batch` (steps that ask for nodes or procs get a Flux instance of their own) or
# `flux submit` (one task), and chained with --dependency=afterok:ID per parent. When a job
# fails, Flux fails its dependents at once (dependency exception), and theirs in turn. Jobs
# without parents are submitted with --urgency=hold and released once everything is queued.
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
        flux cancel "${SUBMITTED[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
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

# flux_id_to_dec ID: Flux prints job ids as f58 ("ƒ" or "f" then base58), decimal or 0x-hex;
# the ledger keeps decimal
flux_id_to_dec() {
    local LC_ALL=C text=$1 digits=123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz value=0 i c rest
    case $text in
        0x[0-9a-fA-F]*) printf '%d' "$text"; return ;;
        [0-9]*) [[ $text =~ ^[0-9]+$ ]] && { printf '%s' "$text"; return; }; return 1 ;;
    esac
    text=${text#ƒ}
    text=${text#f}
    [[ -n $text ]] || return 1
    for (( i = 0; i < ${#text}; i++ )); do
        c=${text:i:1}
        rest=${digits%%"$c"*}
        (( ${#rest} < ${#digits} )) || return 1
        value=$(( value * 58 + ${#rest} ))
    done
    printf '%s' "$value"
}

# submit VAR LABEL batch|submit FLUX_ARGS...: submit one job; its id goes into the variable VAR
submit() {
    local var=$1 label=$2 out id
    shift 2
    if ! out=$(flux "$@" 2>&1); then
        fail "flux $1 failed for $label: $out"$'\n'"  command: flux $*"
    fi
    id=${out##*$'\n'}
    id=$(flux_id_to_dec "$id") || fail "cannot read a job id from flux's output for $label: $out"
    SUBMITTED+=("$id")
    printf -v "$var" '%s' "$id"
}


record() {
    printf '%s\t%s\t%s\n' "$NOW" "$2" "$1" >> "$LEDGER" || fail "cannot write $LEDGER"
}

command -v flux >/dev/null || { echo "submit.sh: error: flux not found; submit from a machine of the Flux cluster" >&2; exit 1; }
mkdir -p "$STATE_DIR" || exit 1
# The lock is created atomically, so two concurrent submits cannot both proceed.
if ! ( set -o noclobber; echo "$NOW $$ $(hostname)" > "$STATE_DIR/submitted" ) 2>/dev/null; then
    echo "submit.sh: error: study $STUDY_DIR was already submitted (see $STATE_DIR/submitted and jobs.tsv); it is not submitted twice" >&2
    exit 1
fi
trap 'fail "interrupted"' INT TERM HUP

# J0 = node setup; waits for: none (held until everything is queued)
submit J0 setup submit --job-name=setup --output=setup.out --error=setup.err -n 1 -t 300s -q pdebug --bank=physics --urgency=hold --cwd=@STUDY@/setup @STUDY@/setup/setup.flux.sh
ROOTS+=("${J0}")
record "${J0}" setup
# J1 = node mpi; waits for: afterok J0
submit J1 mpi batch --dependency=afterok:${J0} --cwd=@STUDY@/mpi @STUDY@/mpi/mpi.flux.sh
record "${J1}" mpi
# J2 = node long_run; waits for: afterok J1
submit J2 long_run batch --dependency=afterok:${J1} --cwd=@STUDY@/long_run @STUDY@/long_run/long_run.flux.sh
record "${J2}" long_run
# J3 = node sweep_SIZE.8; waits for: afterok J0
submit J3 sweep_SIZE.8 batch --dependency=afterok:${J0} --cwd=@STUDY@/sweep/SIZE.8 @STUDY@/sweep/SIZE.8/sweep_SIZE.8.flux.sh
record "${J3}" sweep_SIZE.8
# J4 = node sweep_SIZE.16; waits for: afterok J0
submit J4 sweep_SIZE.16 batch --dependency=afterok:${J0} --cwd=@STUDY@/sweep/SIZE.16 @STUDY@/sweep/SIZE.16/sweep_SIZE.16.flux.sh
record "${J4}" sweep_SIZE.16
# J5 = node sweep_SIZE.32; waits for: afterok J0
submit J5 sweep_SIZE.32 batch --dependency=afterok:${J0} --cwd=@STUDY@/sweep/SIZE.32 @STUDY@/sweep/SIZE.32/sweep_SIZE.32.flux.sh
record "${J5}" sweep_SIZE.32
# J6 = node summary; waits for: afterok J2, afterok J3, afterok J4, afterok J5
submit J6 summary submit --job-name=summary --output=summary.out --error=summary.err -n 1 -q pdebug --bank=physics --dependency=afterok:${J2} --dependency=afterok:${J3} --dependency=afterok:${J4} --dependency=afterok:${J5} --cwd=@STUDY@/summary @STUDY@/summary/summary.flux.sh
record "${J6}" summary

# everything is queued: release the held roots
release() {
    local out
    out=$(flux job urgency "$1" "$2" 2>&1) || fail "flux job urgency $1 $2 failed: $out"
}
release "${J0}" default
trap - INT TERM HUP
echo "submitted 7 Flux job(s) (0 array(s)) for 7 node(s); released ${#ROOTS[@]} held root job(s)"
