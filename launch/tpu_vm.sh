#!/usr/bin/env bash
# Runs an MPT stage or pipeline on a Cloud TPU VM or pod slice; see --help.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# The t5x sources the t5x wrapper is tested against (none of them is on PyPI in a
# usable release; jestimator's PyPI release is broken with current jax).
T5X_SOURCES=(
  "t5x @ git+https://github.com/google-research/t5x@cc342d419ec3e3e9c4bf1df33c82330cafdc1e16"
  "airio @ git+https://github.com/google/airio@69897df7d9a427b947a9f7bb4164c7782b43e601"
  "jestimator @ git+https://github.com/google-research/jestimator@326824a477feef6d92e6f44175000907a72899ca"
)
# What the imports of t5x, airio and jestimator need beyond this package's pins.
T5X_EXTRA_DEPS=(fiddle cached_property chex jaxtyping grain)
PYTHON_VERSION=3.11

usage() {
  cat <<EOF
Usage: launch/tpu_vm.sh --name NAME --zone ZONE --model-dir gs://... [options] [-- python args]

Runs a stage or a pipeline on every worker of a Cloud TPU VM or pod slice:
  1. creates the TPU VM (gcloud compute tpus tpu-vm create), or reuses it if it exists
     and is READY;
  2. ships this repository at --ref (git archive + scp to every worker) and installs it
     with its pinned dependencies and the matching jax[tpu] into ~/mpt_jax/venv on
     every worker (Python $PYTHON_VERSION through uv);
  3. runs the command on all workers at once (--worker=all). Output streams here and
     is kept in ~/mpt_jax/logs/ on each worker. jax.distributed finds the other workers
     of a pod slice by itself; mpt_jax runs get --multi_host.
Checkpoints and results go to --model-dir, which must be a gs:// path every worker can
write. Rerunning the same command resumes an interrupted run.

Example (the paper's teachers stage, T5-Base, on a v4-16 slice: 2 hosts):
  launch/tpu_vm.sh --name mpt-v4-16 --zone us-central2-b --accelerator-type v4-16 \\
    --stage teachers --model t5_base --model-dir gs://my-bucket/mpt/teachers \\
    --tfds-data-dir gs://my-bucket/tfds

Options of this launcher:
  --name NAME               The TPU VM to create or reuse (required).
  --zone ZONE               Its zone (required), e.g. us-central2-b.
  --project PROJECT         The Google Cloud project (default: gcloud's configured one).
  --accelerator-type TYPE   The slice to create, e.g. v4-8, v4-16, v5p-8, v6e-16
                            (default v4-8; used only when the TPU VM is created).
  --runtime-version V       The TPU software version to create it with (default:
                            tpu-ubuntu2204-base for v2-v4, v2-alpha-tpuv5-lite for
                            v5litepod, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e).
  --ref REF                 The git commit, branch or tag to ship (default HEAD).
                            Uncommitted changes are not shipped.
  --no-install              Skip shipping and installing (the workers already have
                            this --ref installed).

$(common_usage)

A pipeline gin must be inside this repository, since the workers run the shipped copy.
EOF
}

NAME=""
ZONE=""
PROJECT=""
ACCELERATOR_TYPE=v4-8
RUNTIME_VERSION=""
REF=HEAD
INSTALL=1
normalize_args "$@"
set -- "${ARGV[@]}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --name) need_value "$@"; NAME=$2; shift 2 ;;
    --zone) need_value "$@"; ZONE=$2; shift 2 ;;
    --project) need_value "$@"; PROJECT=$2; shift 2 ;;
    --accelerator-type) need_value "$@"; ACCELERATOR_TYPE=$2; shift 2 ;;
    --runtime-version) need_value "$@"; RUNTIME_VERSION=$2; shift 2 ;;
    --ref) need_value "$@"; REF=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA_ARGS=("$@"); break ;;
    *) parse_common_option "$@"; shift 2 ;;
  esac
done

