#!/usr/bin/env bash
# One task of a multi-node GPU job: gpu_multinode.sh has srun start this once per GPU,
# and it runs the python command with this task's place in the jax.distributed job.
#
#   slurm_task.sh STYLE COMMAND...
#
# STYLE says which flags the command takes:
#   mpt_jax  --coordinator_address=HOST:PORT --process_count=N --process_index=I
#   t5x      the same, plus --multiprocess_gpu
#   auto     none: the command's own processes detect SLURM (mpt_jax.pipeline's stages,
#            through jax.distributed's SLURM detection)
# The coordinator is process 0's host, the first node of the job step, on port
# $MPT_COORDINATOR_PORT or, by default, one derived from the job id as jax derives it,
# so that jobs sharing a node do not collide.
set -euo pipefail

die() {
  printf 'slurm_task.sh: error: %s\n' "$*" >&2
  exit 2
}

(($# >= 2)) || die "usage: slurm_task.sh {mpt_jax|t5x|auto} COMMAND..."
STYLE=$1
shift
for var in SLURM_JOB_ID SLURM_NTASKS SLURM_PROCID; do
  [[ -n ${!var:-} ]] || die "$var is not set; run this under srun (see launch/gpu_multinode.sh)"
done

# srun gives each task one GPU (--gpus-per-task=1), so that GPU is the task's device 0;
# jax would otherwise pick device SLURM_LOCALID, which does not exist in this task.
export JAX_LOCAL_DEVICE_IDS=0

PORT=${MPT_COORDINATOR_PORT:-$((SLURM_JOB_ID % 4096 + 61440))}
case $STYLE in
  auto) export JAX_COORDINATOR_PORT=$PORT; exec "$@" ;;
  mpt_jax | t5x) ;;
  *) die "unknown STYLE '$STYLE'; choose mpt_jax, t5x or auto" ;;
esac
# The step's first node runs task 0 (the job's first node when srun spans the job).
NODES=${SLURM_STEP_NODELIST:-${SLURM_JOB_NODELIST:?}}
HOSTS=$(scontrol show hostnames "$NODES")
COORDINATOR=${HOSTS%%$'\n'*}
[[ -n $COORDINATOR ]] || die "scontrol found no host in '$NODES'"
HOST_FLAGS=("--coordinator_address=$COORDINATOR:$PORT" "--process_count=$SLURM_NTASKS"
  "--process_index=$SLURM_PROCID")
[[ $STYLE == mpt_jax ]] || HOST_FLAGS=(--multiprocess_gpu "${HOST_FLAGS[@]}")
exec "$@" "${HOST_FLAGS[@]}"
