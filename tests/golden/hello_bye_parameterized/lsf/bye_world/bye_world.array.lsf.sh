#!/bin/bash
#BSUB -J "bye_world[1-4]"
#BSUB -Jd "maestro_compile:@STUDYID@"
#BSUB -o bye_world.array.log
#BSUB -e bye_world.array.log
# maestro_compile: job array for step 'bye_world' of study 'hello_bye_world'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    bye_world/GREETING.Hello.NAME.Pam/bye_world_GREETING.Hello.NAME.Pam.lsf.sh
    bye_world/GREETING.Ciao.NAME.Jim/bye_world_GREETING.Ciao.NAME.Jim.lsf.sh
    bye_world/GREETING.Hey.NAME.Michael/bye_world_GREETING.Hey.NAME.Michael.lsf.sh
    bye_world/GREETING.Hi.NAME.Dwight/bye_world_GREETING.Hi.NAME.Dwight.lsf.sh
)
LOGS=(
    bye_world/GREETING.Hello.NAME.Pam/bye_world_GREETING.Hello.NAME.Pam
    bye_world/GREETING.Ciao.NAME.Jim/bye_world_GREETING.Ciao.NAME.Jim
    bye_world/GREETING.Hey.NAME.Michael/bye_world_GREETING.Hey.NAME.Michael
    bye_world/GREETING.Hi.NAME.Dwight/bye_world_GREETING.Hi.NAME.Dwight
)
# LSF array indexes start at 1
index=${LSB_JOBINDEX:?this script runs as an element of an LSF job array}
(( index > 0 )) || { echo "LSB_JOBINDEX=$index: this script runs as an element of an LSF job array" >&2; exit 1; }
task=$(( index - 1 ))
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
