#!/bin/bash
#PBS -N mc_say_it_s__loud___x___W_back_slash
#PBS -P maestro_compile_@STUDYID@
#PBS -o say_its_loud_x__Wbackslash.out
#PBS -e say_its_loud_x__Wbackslash.err
# maestro_compile: step 'say it's "loud" $x ü' of study 'hostile study: 'single' "double" $HOME \ é ü'
# node: say it's "loud" $x ü_W=back\slash
# Submit it by hand with:  cd '@STUDY@/say it'"'"'s "loud" $x ü/Wbackslash' && qsub ./say_its_loud_x__Wbackslash.pbs.sh

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE='@STUDY@/say it'"'"'s "loud" $x ü/Wbackslash/say_its_loud_x__Wbackslash.status'
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
cd '@STUDY@/say it'"'"'s "loud" $x ü/Wbackslash' || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
printf '%s\n' "it's "quoted", costs $5 and has a \ backslash" > greeting.txt
cat > word.txt <<'END'
back\slash in Zürich café
END
echo 'label: W=back\slash' > "out W=back\slash.txt"
)
