#!/bin/bash
# flux: --job-name=long_run
# flux: --output=long_run.out
# flux: --error=long_run.err
# flux: -N 1
# flux: -n 4
# flux: -t 10860s
# flux: -q pdebug
# flux: --bank=physics
# maestro_compile: step 'long_run' of study 'resources'
# node: long_run
# Submit it by hand with:  flux batch --cwd=@STUDY@/long_run ./long_run.flux.sh

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
_mc_mark JOB_ID "${MAESTRO_BUNDLE_ID:-${FLUX_JOB_ID:-${FLUX_ENCLOSING_ID:-$$}}}"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
# Flux sends ALRM at the time limit (a node in a bundle: its bundle's); bash would run the EXIT trap
# with the last command's status
trap '_mc_mark SIGNAL ALRM; exit 142' ALRM
cd @STUDY@/long_run || exit 1

# --- restart on timeout (Maestro's `restart`). Flux cannot requeue a job and keep its id, so the
# attempts run inside this job: each gets the step's walltime (5400 s); when the command times
# out, the restart command runs, at most 1 time(s). The job's own time
# limit leaves room for every attempt.
_mc_cmd='flux run -N 1 -n 4 @SPECDIR@/bin/app --checkpoint state.chk'
_mc_restart_cmd='flux run -N 1 -n 4 @SPECDIR@/bin/app --restart state.chk'
timeout --kill-after=10 5400 "$BASH" -c "$_mc_cmd"
_mc_rc=$?
_mc_restarts=0
while (( _mc_rc == 124 )) && (( 1 == 0 || _mc_restarts < 1 )); do
    (( _mc_restarts += 1 ))
    _mc_mark RESTART "$_mc_restarts"
    timeout --kill-after=10 5400 "$BASH" -c "$_mc_restart_cmd"
    _mc_rc=$?
done
(( _mc_rc == 124 )) && _mc_mark TIMEOUT "$(date +%s)"
exit "$_mc_rc"
