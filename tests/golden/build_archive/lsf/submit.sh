#!/bin/bash
# maestro_compile: submits study 'build_archive' to LSF and returns.
# Plain bash (no Python needed); run it by hand with ./submit.sh or through `maestro submit`.
#
# Every job is submitted in dependency order with `bsub < script`, chained with
# -w 'done(ID)' (a whole job or array), 'done(ID[*])' (element i of an array waits for element i
# of its parent array of the same size) and -ti, so a job whose parent failed is terminated at
# once instead of pending forever. Jobs without parents are submitted held (-H) and released
# together with one `bresume` once everything is queued.
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
STUDY_TAG=maestro_compile:@STUDYID@    # in every job's job description (-Jd)
SUBMITTED=()     # every job id submitted so far, for the rollback
ROOTS=()         # held jobs to release at the end
NOW=$(date +%s)

# still_queued ID...: the ids still pending, running or suspended; fails when bjobs cannot tell
still_queued() {
    local out err
    err=$(mktemp) || return 1
    out=$(bjobs -noheader -o "jobid stat" "$@" 2>"$err")
    local rc=$? why
    why=$(cat "$err"); rm -f "$err"
    if (( rc != 0 )) && [[ -z $out && $why != *"not found"* ]]; then
        return 1
    fi
    printf '%s\n' "$out" | while read -r id stat; do
        case $stat in PEND|PSUSP|PROV|WAIT|RUN|USUSP|SSUSP) echo "$id" ;; esac
    done | sort -u
}
# tagged_jobs: ids of our unfinished jobs whose description is this study's tag
tagged_jobs() {
    bjobs -noheader -o "jobid job_description delimiter='|'" 2>/dev/null | while IFS='|' read -r id description; do
        [[ $description == "$STUDY_TAG" ]] && echo "$id"
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
        bkill "${ids[@]}" 2>&1 | sed 's/^/submit.sh: /' >&2
        if ! left=$(verify_cancelled "${ids[@]}"); then
            echo "$left" > "$STATE_DIR/rollback.incomplete"
            echo "submit.sh: error: could not confirm that these job(s) are cancelled; they may still be queued (held): $left" >&2
            echo "submit.sh: jobs.tsv and the lock are kept; once LSF answers again, run 'maestro submit $STUDY_DIR' to finish the rollback and submit, or 'maestro cancel $STUDY_DIR'" >&2
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

# record_array JOB_ID NODE...: the nodes of an array, in task order, in one checked write
record_array() {
    local id=$1 task=1 node line lines=""
    shift
    for node in "$@"; do
        printf -v line '%s\t%s\t%s[%s]\n' "$NOW" "$node" "$id" "$task"
        lines+=$line
        task=$(( task + 1 ))
    done
    printf '%s' "$lines" >> "$LEDGER" || fail "cannot write $LEDGER"
}

record() {
    printf '%s\t%s\t%s\n' "$NOW" "$2" "$1" >> "$LEDGER" || fail "cannot write $LEDGER"
}

command -v bsub >/dev/null || { echo "submit.sh: error: bsub not found; submit from a machine of the LSF cluster" >&2; exit 1; }
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
submit J0 generate -H -cwd @STUDY@/generate < @STUDY@/generate/generate.lsf.sh
ROOTS+=("${J0}")
record "${J0}" generate
# J1 = node build; waits for: afterok J0
submit J1 build -w "done(${J0})" -ti -cwd @STUDY@/build < @STUDY@/build/build.lsf.sh
record "${J1}" build
# J2 = step compress: 2 node(s) as a job array; waits for: afterok J1
submit J2 compress -w "done(${J1})" -ti -cwd @STUDY@/compress < @STUDY@/compress/compress.array.lsf.sh
record_array "${J2}" compress_COPT.--fast compress_COPT.--best

# everything is queued and recorded: say so, then release the held roots
echo "$(date +%s)" > "$STATE_DIR/queued" || fail "cannot write $STATE_DIR/queued"
if ! out=$(bresume "${ROOTS[@]}" 2>&1); then
    fail "bresume failed: $out"
fi
trap - INT TERM HUP
echo "$(date +%s)" > "$STATE_DIR/released" || echo "submit.sh: warning: cannot write $STATE_DIR/released (the study is queued and released)" >&2
echo "submitted 3 LSF job(s) (1 array(s)) for 4 node(s); released ${#ROOTS[@]} held root job(s)"
