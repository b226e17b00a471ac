#!/bin/bash
#SBATCH --job-name="mpi"
#SBATCH --output=mpi.out
#SBATCH --error=mpi.err
#SBATCH --comment="maestro_compile:@STUDYID@ Two nodes, eight tasks, cores per task, GPUs, exclusive, 01:30:00."
#SBATCH --nodes=2
#SBATCH --ntasks=8
#SBATCH --cpus-per-task=4
#SBATCH --partition="pdebug"
#SBATCH --account="physics"
#SBATCH --time=01:30:00
#SBATCH --gres=gpu:2
#SBATCH --exclusive
#SBATCH --reservation="dat_window"
#SBATCH --constraint=x
# maestro_compile: step 'mpi' of study 'resources'
# node: mpi
# Submit it by hand with:  sbatch -D @STUDY@/mpi ./mpi.slurm.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/mpi/mpi.status
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
cd @STUDY@/mpi || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
#BSUB -R "span[hosts=1]"
# flux: --setattr=foo=bar
srun -n 8 -N 2 -c 4 @SPECDIR@/bin/app --input @STUDY@/setup/inputs > mpi.log
srun -n 2 -N 1 -c 4 hostname > hosts.txt
)
