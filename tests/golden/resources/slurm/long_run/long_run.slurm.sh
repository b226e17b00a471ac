#!/bin/bash
#SBATCH --job-name="long_run"
#SBATCH --output=long_run.out
#SBATCH --error=long_run.err
#SBATCH --comment="maestro_compile:@STUDYID@ Restarts from its checkpoint when it runs out of time (90 minutes)."
#SBATCH --nodes=1
#SBATCH --ntasks=4
#SBATCH --partition="pdebug"
#SBATCH --account="physics"
#SBATCH --time=01:30:00
#SBATCH --reservation="dat_window"
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
# maestro_compile: step 'long_run' of study 'resources'
# node: long_run
# Submit it by hand with:  sbatch -D @STUDY@/long_run ./long_run.slurm.sh

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
_mc_mark JOB_ID "$([ -n "${SLURM_ARRAY_JOB_ID:-}" ] && echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" || echo "${SLURM_JOB_ID:-$$}")"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
cd @STUDY@/long_run || exit 1

# --- restart on timeout (Maestro's `restart`): Slurm signals USR1 before the time limit and the
# job requeues itself, keeping its job id so its dependents keep waiting; the next start runs
# the restart command. At most 1 restart(s).
_mc_restarts=${SLURM_RESTART_COUNT:-0}
_mc_requeue() {
    if (( 1 == 0 || _mc_restarts < 1 )); then
        _mc_mark REQUEUE "$(date +%s)"
        scontrol requeue "$SLURM_JOB_ID"
    fi
}
trap _mc_requeue USR1
# run in the background so that `wait` returns when the signal arrives
if (( _mc_restarts > 0 )); then
(
srun -n 4 -N 1 @SPECDIR@/bin/app --restart state.chk
) &
else
(
srun -n 4 -N 1 @SPECDIR@/bin/app --checkpoint state.chk
) &
fi
_mc_child=$!
while :; do
    wait "$_mc_child"
    _mc_rc=$?
    kill -0 "$_mc_child" 2>/dev/null || break
done
exit "$_mc_rc"
