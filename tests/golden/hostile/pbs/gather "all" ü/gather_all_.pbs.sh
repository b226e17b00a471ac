#!/bin/bash
#PBS -N mc_gather__all___
#PBS -P maestro_compile_@STUDYID@
#PBS -o gather_all_.out
#PBS -e gather_all_.err
# maestro_compile: step 'gather "all" ü' of study 'hostile study: 'single' "double" $HOME \ é ü'
# node: gather "all" ü
# Submit it by hand with:  cd '@STUDY@/gather "all" ü' && qsub ./gather_all_.pbs.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE='@STUDY@/gather "all" ü/gather_all_.status'
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
cd '@STUDY@/gather "all" ü' || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
cat "@STUDY@/copy_$x:ü"/*/copy.txt > all.txt
echo "done in \$HOME=$HOME and \\" >> all.txt
)
