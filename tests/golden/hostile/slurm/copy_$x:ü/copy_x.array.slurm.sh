#!/bin/bash
#SBATCH --job-name="copy_$x:ü"
#SBATCH --output=copy_x.array.log
#SBATCH --open-mode=append
#SBATCH --comment="maestro_compile:@STUDYID@ Runs after each \"say\" node, with the same word ($(WORD))."
# maestro_compile: job array for step 'copy_$x:ü' of study 'hostile study: 'single' "double" $HOME \ é ü'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    'copy_$x:ü/Wtwo_words/copy_x_Wtwo_words.slurm.sh'
    'copy_$x:ü/Wits/copy_x_Wits.slurm.sh'
    'copy_$x:ü/Wsay_hi/copy_x_Wsay_hi.slurm.sh'
    'copy_$x:ü/Wcost_5/copy_x_Wcost_5.slurm.sh'
    'copy_$x:ü/Wbackslash/copy_x_Wbackslash.slurm.sh'
    'copy_$x:ü/Wnave_/copy_x_Wnave_.slurm.sh'
)
LOGS=(
    'copy_$x:ü/Wtwo_words/copy_x_Wtwo_words'
    'copy_$x:ü/Wits/copy_x_Wits'
    'copy_$x:ü/Wsay_hi/copy_x_Wsay_hi'
    'copy_$x:ü/Wcost_5/copy_x_Wcost_5'
    'copy_$x:ü/Wbackslash/copy_x_Wbackslash'
    'copy_$x:ü/Wnave_/copy_x_Wnave_'
)
task=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
