#!/bin/bash
#BSUB -J "mpi"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o mpi.out
#BSUB -e mpi.err
#BSUB -nnodes 2
#BSUB -q "pdebug"
#BSUB -G "physics"
#BSUB -W 01:30
#BSUB -x
#BSUB -U "dat_window"
#BSUB -R "span[hosts=1]"
# maestro_compile: step 'mpi' of study 'resources'
# node: mpi
# Submit it by hand with:  bsub -cwd @STUDY@/mpi < ./mpi.lsf.sh

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
_mc_mark JOB_ID "$([ "${LSB_JOBINDEX:-0}" != 0 ] && echo "${LSB_JOBID}[${LSB_JOBINDEX}]" || echo "${LSB_JOBID:-$$}")"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
cd @STUDY@/mpi || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
#SBATCH --constraint=x
# flux: --setattr=foo=bar
jsrun --nrs 8 -b rs -g 2 -a 1 -r 1 -c 1 @SPECDIR@/bin/app --input @STUDY@/setup/inputs > mpi.log
jsrun --nrs 2 -b rs -g 2 -a 1 -r 1 -c 1 hostname > hosts.txt
)
