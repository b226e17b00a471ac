#!/bin/bash
# maestro_compile: submits study 'hostile study: 'single' "double" $HOME \ é ü' to Flux and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# Flux has no job arrays: every node is one job, submitted in dependency order with
# `flux batch` (steps that ask for nodes or procs get a Flux instance of their own) or
# `flux submit` (one task), and chained with --dependency=afterok:ID per parent. When a job
# fails, Flux fails its dependents at once (dependency exception), and theirs in turn. Jobs
# without parents are submitted with --urgency=hold and released once everything is queued.
# The jobs are submitted by flux-submit.py, run with `flux python` (the Python that comes with
# Flux, wherever Flux is), from flux-plan.jsonl, which lists each job's flux command line.
# Each job id is appended to jobs.tsv the moment it is known, and every job carries the study's
# tag (@STUDY@) so that it can be found even if its id never reached jobs.tsv. If any
# submission fails, every job of this submission is cancelled and the cancel is checked; the
# study can be submitted again once the cause is fixed. When a cancel cannot be confirmed, the
# jobs that may still be queued are named and kept on record, and `maestro submit DIR` recovers
# once the scheduler answers. A study is submitted once: a second run of this script is refused.
set -u

STUDY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR="$STUDY_DIR/.maestro"
LEDGER="$STUDY_DIR/jobs.tsv"
STUDY_TAG=@STUDY@    # in every job's working directory (inside the study directory)
SUBMITTED=()     # every job id submitted so far, for the rollback
ROOTS=()         # held jobs to release at the end
NOW=$(date +%s)

# still_queued ID...: those of the ids (decimal) Flux still has active; fails when it cannot tell
still_queued() {
    local out id
    out=$(flux jobs -f active -n -o '{id.dec}' 2>/dev/null) || return 1
    for id in "$@"; do
        grep -qxF -- "$id" <<< "$out" && echo "$id"
    done
    return 0
}
# tagged_jobs: our active jobs that run in a workspace of this study
tagged_jobs() {
    flux jobs -f active -n -o '{id.dec}|{cwd}' | while IFS='|' read -r id cwd; do
        [[ $cwd == "$STUDY_TAG"/* ]] && echo "$id"
    done
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
        flux_cancel "${ids[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
        if ! left=$(verify_cancelled "${ids[@]}"); then
            echo "$left" > "$STATE_DIR/rollback.incomplete"
            echo "submit.sh: error: could not confirm that these job(s) are cancelled; they may still be queued (held): $left" >&2
            echo "submit.sh: jobs.tsv and the lock are kept; once Flux answers again, run 'maestro submit $STUDY_DIR' to finish the rollback and submit, or 'maestro cancel $STUDY_DIR'" >&2
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

# flux_id_to_dec ID: Flux prints job ids as f58 ("ƒ", or "f" when the locale is not UTF-8, then
# base58 digits), decimal or 0x-hex; the ledger keeps decimal
flux_id_to_dec() {
    local LC_ALL=C text=$1 digits=123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz value=0 i c rest
    case $text in
        0x[0-9a-fA-F]*) printf '%d' "$text"; return ;;
        [0-9]*) [[ $text =~ ^[0-9]+$ ]] && { printf '%s' "$text"; return; }; return 1 ;;
    esac
    # exactly one prefix: "f" is also a base58 digit (ƒfrUBM9 is 25501368320)
    case $text in
        ƒ*) text=${text#ƒ} ;;
        f*) text=${text#f} ;;
        *) return 1 ;;
    esac
    [[ -n $text ]] || return 1
    for (( i = 0; i < ${#text}; i++ )); do
        c=${text:i:1}
        rest=${digits%%"$c"*}
        (( ${#rest} < ${#digits} )) || return 1
        value=$(( value * 58 + ${#rest} ))
    done
    printf '%s' "$value"
}

# flux_cancel ID...: cancel the jobs (the rollback) with many requests in flight: `flux cancel`
# aborts in flux-core 0.88 when given thousands of ids
flux_cancel() {
    if [[ -f $STUDY_DIR/flux-submit.py ]]; then
        flux python "$STUDY_DIR/flux-submit.py" --cancel "$@"
    else
        flux cancel "$@"
    fi
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

# Every job is submitted by flux-submit.py, run by `flux python` (Flux's own interpreter and
# bindings), from flux-plan.jsonl: one line per job with its `flux batch|submit` command line and
# the jobs it waits for (--dependency=afterok:ID each). Requests are kept in flight, so a sweep of
# thousands of nodes is queued in seconds; each id is appended to jobs.tsv the moment it is known.
# Jobs without parents are held (--urgency=hold) and released once everything is queued.
load_submitted() {
    [[ -f $LEDGER ]] && mapfile -t SUBMITTED < <(cut -f3 "$LEDGER")
    # gather jobs (see flux-plan.jsonl): not nodes, so recorded beside the ledger
    [[ -f $STATE_DIR/gather.$NOW.tsv ]] && mapfile -t -O "${#SUBMITTED[@]}" SUBMITTED < <(cut -f3 "$STATE_DIR/gather.$NOW.tsv")
}
# in the background, so that a signal stops it at once (it records the ids of the requests in
# flight and exits) and the rollback follows
flux python "$STUDY_DIR/flux-submit.py" "$STUDY_DIR/flux-plan.jsonl" "$LEDGER" "$NOW" &
SUBMITTER=$!
trap 'kill -TERM "$SUBMITTER" 2>/dev/null; wait "$SUBMITTER"; load_submitted; fail "interrupted"' INT TERM HUP
if ! wait "$SUBMITTER"; then
    load_submitted
    fail "the submission stopped (reason above)"
fi
trap - INT TERM HUP
echo "$(date +%s)" > "$STATE_DIR/released" || echo "submit.sh: warning: cannot write $STATE_DIR/released (the study is queued and released)" >&2
