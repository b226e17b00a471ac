#!/bin/bash
#PBS -N mc_mpi
#PBS -P maestro_compile_@STUDYID@
#PBS -o mpi.out
#PBS -e mpi.err
#PBS -l select=2:ncpus=16:mpiprocs=4:ngpus=1
#PBS -q "dat_window"
#PBS -A "physics"
#PBS -l walltime=01:30:00
#PBS -l place=excl
# maestro_compile: step 'mpi' of study 'resources'
# node: mpi
# Submit it by hand with:  cd @STUDY@/mpi && qsub ./mpi.pbs.sh

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
_mc_mark JOB_ID "${PBS_JOBID:-$$}"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
cd @STUDY@/mpi || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
#SBATCH --constraint=x
#BSUB -R "span[hosts=1]"
# flux: --setattr=foo=bar
mpiexec -n 8 --ppn 4 @SPECDIR@/bin/app --input @STUDY@/setup/inputs > mpi.log
mpiexec -n 2 --ppn 2 hostname > hosts.txt
)
