#!/bin/bash
#BSUB -J "copy__x__[1-6]"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o copy_x.array.log
#BSUB -e copy_x.array.log
# maestro_compile: job array for step 'copy_$x:ü' of study 'hostile study: 'single' "double" $HOME \ é ü'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    'copy_$x:ü/Wtwo_words/copy_x_Wtwo_words.lsf.sh'
    'copy_$x:ü/Wits/copy_x_Wits.lsf.sh'
    'copy_$x:ü/Wsay_hi/copy_x_Wsay_hi.lsf.sh'
    'copy_$x:ü/Wcost_5/copy_x_Wcost_5.lsf.sh'
    'copy_$x:ü/Wbackslash/copy_x_Wbackslash.lsf.sh'
    'copy_$x:ü/Wnave_/copy_x_Wnave_.lsf.sh'
)
LOGS=(
    'copy_$x:ü/Wtwo_words/copy_x_Wtwo_words'
    'copy_$x:ü/Wits/copy_x_Wits'
    'copy_$x:ü/Wsay_hi/copy_x_Wsay_hi'
    'copy_$x:ü/Wcost_5/copy_x_Wcost_5'
    'copy_$x:ü/Wbackslash/copy_x_Wbackslash'
    'copy_$x:ü/Wnave_/copy_x_Wnave_'
)
# LSF array indexes start at 1
index=${LSB_JOBINDEX:?this script runs as an element of an LSF job array}
(( index > 0 )) || { echo "LSB_JOBINDEX=$index: this script runs as an element of an LSF job array" >&2; exit 1; }
task=$(( index - 1 ))
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
