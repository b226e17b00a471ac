#!/bin/bash
# flux: --job-name=hello_world_GREETING.Ciao.NAME.Jim
# flux: --output=hello_world_GREETING.Ciao.NAME.Jim.out
# flux: --error=hello_world_GREETING.Ciao.NAME.Jim.err
# flux: -n 1
# maestro_compile: step 'hello_world' of study 'hello_bye_world'
# node: hello_world_GREETING.Ciao.NAME.Jim
# Submit it by hand with:  flux submit --job-name=hello_world_GREETING.Ciao.NAME.Jim --output=hello_world_GREETING.Ciao.NAME.Jim.out --error=hello_world_GREETING.Ciao.NAME.Jim.err -n 1 --cwd=@STUDY@/hello_world/GREETING.Ciao.NAME.Jim ./hello_world_GREETING.Ciao.NAME.Jim.flux.sh
# (flux submit does not read the "# flux:" lines above; they are repeated on its command line)

# --- status markers for `maestro status` (KEY=VALUE lines); not part of the step's command ---
# (times in epoch seconds: bash 5's $EPOCHSECONDS, else `date +%s`)
MAESTRO_STATUS_FILE=@STUDY@/hello_world/GREETING.Ciao.NAME.Jim/hello_world_GREETING.Ciao.NAME.Jim.status
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
cd @STUDY@/hello_world/GREETING.Ciao.NAME.Jim || exit 1

# --- the step's command, verbatim from the spec; a subshell keeps its own exit and traps inside ---
(
echo "Ciao, Jim!" > Ciao_Jim.txt
)
