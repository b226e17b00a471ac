#!/bin/bash
# maestro_compile: submits study 'build_archive' to Flux and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# Flux has no job arrays: every node is one job, submitted in dependency order with
# `flux batch` (steps that ask for nodes or procs get a Flux instance of their own) or
# `flux submit` (one task), and chained with --dependency=afterok:ID per parent. When a job
# fails, Flux fails its dependents at once (dependency exception), and theirs in turn. Jobs
# without parents are submitted with --urgency=hold and released once everything is queued.
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
STUDY_TAG=maestro_compile:@STUDYID@    # in every job's nothing (this backend does not tag its jobs)
SUBMITTED=()     # every job id submitted so far, for the rollback
ROOTS=()         # held jobs to release at the end
NOW=$(date +%s)

# still_queued ID...: the ids still in the queue (a backend that cannot ask assumes none)
still_queued() { :; }
# tagged_jobs: ids of queued jobs carrying this study's tag (a backend that cannot ask finds none)
tagged_jobs() { :; }

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
        flux cancel "${ids[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
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

# J0 = node generate; waits for: none (held until everything is queued)
submit J0 generate submit --job-name=generate --output=generate.out --error=generate.err -n 1 --urgency=hold --cwd=@STUDY@/generate @STUDY@/generate/generate.flux.sh
ROOTS+=("${J0}")
record "${J0}" generate
# J1 = node build; waits for: afterok J0
submit J1 build submit --job-name=build --output=build.out --error=build.err -n 1 --dependency=afterok:${J0} --cwd=@STUDY@/build @STUDY@/build/build.flux.sh
record "${J1}" build
# J2 = node compress_COPT.--fast; waits for: afterok J1
submit J2 compress_COPT.--fast submit --job-name=compress_COPT.--fast --output=compress_COPT.--fast.out --error=compress_COPT.--fast.err -n 1 --dependency=afterok:${J1} --cwd=@STUDY@/compress/COPT.--fast @STUDY@/compress/COPT.--fast/compress_COPT.--fast.flux.sh
record "${J2}" compress_COPT.--fast
# J3 = node compress_COPT.--best; waits for: afterok J1
submit J3 compress_COPT.--best submit --job-name=compress_COPT.--best --output=compress_COPT.--best.out --error=compress_COPT.--best.err -n 1 --dependency=afterok:${J1} --cwd=@STUDY@/compress/COPT.--best @STUDY@/compress/COPT.--best/compress_COPT.--best.flux.sh
record "${J3}" compress_COPT.--best

# everything is queued and recorded: say so, then release the held roots
echo "$(date +%s)" > "$STATE_DIR/queued" || fail "cannot write $STATE_DIR/queued"
release() {
    local out
    out=$(flux job urgency "$1" "$2" 2>&1) || fail "flux job urgency $1 $2 failed: $out"
}
release "${J0}" default
trap - INT TERM HUP
echo "$(date +%s)" > "$STATE_DIR/released" || echo "submit.sh: warning: cannot write $STATE_DIR/released (the study is queued and released)" >&2
echo "submitted 4 Flux job(s) (0 array(s)) for 4 node(s); released ${#ROOTS[@]} held root job(s)"
