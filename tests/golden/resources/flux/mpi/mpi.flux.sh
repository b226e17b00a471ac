#!/bin/bash
# flux: --job-name=mpi
# flux: --output=mpi.out
# flux: --error=mpi.err
# flux: -N 2
# flux: -n 8
# flux: -c 4
# flux: -g 1
# flux: -x
# flux: -t 5400s
# flux: -q pdebug
# flux: --bank=physics
# flux: --setattr=foo=bar
# maestro_compile: step 'mpi' of study 'resources'
# node: mpi
# Submit it by hand with:  flux batch --cwd=@STUDY@/mpi ./mpi.flux.sh

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
_mc_mark JOB_ID "${MAESTRO_BUNDLE_ID:-${FLUX_JOB_ID:-${FLUX_ENCLOSING_ID:-$$}}}"
trap _mc_finish EXIT
trap '_mc_mark SIGNAL TERM; exit 143' TERM
trap '_mc_mark SIGNAL INT; exit 130' INT
# Flux sends ALRM at the time limit (a node in a bundle: its bundle's); bash would run the EXIT trap
# with the last command's status
trap '_mc_mark SIGNAL ALRM; exit 142' ALRM
cd @STUDY@/mpi || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
#SBATCH --constraint=x
#BSUB -R "span[hosts=1]"
flux run -N 2 -n 8 -c 4 -g 2 @SPECDIR@/bin/app --input @STUDY@/setup/inputs > mpi.log
flux run -N 1 -n 2 -c 4 -g 2 hostname > hosts.txt
)
