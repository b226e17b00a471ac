#!/bin/bash
#BSUB -J "long_run"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o long_run.out
#BSUB -e long_run.err
#BSUB -nnodes 1
#BSUB -q "pdebug"
#BSUB -G "physics"
#BSUB -W 01:30
#BSUB -U "dat_window"
#BSUB -wa USR1
#BSUB -wt 5
# maestro_compile: step 'long_run' of study 'resources'
# node: long_run
# Submit it by hand with:  bsub -cwd @STUDY@/long_run < ./long_run.lsf.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/long_run/long_run.status
_mc_mark() { printf '%s=%s\n' "$1" "$2" >> "$MAESTRO_STATUS_FILE"; }
_mc_finish() {
    local rc=$?
    trap - EXIT
    _mc_mark END "${EPOCHSECONDS:-$(date +%s)}"
    _mc_mark EXIT_CODE "$rc"
    exit "$rc"
}
_mc_mark START "${EPOCHSECONDS:-$(date +%s)}"
_mc_mark HOST "${HOSTNAME:-unknown}"
_mc_mark JOB_ID "$([ "${LSB_JOBINDEX:-0}" != 0 ] && echo "${LSB_JOBID}[${LSB_JOBINDEX}]" || echo "${LSB_JOBID:-$$}")"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
cd @STUDY@/long_run || exit 1

# --- restart on timeout (Maestro's `restart`): LSF sends USR1 ahead of the run limit (-wa/-wt)
# and the job requeues itself with brequeue, keeping its job id so its dependents keep waiting;
# the next start runs the restart command. At most 1 restart(s).
_mc_restarts=$(grep -c '^REQUEUE=' "$MAESTRO_STATUS_FILE")
_mc_requeue() {
    if (( 1 == 0 || _mc_restarts < 1 )); then
        _mc_mark REQUEUE "$(date +%s)"
        if [[ ${LSB_JOBINDEX:-0} != 0 ]]; then
            brequeue "${LSB_JOBID}[${LSB_JOBINDEX}]"
        else
            brequeue "$LSB_JOBID"
        fi
    fi
}
trap _mc_requeue USR1
# run in the background so that `wait` returns when the signal arrives
if (( _mc_restarts > 0 )); then
(
jsrun --nrs 4 -b rs -a 1 -r 1 -c 1 @SPECDIR@/bin/app --restart state.chk
) &
else
(
jsrun --nrs 4 -b rs -a 1 -r 1 -c 1 @SPECDIR@/bin/app --checkpoint state.chk
) &
fi
_mc_child=$!
while :; do
    wait "$_mc_child"
    _mc_rc=$?
    kill -0 "$_mc_child" 2>/dev/null || break
done
exit "$_mc_rc"
