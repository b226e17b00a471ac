#!/bin/bash
#SBATCH --job-name="summary"
#SBATCH --output=summary.out
#SBATCH --error=summary.err
#SBATCH --comment="maestro_compile:@STUDYID@ Waits for every sweep task."
#SBATCH --partition="pdebug"
#SBATCH --account="physics"
#SBATCH --reservation="dat_window"
# maestro_compile: step 'summary' of study 'resources'
# node: summary
# Submit it by hand with:  sbatch -D @STUDY@/summary ./summary.slurm.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/summary/summary.status
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
cd @STUDY@/summary || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
cat @STUDY@/sweep/*/out_*.txt > summary.txt
)
