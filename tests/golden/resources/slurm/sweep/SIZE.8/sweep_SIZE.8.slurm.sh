#!/bin/bash
#SBATCH --job-name="sweep_SIZE.8"
#SBATCH --output=sweep_SIZE.8.out
#SBATCH --error=sweep_SIZE.8.err
#SBATCH --comment="maestro_compile:@STUDYID@ One array task per size 8."
#SBATCH --ntasks=2
#SBATCH --partition="pdebug"
#SBATCH --account="physics"
#SBATCH --time=00:10:00
#SBATCH --reservation="dat_window"
# maestro_compile: step 'sweep' of study 'resources'
# node: sweep_SIZE.8
# Submit it by hand with:  sbatch -D @STUDY@/sweep/SIZE.8 ./sweep_SIZE.8.slurm.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/sweep/SIZE.8/sweep_SIZE.8.status
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
cd @STUDY@/sweep/SIZE.8 || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
srun -n 2 @SPECDIR@/bin/app --size 8 > out_8.txt
)
