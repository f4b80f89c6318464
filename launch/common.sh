# shellcheck shell=bash
# Helpers shared by the launchers (sourced, never run): errors, --dry-run printing, the
# options every launcher takes, and the python command line of a stage or a pipeline.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=$(basename "$0")

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 2
}

warn() {
  printf '%s: warning: %s\n' "$PROG" "$*" >&2
}

# One argument as a shell word: bare when that is safe, else quoted the most readable
# way that still pastes back into bash unchanged.
quote() {
  local arg=$1
  if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$arg"
  elif [[ $arg != *"'"* ]]; then
    printf "'%s'" "$arg"
  elif [[ $arg != *[\"\$\`\\!]* ]]; then
    printf '"%s"' "$arg"
  else
    printf "'%s'" "${arg//\'/\'\\\'\'}"
  fi
}

# The arguments as one pasteable command line.
shell_join() {
  local words=() arg
  for arg in "$@"; do
    words+=("$(quote "$arg")")
  done
  printf '%s\n' "${words[*]}"
}

# Runs a command, or under --dry-run prints it as "[dry-run] <command line>". A real run
# echoes the command to stderr first, so logs show exactly what ran.
DRY_RUN=0
run() {
  if ((DRY_RUN)); then
    printf '[dry-run] %s\n' "$(shell_join "$@")"
  else
    printf '[run] %s\n' "$(shell_join "$@")" >&2
    "$@"
  fi
}

# "--name=value" becomes "--name" "value" (up to "--"), so parsers handle one form.
# The result is in the array ARGV.
normalize_args() {
  ARGV=()
  while (($#)); do
    case $1 in
      --) ARGV+=("$@"); return ;;
      --*=*) ARGV+=("${1%%=*}" "${1#*=}") ;;
      *) ARGV+=("$1") ;;
    esac
    shift
  done
}

need_value() {
  [[ $# -ge 2 && $2 != --* ]] || die "$1 needs a value (see --help)"
}

# Stage names are the run gin files the package ships, so the list cannot drift.
known_stages() {
  local names=() file
  for file in "$REPO"/gin/runs/*.gin; do
    file=$(basename "$file" .gin)
    [[ $file == common ]] || names+=("$file")
  done
  printf '%s\n' "${names[*]}"
}

known_models() {
  local names=() file
  for file in "$REPO"/gin/models/*.gin; do
    names+=("$(basename "$file" .gin)")
  done
  printf '%s\n' "${names[*]}"
}

common_usage() {
  cat <<EOF
What to run, and where it writes:
  --stage NAME          A stage: runs/NAME.gin. Repeat to combine, e.g. --stage adapt
                        --stage few_shot. Stages: $(known_stages)
                        With --runtime t5x it only names the run (eval: t5x.eval).
  --pipeline GIN        A whole pipeline, e.g. pipelines/paper_t5_base.gin (a package
                        gin name or a file path); runs python -m mpt_jax.pipeline.
  --model NAME          The backbone's gin file models/NAME.gin, added after the stage's.
                        Models: $(known_models)
  --gin-file GIN        Another gin file, added after the others (repeatable). With
                        --runtime t5x these name the whole run, e.g.
                        --gin-file mpt_jax/t5x/gin/teachers.gin
                        --gin-file mpt_jax/t5x/gin/t5_1_1_base.gin
  --model-dir DIR       Where the run writes: the stage's MODEL_DIR, or the pipeline's
                        ROOT_DIR.
  --runtime NAME        mpt_jax (python -m mpt_jax.train, default) or t5x (python -m
                        t5x.train, or t5x.eval for --stage eval; t5x must be installed).
  --tfds-data-dir DIR   Where the prepared TFDS datasets are (passed as --tfds_data_dir).
  --dry-run             Print every command, one per line prefixed "[dry-run] ", and
                        run nothing.
  -h, --help            This help.
  -- ARGS...            Everything after -- is passed to python as is, e.g.
                        -- --gin.TRAIN_STEPS=1000 --gin.TEACHER_PROMPTS="'gs://b/p'"
EOF
}

STAGES=()
PIPELINE=""
MODEL=""
GIN_FILES=()
MODEL_DIR=""
RUNTIME=mpt_jax
TFDS_DATA_DIR=""
EXTRA_ARGS=()

# Parses one of the valued options every launcher takes (each launcher handles --help,
# --dry-run and "--" itself), so the caller shifts 2.
parse_common_option() {
  case $1 in
    --stage) need_value "$@"; STAGES+=("$2") ;;
    --pipeline) need_value "$@"; PIPELINE=$2 ;;
    --model) need_value "$@"; MODEL=$2 ;;
    --gin-file) need_value "$@"; GIN_FILES+=("$2") ;;
    --model-dir) need_value "$@"; MODEL_DIR=$2 ;;
    --runtime) need_value "$@"; RUNTIME=$2 ;;
    --tfds-data-dir) need_value "$@"; TFDS_DATA_DIR=$2 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
}

# Checks the common options; a launcher checks its own ones after this.
validate_common() {
  local stage
  case $RUNTIME in
    mpt_jax | t5x) ;;
    *) die "unknown --runtime '$RUNTIME'; choose mpt_jax or t5x" ;;
  esac
  if [[ -n $PIPELINE ]]; then
    ((${#STAGES[@]} == 0)) || die "give --stage or --pipeline, not both"
    [[ -z $MODEL ]] || die "--model is for --stage runs; a pipeline gin names its models"
    [[ $RUNTIME == mpt_jax ]] || die "--pipeline runs the mpt_jax runtime; drop --runtime t5x"
  fi
  for stage in "${STAGES[@]}"; do
    [[ -f $REPO/gin/runs/$stage.gin && $stage != common ]] ||
      die "unknown stage '$stage'; choose from: $(known_stages)"
  done
  if [[ -n $MODEL ]]; then
    [[ $RUNTIME == mpt_jax ]] ||
      die "--model picks an mpt_jax gin file; with --runtime t5x name the size's gin file with --gin-file"
    [[ -f $REPO/gin/models/$MODEL.gin ]] ||
      die "unknown model '$MODEL'; choose from: $(known_models)"
  fi
  if [[ $RUNTIME == t5x ]]; then
    ((${#GIN_FILES[@]})) ||
      die "--runtime t5x needs --gin-file, e.g. --gin-file mpt_jax/t5x/gin/teachers.gin"
  elif [[ -z $PIPELINE ]] && ((${#STAGES[@]} == 0)) && ((${#GIN_FILES[@]})); then
    die "--gin-file adds to a --stage or --pipeline run; name one of them too"
  fi
  [[ $MODEL_DIR != *"'"* ]] || die "--model-dir must not contain a single quote: '$MODEL_DIR'"
}

# Remote launchers have no default run (local.sh falls back to the smoke pipeline).
require_run() {
  [[ -n $PIPELINE ]] || ((${#STAGES[@]})) || [[ $RUNTIME == t5x ]] ||
    die "name what to run: --stage NAME or --pipeline GIN"
}

# A local path made absolute against the caller's directory (the launchers change to
# the repository root); empty values and URLs such as gs://... are kept as they are.
absolute() {
  if [[ -z $1 || $1 == /* || $1 == *://* ]]; then
    printf '%s\n' "$1"
  else
    printf '%s\n' "$PWD/$1"
  fi
}

# A pipeline gin as given: a file (made absolute, since the launcher runs from the
# repository root) or a name inside the package's gin folder (kept as is).
resolve_pipeline() {
  if [[ -f $PIPELINE ]]; then
    PIPELINE=$(cd "$(dirname "$PIPELINE")" && pwd)/$(basename "$PIPELINE")
  elif [[ ! -f $REPO/gin/$PIPELINE ]]; then
    die "pipeline gin '$PIPELINE' not found as a file or in $REPO/gin (e.g. pipelines/demo.gin)"
  fi
}

# A short name of the run for job names and log files.
job_label() {
  if [[ -n $PIPELINE ]]; then
    basename "$PIPELINE" .gin
  elif ((${#STAGES[@]})); then
    local IFS=+
    printf '%s\n' "${STAGES[*]}"
  else
    basename "${GIN_FILES[0]}" .gin
  fi
}

# Whether the run evaluates saved prompts (the eval stage) instead of training.
is_eval_run() {
  local stage
  for stage in "${STAGES[@]}"; do
    [[ $stage != eval ]] || return 0
  done
  return 1
}

# The python command line after the interpreter, in the array PY_ARGS:
#   -m MODULE gin files, MODEL_DIR or ROOT_DIR, --tfds_data_dir, HOST_ARGS, EXTRA_ARGS.
# HOST_ARGS holds the launcher's multi-host flags.
HOST_ARGS=()
build_python_args() {
  local stage file
  if [[ -n $PIPELINE ]]; then
    PY_ARGS=(-m mpt_jax.pipeline "--gin_file=$PIPELINE")
  elif [[ $RUNTIME == t5x ]]; then
    PY_ARGS=(-m t5x.train)
    ! is_eval_run || PY_ARGS[1]=t5x.eval
  else
    PY_ARGS=(-m mpt_jax.train)
    ! is_eval_run || PY_ARGS[1]=mpt_jax.eval
  fi
  if [[ $RUNTIME == mpt_jax ]]; then
    for stage in "${STAGES[@]}"; do
      PY_ARGS+=("--gin_file=runs/$stage.gin")
    done
    [[ -z $MODEL ]] || PY_ARGS+=("--gin_file=models/$MODEL.gin")
  fi
  for file in "${GIN_FILES[@]}"; do
    PY_ARGS+=("--gin_file=$file")
  done
  if [[ -n $MODEL_DIR && -n $PIPELINE ]]; then
    PY_ARGS+=("--gin.ROOT_DIR='$MODEL_DIR'")
  elif [[ -n $MODEL_DIR ]]; then
    PY_ARGS+=("--gin.MODEL_DIR='$MODEL_DIR'")
  fi
  [[ -z $TFDS_DATA_DIR ]] || PY_ARGS+=("--tfds_data_dir=$TFDS_DATA_DIR")
  PY_ARGS+=("${HOST_ARGS[@]}" "${EXTRA_ARGS[@]}")
}
