#!/bin/bash
#SBATCH --job-name="say_hi"
#SBATCH --output=say_hi.array.log
#SBATCH --open-mode=append
#SBATCH --comment="maestro_compile:@STUDYID@ Say hello to someone!"
# maestro_compile: job array for step 'say_hi' of study 'hello_world_single'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    say_hi/NAME.Pam/say_hi_NAME.Pam.slurm.sh
    say_hi/NAME.Jim/say_hi_NAME.Jim.slurm.sh
    say_hi/NAME.Michael/say_hi_NAME.Michael.slurm.sh
    say_hi/NAME.Dwight/say_hi_NAME.Dwight.slurm.sh
)
LOGS=(
    say_hi/NAME.Pam/say_hi_NAME.Pam
    say_hi/NAME.Jim/say_hi_NAME.Jim
    say_hi/NAME.Michael/say_hi_NAME.Michael
    say_hi/NAME.Dwight/say_hi_NAME.Dwight
)
task=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
