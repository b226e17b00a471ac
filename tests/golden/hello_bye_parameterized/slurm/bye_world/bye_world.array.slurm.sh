#!/bin/bash
#SBATCH --job-name="bye_world"
#SBATCH --output=bye_world.array.log
#SBATCH --open-mode=append
#SBATCH --comment="maestro_compile:@STUDYID@ Say bye to someone!"
# maestro_compile: job array for step 'bye_world' of study 'hello_bye_world'.
# Task i runs the script of the i-th node below (each script can also be run on its own);
# its output goes to that node's .out/.err in its workspace.
STUDY_DIR=@STUDY@
SCRIPTS=(
    bye_world/GREETING.Hello.NAME.Pam/bye_world_GREETING.Hello.NAME.Pam.slurm.sh
    bye_world/GREETING.Ciao.NAME.Jim/bye_world_GREETING.Ciao.NAME.Jim.slurm.sh
    bye_world/GREETING.Hey.NAME.Michael/bye_world_GREETING.Hey.NAME.Michael.slurm.sh
    bye_world/GREETING.Hi.NAME.Dwight/bye_world_GREETING.Hi.NAME.Dwight.slurm.sh
)
LOGS=(
    bye_world/GREETING.Hello.NAME.Pam/bye_world_GREETING.Hello.NAME.Pam
    bye_world/GREETING.Ciao.NAME.Jim/bye_world_GREETING.Ciao.NAME.Jim
    bye_world/GREETING.Hey.NAME.Michael/bye_world_GREETING.Hey.NAME.Michael
    bye_world/GREETING.Hi.NAME.Dwight/bye_world_GREETING.Hi.NAME.Dwight
)
task=${SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}
script=$STUDY_DIR/${SCRIPTS[task]:?no node for array task $task}
cd "${script%/*}" || exit 1
exec "$script" >"$STUDY_DIR/${LOGS[task]}.out" 2>"$STUDY_DIR/${LOGS[task]}.err"
