#!/bin/bash
#BSUB -J "say_hi[1-4]"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o say_hi.array.log
#BSUB -e say_hi.array.log
# maestro_compile: job array for step 'say_hi' of study 'hello_world_single'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    say_hi/NAME.Pam/say_hi_NAME.Pam.lsf.sh
    say_hi/NAME.Jim/say_hi_NAME.Jim.lsf.sh
    say_hi/NAME.Michael/say_hi_NAME.Michael.lsf.sh
    say_hi/NAME.Dwight/say_hi_NAME.Dwight.lsf.sh
)
LOGS=(
    say_hi/NAME.Pam/say_hi_NAME.Pam
    say_hi/NAME.Jim/say_hi_NAME.Jim
    say_hi/NAME.Michael/say_hi_NAME.Michael
    say_hi/NAME.Dwight/say_hi_NAME.Dwight
)
# LSF array indexes start at 1
index=${LSB_JOBINDEX:?this script runs as an element of an LSF job array}
(( index > 0 )) || { echo "LSB_JOBINDEX=$index: this script runs as an element of an LSF job array" >&2; exit 1; }
task=$(( index - 1 ))
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
