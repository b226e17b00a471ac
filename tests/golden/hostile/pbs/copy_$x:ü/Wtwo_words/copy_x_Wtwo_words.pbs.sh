#!/bin/bash
#PBS -N mc_copy__x___W_two_words
#PBS -P maestro_compile_@STUDYID@
#PBS -o copy_x_Wtwo_words.out
#PBS -e copy_x_Wtwo_words.err
# maestro_compile: step 'copy_$x:ü' of study 'hostile study: 'single' "double" $HOME \ é ü'
# node: copy_$x:ü_W=two words
# Submit it by hand with:  cd '@STUDY@/copy_$x:ü/Wtwo_words' && qsub ./copy_x_Wtwo_words.pbs.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE='@STUDY@/copy_$x:ü/Wtwo_words/copy_x_Wtwo_words.status'
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
cd '@STUDY@/copy_$x:ü/Wtwo_words' || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
printf '%s\n' 'two words' "@STUDY@/copy_$x:ü/Wtwo_words" > copy.txt
)
