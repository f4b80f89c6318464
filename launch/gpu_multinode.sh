#!/usr/bin/env bash
# Runs an MPT stage or pipeline on GPU nodes of a SLURM cluster; see --help.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: launch/gpu_multinode.sh --model-dir DIR [options] [-- python args]

Runs a stage or a pipeline on SLURM GPU nodes, one process per GPU: srun starts
--gpus-per-node tasks on each of --nodes nodes, each with one GPU, through
launch/slurm_task.sh, which gives each task its jax.distributed place (coordinator:
the first node; process count: SLURM_NTASKS; process index: SLURM_PROCID).
Outside a SLURM job it submits a batch job with sbatch (log: --log-dir/JOB-ID.log);
inside one (salloc, or a batch script of yours) it runs srun directly.
The repository, its virtualenv and --model-dir must be on a filesystem every node
sees (or --model-dir a gs:// path). Rerunning the same command resumes a run.
A submitted job asks for SIGTERM 120 s before its time limit; the run then saves a
checkpoint and exits with status 75, and the job requeues itself to resume.

Example (the paper's teachers stage, T5-Base, 2 nodes of 8 GPUs):
  launch/gpu_multinode.sh --nodes 2 --gpus-per-node 8 --partition gpu --time 24:00:00 \\
    --stage teachers --model t5_base --model-dir /shared/mpt/teachers \\
    --tfds-data-dir /shared/tfds

Options of this launcher:
  --nodes N             Nodes (default 1).
  --gpus-per-node G     GPUs, hence processes, per node (default 8).
  --partition NAME      SLURM partition (default: the cluster's).
  --time LIMIT          SLURM time limit, e.g. 24:00:00 (default: the partition's).
  --account NAME        SLURM account to charge (default: yours).
  --job-name NAME       SLURM job name (default: mpt_jax-<stage or pipeline>).
  --log-dir DIR         Where the batch job's log goes (default: ./logs).
  --venv DIR            The virtualenv on the nodes (default: the repository's .venv,
                        with jax's CUDA plugin installed; see README.md, Launching).

$(common_usage)
EOF
}

NODES=1
GPUS_PER_NODE=8
PARTITION=""
TIME_LIMIT=""
ACCOUNT=""
JOB_NAME=""
LOG_DIR=logs
VENV=$REPO/.venv
normalize_args "$@"
set -- "${ARGV[@]}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --nodes) need_value "$@"; NODES=$2; shift 2 ;;
    --gpus-per-node) need_value "$@"; GPUS_PER_NODE=$2; shift 2 ;;
    --partition) need_value "$@"; PARTITION=$2; shift 2 ;;
    --time) need_value "$@"; TIME_LIMIT=$2; shift 2 ;;
    --account) need_value "$@"; ACCOUNT=$2; shift 2 ;;
    --job-name) need_value "$@"; JOB_NAME=$2; shift 2 ;;
    --log-dir) need_value "$@"; LOG_DIR=$2; shift 2 ;;
    --venv) need_value "$@"; VENV=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA_ARGS=("$@"); break ;;
    *) parse_common_option "$@"; shift 2 ;;
  esac
done

validate_common
require_run
[[ -n $MODEL_DIR ]] ||
  die "--model-dir is required: a directory every node can write (shared filesystem or gs://)"
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer (got '$NODES')"
[[ $GPUS_PER_NODE =~ ^[1-9][0-9]*$ ]] ||
  die "--gpus-per-node must be a positive integer (got '$GPUS_PER_NODE')"
[[ -z $PIPELINE ]] || resolve_pipeline
MODEL_DIR=$(absolute "$MODEL_DIR")
TFDS_DATA_DIR=$(absolute "$TFDS_DATA_DIR")
LOG_DIR=$(absolute "$LOG_DIR")
VENV=$(absolute "$VENV")
JOB_NAME=${JOB_NAME:-mpt_jax-$(job_label)}
if ((!DRY_RUN)); then
  [[ -x $VENV/bin/python ]] ||
    die "no virtualenv at $VENV; make it with 'make .venv/.installed' and install jax's CUDA plugin (README.md, Launching), or pass --venv"
  command -v srun >/dev/null || die "srun not found: run this on a SLURM login node"
fi

# The pipeline cannot pass multi-host flags to its stage processes; they detect SLURM.
if [[ -n $PIPELINE ]]; then
  STYLE=auto
else
  STYLE=$RUNTIME
fi
build_python_args
SRUN=(srun "--nodes=$NODES" "--ntasks-per-node=$GPUS_PER_NODE" --gpus-per-task=1
  --kill-on-bad-exit=1 "$REPO/launch/slurm_task.sh" "$STYLE" "$VENV/bin/python"
  "${PY_ARGS[@]}")

if [[ -n ${SLURM_JOB_ID:-} ]]; then
  printf 'Inside SLURM job %s: running srun directly.\n' "$SLURM_JOB_ID" >&2
  run cd "$REPO"
  run "${SRUN[@]}"
  exit
fi

# SIGTERM before the time limit (and on preemption) makes the run save and exit 75;
# the job then requeues itself and resumes from that checkpoint.
DIRECTIVES=("--job-name=$JOB_NAME" "--nodes=$NODES" "--ntasks-per-node=$GPUS_PER_NODE"
  --gpus-per-task=1 "--output=$LOG_DIR/%x-%j.log" --signal=TERM@120 --requeue)
[[ -z $PARTITION ]] || DIRECTIVES+=("--partition=$PARTITION")
[[ -z $TIME_LIMIT ]] || DIRECTIVES+=("--time=$TIME_LIMIT")
[[ -z $ACCOUNT ]] || DIRECTIVES+=("--account=$ACCOUNT")
# shellcheck disable=SC2016  # $status and $SLURM_JOB_ID expand when the batch script runs
SCRIPT=$(
  printf '#!/usr/bin/env bash\n'
  printf '#SBATCH %s\n' "${DIRECTIVES[@]}"
  printf 'set -euo pipefail\n'
  printf 'cd %s\n' "$(quote "$REPO")"
  printf 'status=0\n'
  printf '%s || status=$?\n' "$(shell_join "${SRUN[@]}")"
  printf 'if ((status == 75)); then\n'
  printf '  echo "Preempted: the run saved a checkpoint; requeueing job $SLURM_JOB_ID to resume." >&2\n'
  printf '  scontrol requeue "$SLURM_JOB_ID"\n'
  printf 'fi\n'
  printf 'exit "$status"\n'
)
run mkdir -p "$LOG_DIR"
if ((DRY_RUN)); then
  printf "[dry-run] sbatch <<'EOF'\n%s\nEOF\n" "$SCRIPT"
else
  command -v sbatch >/dev/null || die "sbatch not found: run this on a SLURM login node"
  printf '[run] sbatch with this batch script:\n%s\n' "$SCRIPT" >&2
  sbatch <<<"$SCRIPT"
fi
