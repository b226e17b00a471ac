#!/bin/bash
#BSUB -J "say_it_s__loud___x__[1-6]"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o say_its_loud_x_.array.log
#BSUB -e say_its_loud_x_.array.log
# maestro_compile: job array for step 'say it's "loud" $x ü' of study 'hostile study: 'single' "double" $HOME \ é ü'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    'say it'"'"'s "loud" $x ü/Wtwo_words/say_its_loud_x__Wtwo_words.lsf.sh'
    'say it'"'"'s "loud" $x ü/Wits/say_its_loud_x__Wits.lsf.sh'
    'say it'"'"'s "loud" $x ü/Wsay_hi/say_its_loud_x__Wsay_hi.lsf.sh'
    'say it'"'"'s "loud" $x ü/Wcost_5/say_its_loud_x__Wcost_5.lsf.sh'
    'say it'"'"'s "loud" $x ü/Wbackslash/say_its_loud_x__Wbackslash.lsf.sh'
    'say it'"'"'s "loud" $x ü/Wnave_/say_its_loud_x__Wnave_.lsf.sh'
)
LOGS=(
    'say it'"'"'s "loud" $x ü/Wtwo_words/say_its_loud_x__Wtwo_words'
    'say it'"'"'s "loud" $x ü/Wits/say_its_loud_x__Wits'
    'say it'"'"'s "loud" $x ü/Wsay_hi/say_its_loud_x__Wsay_hi'
    'say it'"'"'s "loud" $x ü/Wcost_5/say_its_loud_x__Wcost_5'
    'say it'"'"'s "loud" $x ü/Wbackslash/say_its_loud_x__Wbackslash'
    'say it'"'"'s "loud" $x ü/Wnave_/say_its_loud_x__Wnave_'
)
# LSF array indexes start at 1
index=${LSB_JOBINDEX:?this script runs as an element of an LSF job array}
(( index > 0 )) || { echo "LSB_JOBINDEX=$index: this script runs as an element of an LSF job array" >&2; exit 1; }
task=$(( index - 1 ))
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
