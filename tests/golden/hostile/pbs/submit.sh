#!/bin/bash
# maestro_compile: submits study 'hostile study: 'single' "double" $HOME \ é ü' to PBS and returns.
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

# J0 = node say it's "loud" $x ü_W=two words; waits for: none (held until everything is queued)
submit J0 'say it'"'"'s "loud" $x ü_W=two words' '@STUDY@/say it'"'"'s "loud" $x ü/Wtwo_words' -h '@STUDY@/say it'"'"'s "loud" $x ü/Wtwo_words/say_its_loud_x__Wtwo_words.pbs.sh'
ROOTS+=("${J0}")
record "${J0}" 'say it'"'"'s "loud" $x ü_W=two words'
# J1 = node say it's "loud" $x ü_W=it's; waits for: none (held until everything is queued)
submit J1 'say it'"'"'s "loud" $x ü_W=it'"'"'s' '@STUDY@/say it'"'"'s "loud" $x ü/Wits' -h '@STUDY@/say it'"'"'s "loud" $x ü/Wits/say_its_loud_x__Wits.pbs.sh'
ROOTS+=("${J1}")
record "${J1}" 'say it'"'"'s "loud" $x ü_W=it'"'"'s'
# J2 = node say it's "loud" $x ü_W=say "hi"; waits for: none (held until everything is queued)
submit J2 'say it'"'"'s "loud" $x ü_W=say "hi"' '@STUDY@/say it'"'"'s "loud" $x ü/Wsay_hi' -h '@STUDY@/say it'"'"'s "loud" $x ü/Wsay_hi/say_its_loud_x__Wsay_hi.pbs.sh'
ROOTS+=("${J2}")
record "${J2}" 'say it'"'"'s "loud" $x ü_W=say "hi"'
# J3 = node say it's "loud" $x ü_W=cost $5; waits for: none (held until everything is queued)
submit J3 'say it'"'"'s "loud" $x ü_W=cost $5' '@STUDY@/say it'"'"'s "loud" $x ü/Wcost_5' -h '@STUDY@/say it'"'"'s "loud" $x ü/Wcost_5/say_its_loud_x__Wcost_5.pbs.sh'
ROOTS+=("${J3}")
record "${J3}" 'say it'"'"'s "loud" $x ü_W=cost $5'
# J4 = node say it's "loud" $x ü_W=back\slash; waits for: none (held until everything is queued)
submit J4 'say it'"'"'s "loud" $x ü_W=back\slash' '@STUDY@/say it'"'"'s "loud" $x ü/Wbackslash' -h '@STUDY@/say it'"'"'s "loud" $x ü/Wbackslash/say_its_loud_x__Wbackslash.pbs.sh'
ROOTS+=("${J4}")
record "${J4}" 'say it'"'"'s "loud" $x ü_W=back\slash'
# J5 = node say it's "loud" $x ü_W=naïve ü; waits for: none (held until everything is queued)
submit J5 'say it'"'"'s "loud" $x ü_W=naïve ü' '@STUDY@/say it'"'"'s "loud" $x ü/Wnave_' -h '@STUDY@/say it'"'"'s "loud" $x ü/Wnave_/say_its_loud_x__Wnave_.pbs.sh'
ROOTS+=("${J5}")
record "${J5}" 'say it'"'"'s "loud" $x ü_W=naïve ü'
# J6 = node copy_$x:ü_W=two words; waits for: afterok J0
submit J6 'copy_$x:ü_W=two words' '@STUDY@/copy_$x:ü/Wtwo_words' -W "depend=afterok:${J0}" '@STUDY@/copy_$x:ü/Wtwo_words/copy_x_Wtwo_words.pbs.sh'
record "${J6}" 'copy_$x:ü_W=two words'
# J7 = node copy_$x:ü_W=it's; waits for: afterok J1
submit J7 'copy_$x:ü_W=it'"'"'s' '@STUDY@/copy_$x:ü/Wits' -W "depend=afterok:${J1}" '@STUDY@/copy_$x:ü/Wits/copy_x_Wits.pbs.sh'
record "${J7}" 'copy_$x:ü_W=it'"'"'s'
# J8 = node copy_$x:ü_W=say "hi"; waits for: afterok J2
submit J8 'copy_$x:ü_W=say "hi"' '@STUDY@/copy_$x:ü/Wsay_hi' -W "depend=afterok:${J2}" '@STUDY@/copy_$x:ü/Wsay_hi/copy_x_Wsay_hi.pbs.sh'
record "${J8}" 'copy_$x:ü_W=say "hi"'
# J9 = node copy_$x:ü_W=cost $5; waits for: afterok J3
submit J9 'copy_$x:ü_W=cost $5' '@STUDY@/copy_$x:ü/Wcost_5' -W "depend=afterok:${J3}" '@STUDY@/copy_$x:ü/Wcost_5/copy_x_Wcost_5.pbs.sh'
record "${J9}" 'copy_$x:ü_W=cost $5'
# J10 = node copy_$x:ü_W=back\slash; waits for: afterok J4
submit J10 'copy_$x:ü_W=back\slash' '@STUDY@/copy_$x:ü/Wbackslash' -W "depend=afterok:${J4}" '@STUDY@/copy_$x:ü/Wbackslash/copy_x_Wbackslash.pbs.sh'
record "${J10}" 'copy_$x:ü_W=back\slash'
# J11 = node copy_$x:ü_W=naïve ü; waits for: afterok J5
submit J11 'copy_$x:ü_W=naïve ü' '@STUDY@/copy_$x:ü/Wnave_' -W "depend=afterok:${J5}" '@STUDY@/copy_$x:ü/Wnave_/copy_x_Wnave_.pbs.sh'
record "${J11}" 'copy_$x:ü_W=naïve ü'
# J12 = node gather "all" ü; waits for: afterok J6, afterok J7, afterok J8, afterok J9, afterok J10, afterok J11
submit J12 'gather "all" ü' '@STUDY@/gather "all" ü' -W "depend=afterok:${J6}:${J7}:${J8}:${J9}:${J10}:${J11}" '@STUDY@/gather "all" ü/gather_all_.pbs.sh'
record "${J12}" 'gather "all" ü'

# everything is queued and recorded: say so, then release the held roots
echo "$(date +%s)" > "$STATE_DIR/queued" || fail "cannot write $STATE_DIR/queued"
if (( ${#ROOTS[@]} )) && ! out=$(qrls "${ROOTS[@]}" 2>&1); then
    fail "qrls failed: $out"
fi
trap - INT TERM HUP
echo "$(date +%s)" > "$STATE_DIR/released" || echo "submit.sh: warning: cannot write $STATE_DIR/released (the study is queued and released)" >&2
echo "submitted 13 PBS job(s) (0 array(s)) for 13 node(s); released ${#ROOTS[@]} held root job(s)"
