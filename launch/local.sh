#!/usr/bin/env bash
# Runs an MPT stage or a whole pipeline on this machine; see --help.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<EOF
Usage: launch/local.sh [options] [-- python args]

Runs a stage or a pipeline on this machine (its CPU, GPUs or TPU), from the repository
root, in the repository's virtualenv (made by 'make' when it does not exist yet).
Without --stage or --pipeline it runs the synthetic smoke pipeline, pipelines/demo.gin
(about 15 minutes on a laptop CPU; results in output/demo/results.md).

Examples:
  launch/local.sh
  launch/local.sh --stage teachers --model t5_base --model-dir /data/mpt/teachers \\
    --tfds-data-dir /data/tfds
  launch/local.sh --pipeline pipelines/paper_t5_base.gin --model-dir /data/mpt/paper \\
    --tfds-data-dir /data/tfds

Options of this launcher:
  --venv DIR            The virtualenv to run in (default: the repository's .venv).

$(common_usage)

Relative paths given to these options are relative to where you run the launcher;
relative paths in the python args after -- are relative to the repository root.
EOF
}

VENV=$REPO/.venv
normalize_args "$@"
set -- "${ARGV[@]}"
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --venv) need_value "$@"; VENV=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA_ARGS=("$@"); break ;;
    *) parse_common_option "$@"; shift 2 ;;
  esac
done

if [[ $RUNTIME == mpt_jax && -z $PIPELINE ]] && ((${#STAGES[@]} == 0)); then
  PIPELINE=pipelines/demo.gin
fi
validate_common
[[ -n $PIPELINE || -n $MODEL_DIR ]] ||
  die "--model-dir is required for a stage run: the directory the stage writes to"
[[ -z $PIPELINE ]] || resolve_pipeline
MODEL_DIR=$(absolute "$MODEL_DIR")
TFDS_DATA_DIR=$(absolute "$TFDS_DATA_DIR")
VENV=$(absolute "$VENV")

# Relative gin files and task modules (e.g. tests/toy_stage.gin) are found from here.
run cd "$REPO"
if [[ ! -x $VENV/bin/python ]]; then
  run make "VENV=$VENV" "$VENV/.installed"
fi
build_python_args
run "$VENV/bin/python" "${PY_ARGS[@]}"