validate_common
require_run
[[ -n $NAME ]] || die "--name is required: the TPU VM to create or reuse, e.g. --name mpt-v4-16"
[[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
  die "--name '$NAME' is not a valid TPU name: lowercase letters, digits and hyphens, starting with a letter"
[[ -n $ZONE ]] || die "--zone is required, e.g. --zone us-central2-b"
[[ -n $MODEL_DIR ]] ||
  die "--model-dir is required: a gs:// path every worker writes to, e.g. --model-dir gs://my-bucket/mpt/teachers"
[[ $MODEL_DIR == gs://?* ]] ||
  die "--model-dir must be a gs:// path (got '$MODEL_DIR'): each TPU worker has its own disk, so outputs go to a bucket, e.g. gs://my-bucket/mpt/teachers"
[[ -z $TFDS_DATA_DIR || $TFDS_DATA_DIR == gs://?* ]] ||
  die "--tfds-data-dir must be a gs:// path every worker can read (got '$TFDS_DATA_DIR')"
[[ $ACCELERATOR_TYPE =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] ||
  die "--accelerator-type '$ACCELERATOR_TYPE' is not a TPU type such as v4-16 or v5p-8"
if [[ -z $RUNTIME_VERSION ]]; then
  case $ACCELERATOR_TYPE in
    v2-* | v3-* | v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
    v5litepod-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
    v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
    v6e-*) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
    *) die "no default TPU software version for $ACCELERATOR_TYPE; pass --runtime-version" ;;
  esac
fi
if [[ -n $PIPELINE ]]; then
  resolve_pipeline
  # The workers run the shipped copy of the repository, from its root.
  if [[ $PIPELINE == /* ]]; then
    [[ $PIPELINE == "$REPO"/* ]] ||
      die "pipeline gin $PIPELINE is outside $REPO; the workers only get the repository"
    PIPELINE=${PIPELINE#"$REPO"/}
  fi
fi

SHA=$(git -C "$REPO" rev-parse --verify --quiet "$REF^{commit}") ||
  die "--ref '$REF' is not a commit of $REPO"
if [[ $SHA == "$(git -C "$REPO" rev-parse HEAD)" && -n $(git -C "$REPO" status --porcelain) ]]; then
  warn "$REPO has uncommitted changes; the workers get the committed $REF ($SHA) only"
fi
JAX_VERSION=$(git -C "$REPO" show "$SHA:setup.py" | sed -n 's/.*"jax==\([^"]*\)".*/\1/p')
[[ -n $JAX_VERSION ]] || die "setup.py at $REF pins no jax==VERSION; cannot pick jax[tpu]"
((DRY_RUN)) || command -v gcloud >/dev/null ||
  die "gcloud not found; install the Google Cloud CLI and run 'gcloud auth login'"

TPU=(gcloud compute tpus tpu-vm)
WHERE=("--zone=$ZONE")
[[ -z $PROJECT ]] || WHERE+=("--project=$PROJECT")

# 1. Create the TPU VM unless it exists.
DESCRIBE=("${TPU[@]}" describe "$NAME" "${WHERE[@]}" "--format=value(state)")
CREATE=("${TPU[@]}" create "$NAME" "${WHERE[@]}" "--accelerator-type=$ACCELERATOR_TYPE"
  "--version=$RUNTIME_VERSION")
if ((DRY_RUN)); then
  printf '[dry-run] %s >/dev/null 2>&1 || %s\n' "$(shell_join "${DESCRIBE[@]}")" \
    "$(shell_join "${CREATE[@]}")"
elif STATE=$("${DESCRIBE[@]}" 2>/dev/null); then
  [[ $STATE == READY ]] ||
    die "TPU VM $NAME exists but is $STATE, not READY; start it ('${TPU[*]} start $NAME ${WHERE[*]}') or delete it"
  printf 'Reusing TPU VM %s (READY).\n' "$NAME" >&2
else
  run "${CREATE[@]}"
fi

# 2. Ship the repository at $SHA and install it on every worker.
if ((INSTALL)); then
  ARCHIVE=${TMPDIR:-/tmp}/mpt_jax-$SHA.tar.gz
  run git -C "$REPO" archive --format=tar.gz -o "$ARCHIVE" "$SHA"
  run "${TPU[@]}" scp "$ARCHIVE" "$NAME:mpt_jax-src.tar.gz" "${WHERE[@]}" --worker=all
  # ssh runs these in the worker's home directory, so the paths are relative to it.
  PIP=".local/bin/uv pip install --python mpt_jax/venv/bin/python"
  STEPS=(
    "rm -rf mpt_jax/src"
    "mkdir -p mpt_jax/src mpt_jax/logs"
    "tar -xzf mpt_jax-src.tar.gz -C mpt_jax/src"
    "{ test -x .local/bin/uv || curl -LsSf https://astral.sh/uv/install.sh | sh; }"
    "{ test -x mpt_jax/venv/bin/python || .local/bin/uv venv --python $PYTHON_VERSION mpt_jax/venv; }"
    "$PIP -e mpt_jax/src $(quote "jax[tpu]==$JAX_VERSION")"
  )
  if [[ $RUNTIME == t5x ]]; then
    # t5x's own requirements would replace the pinned jax, flax and tensorflow: install
    # it without them, then only what its imports need, constrained to the pinned set.
    STEPS+=(
      ".local/bin/uv pip freeze --exclude-editable --python mpt_jax/venv/bin/python > mpt_jax/pins.txt"
      "$PIP --no-deps $(shell_join "${T5X_SOURCES[@]}")"
      "$PIP -c mpt_jax/pins.txt ${T5X_EXTRA_DEPS[*]}"
    )
  fi
  INSTALL_COMMAND=$(printf '%s && ' "${STEPS[@]}")
  run "${TPU[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all "--command=${INSTALL_COMMAND% && }"
fi

# 3. Run on every worker at once; each keeps its own log.
[[ $RUNTIME == t5x ]] || HOST_ARGS=(--multi_host)
build_python_args
LOG=../logs/$(job_label)-$(date +%Y%m%d-%H%M%S).log
RUN_COMMAND="set -o pipefail && cd mpt_jax/src && ../venv/bin/python $(shell_join "${PY_ARGS[@]}") 2>&1 | tee -a $LOG"
status=0
run "${TPU[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all "--command=$RUN_COMMAND" || status=$?
if ((status == 75)); then
  warn "the run was preempted (SIGTERM) and saved a checkpoint: relaunch the same command with --no-install to resume"
fi
exit "$status"
