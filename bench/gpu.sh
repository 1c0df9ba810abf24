#!/usr/bin/env bash
# GPU benchmark of ich_nbdev: resnet50, mobilenetv2_100 and efficientnet_b2 trained and run through the project's
# fastai Learner (mixed precision + channels_last) on a cache of the synthetic sample, for a fixed number of steps.
# Prints slices/s (train and inference), peak GPU memory, the loader's own slices/s, a ratio against plain fp32
# resnet50 measured in the same run, and the time of every phase. Meant for a machine with one GPU and no network,
# which has python3 with torch, timm, numpy and pandas but may lack fastai, fastcore, pydicom and the like: it
# installs those from wheels in bench/wheels/ (never touching the torch, timm, numpy or pandas already there).
#
# 1. On a machine with network, in the repository root, fill bench/wheels/ (git ignores it):
#        bash bench/gpu.sh --fetch          # fastai, fastcore, fasttransform, plum-dispatch, beartype, fastprogress,
#                                           # fastdownload, pydicom: pure-Python wheels, 4.3 MB
#        bash bench/gpu.sh --fetch-all      # also scipy, scikit-learn, matplotlib, pyarrow, rich, ... (binary
#                                           # wheels, 120 MB) for a GPU image that has only torch/timm/numpy/pandas
#    Binary wheels are fetched for this interpreter's Python version and manylinux x86_64; for another Python set
#    ICH_BENCH_PYVER (e.g. ICH_BENCH_PYVER=3.12). Copy bench/wheels/ along with the repository.
# 2. On the GPU machine, in the repository root:
#        bash bench/gpu.sh [--archs resnet50,mobilenetv2_100,efficientnet_b2] [--size 256] [--bs 64] [--steps 100]
#                          [--warmup 10] [--workers 0] [--baseline resnet50]
#    It checks for a GPU (no GPU: a message and exit 3), installs only the packages that do not import into
#    /tmp/ich-bench-site (pip --no-index --no-deps --target; nothing in the image changes), puts that folder and
#    the repository on PYTHONPATH, and runs bench/gpu.py under `timeout` (400 s by default; the whole script is
#    meant to finish well inside 8 minutes on one H100). Exit status: 3 no GPU, 4 a package missing, 124 time out.
#    Expected output: the device and versions, the loader's slices/s, one line per architecture
#        architecture     mode                        train sl/s  infer sl/s  peak train  peak infer   secs
#        resnet50         AMP fp16 + channels_last          ...         ...    ... GiB     ... GiB    ...
#    the ratio of AMP + channels_last to the fp32 baseline, and the seconds of each phase.
#    Several GPUs: then bench/ddp.py times ich-train's training loop in 1 process and in one process per GPU (data
#    parallel under torchrun, NCCL) and prints slices/s and the speed-up (ICH_BENCH_DDP: auto = when there are 2 or
#    more GPUs, 1 = always, with the CPU check a tiny 1- and 2-process gloo run, 0 = never; ICH_BENCH_DDP_ARGS: more
#    arguments for bench/ddp.py, e.g. "--arch efficientnet_b2 --bs 32"; limit ICH_BENCH_DDP_TIMEOUT, 400 s). It needs
#    Hugging Face accelerate (fastai's data parallel training runs on it; fetched by --fetch-all); without it the
#    phase is skipped with a message.
#    With ICH_BENCH_SCRATCH set (arguments for bench/from_scratch.py, e.g. "--budget 40 --n-studies 200"), it then
#    trains the plain CNN baseline, MobileNetV2 and EfficientNet-B2 from scratch for that many seconds each on this
#    device and prints the weighted log loss against the prior-only baseline and AUC(any) (limit:
#    ICH_BENCH_SCRATCH_TIMEOUT, 300 s by default).
# Environment: PYTHON (interpreter, default python3), ICH_BENCH_WHEELS (wheel folder, default bench/wheels),
# ICH_BENCH_SITE (install folder), ICH_BENCH_TIMEOUT (seconds for the Python run), ICH_CACHE (synthetic data and
# cache; default /tmp/ich-bench-cache), ICH_BENCH_ALLOW_CPU=1 (no GPU: a tiny CPU run that only checks the script).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PY=${PYTHON:-python3}
WHEELS=${ICH_BENCH_WHEELS:-$HERE/wheels}
SITE=${ICH_BENCH_SITE:-/tmp/ich-bench-site}
LIMIT=${ICH_BENCH_TIMEOUT:-400}
export ICH_CACHE=${ICH_CACHE:-/tmp/ich-bench-cache}

# "import-name distribution==version": what `import ich_nbdev.learner` (with .synth, .preprocess, .metrics) and the
# benchmark import beyond torch, timm, numpy, pandas and their own dependencies. The versions are the tested ones.
# fastprogress 1.0.3: later versions import python-fasthtml (a web framework and a dozen more packages); fastai
# needs only fastprogress>=0.2.4.
CORE=(
  "fastai fastai==2.8.12" "fastcore fastcore==2.2.41" "fasttransform fasttransform==0.0.5"
  "plum plum-dispatch==2.9.0" "beartype beartype==0.23.1" "fastprogress fastprogress==1.0.3"
  "fastdownload fastdownload==0.0.8" "pydicom pydicom==3.0.2"
)
# On the documented GPU image already (its package list has them); fetched only by --fetch-all.
EXTRA=(
  "scipy scipy==1.17.1" "sklearn scikit-learn==1.9.1" "joblib joblib==1.6.0" "threadpoolctl threadpoolctl==3.8.0" "narwhals narwhals==2.29.0"
  "matplotlib matplotlib==3.11.2" "contourpy contourpy==1.3.3" "cycler cycler==0.12.1" "fontTools fonttools==4.68.0"
  "kiwisolver kiwisolver==1.5.1" "pyparsing pyparsing==3.3.3" "pyarrow pyarrow==26.0.1"
  "rich rich==15.0.0" "markdown_it markdown-it-py==4.3.0" "mdurl mdurl==0.1.2" "pygments pygments==2.21.0"
  "accelerate accelerate==1.16.0" "cloudpickle cloudpickle==3.1.3" "psutil psutil==7.2.2" "requests requests==2.34.2" "urllib3 urllib3==2.8.0"
  "certifi certifi==2026.10.19.post1" "charset_normalizer charset-normalizer==3.5.3" "idna idna==3.20"
)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

fetch() {  # $1: pure (py3-none-any wheels, for any Python 3 and platform) or binary; then entries of CORE/EXTRA
  local kind=$1; shift
  local pyver=${ICH_BENCH_PYVER:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
  local specs=() e
  for e in "$@"; do specs+=("${e#* }"); done
  mkdir -p "$WHEELS"
  local where=(--implementation py --abi none --platform any) what="any Python 3, any platform"
  if [ "$kind" = binary ]; then
    where=(--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    what="CPython $pyver, manylinux x86_64"
  fi
  echo "fetching ${#specs[@]} wheels ($what) into $WHEELS"
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$pyver" "${where[@]}" -d "$WHEELS" "${specs[@]}"
}
fetched() { ls -1 "$WHEELS"; echo "$WHEELS: $(ls -1 "$WHEELS" | wc -l) files, $(du -sh "$WHEELS" | cut -f1)"; }

case "${1:-}" in
  --fetch) fetch pure "${CORE[@]}"; fetched; exit 0 ;;
  --fetch-all) fetch pure "${CORE[@]}"; fetch binary "${EXTRA[@]}"; fetched; exit 0 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

T0=$(now)
cd "$ROOT"

# 1. a GPU, or a clear stop
t=$(now)
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null; then
  if [ "${ICH_BENCH_ALLOW_CPU:-0}" = 0 ]; then
    echo "bench/gpu.sh: no CUDA GPU visible to torch ($("$PY" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -1))." >&2
    echo "bench/gpu.sh: this benchmark is for a GPU machine; ICH_BENCH_ALLOW_CPU=1 runs a tiny CPU check of the script." >&2
    exit 3
  fi
  echo "bench/gpu.sh: no GPU; ICH_BENCH_ALLOW_CPU=1, so a tiny CPU run that checks the script (no measurement)."
else
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
T_CHECK=$(secs "$t" "$(now)")

# 2. install what does not import, from the wheel folder only, without dependencies
t=$(now)
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=Agg MPLCONFIGDIR=${MPLCONFIGDIR:-/tmp/ich-bench-mpl} PYTHONUNBUFFERED=1
entries=("${CORE[@]}" "${EXTRA[@]}")
missing=$("$PY" - "${entries[@]}" <<'EOF'
import importlib.util, sys
print(' '.join(e.split()[1].split('==')[0] for e in sys.argv[1:] if importlib.util.find_spec(e.split()[0]) is None))
EOF
)
if [ -n "$missing" ]; then
  echo "installing into $SITE from $WHEELS: $missing"
  absent="" have=" " core=" " wanted=""
  for f in "$WHEELS"/*.whl; do [ -e "$f" ] && f=$(basename "$f") && have="$have$(echo "${f%%-*}" | tr 'A-Z.-' 'a-z__') "; done
  for e in "${CORE[@]}"; do e=${e#* }; core="$core${e%%==*} "; done
  for d in $missing; do
    case "$have" in *" $(echo "$d" | tr 'A-Z.-' 'a-z__') "*) wanted="$wanted $d"; continue ;; esac
    # an EXTRA one may be needed only by a version this image does not have (e.g. narwhals by scikit-learn >= 1.8):
    # left out here; the import check below stops the run if the library needs it after all
    case "$core" in *" $d "*) absent="$absent $d" ;; *) echo "no wheel for $d in $WHEELS; going on without it" ;; esac
  done
  missing=$wanted
  if [ -n "$absent" ]; then
    echo "bench/gpu.sh: no wheel in $WHEELS for:$absent." >&2
    echo "bench/gpu.sh: on a machine with network run 'bash bench/gpu.sh --fetch-all' (or --fetch for the fast.ai packages and pydicom alone) and bring bench/wheels/ here." >&2
    exit 4
  fi
  # by name, not version: whatever the folder holds; --no-deps: pip never looks at torch, timm, numpy or pandas
  # shellcheck disable=SC2086
  if [ -n "$missing" ] && ! timeout 60 "$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
       --target "$SITE" --find-links "$WHEELS" $missing; then
    echo "bench/gpu.sh: pip could not install ($missing) from $WHEELS (wheels for another Python? see ICH_BENCH_PYVER)." >&2
    exit 4
  fi
else
  echo "all needed packages import already; nothing to install"
fi
"$PY" -c 'import ich_nbdev.learner' 2>/dev/null || { echo "bench/gpu.sh: 'import ich_nbdev.learner' fails after the install:" >&2; "$PY" -c 'import ich_nbdev.learner' 2>&1 | tail -3 >&2; exit 4; }
T_INSTALL=$(secs "$t" "$(now)")

# 3. the benchmark, with a hard limit
t=$(now)
rc=0
timeout --kill-after=10 "$LIMIT" "$PY" -u "$HERE/gpu.py" "$@" || rc=$?
T_RUN=$(secs "$t" "$(now)")
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "bench/gpu.sh: the benchmark passed its limit of $LIMIT s (ICH_BENCH_TIMEOUT) and was stopped." >&2; fi

# 4. optional: what each architecture learns from scratch in a fixed training time (bench/from_scratch.py)
T_SCRATCH=skipped
if [ "$rc" = 0 ] && [ -n "${ICH_BENCH_SCRATCH:-}" ]; then
  t=$(now)
  echo "from scratch, on this device: bench/from_scratch.py $ICH_BENCH_SCRATCH"
  # shellcheck disable=SC2086
  timeout --kill-after=10 "${ICH_BENCH_SCRATCH_TIMEOUT:-300}" "$PY" -u "$HERE/from_scratch.py" $ICH_BENCH_SCRATCH || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "bench/gpu.sh: bench/from_scratch.py passed its limit of ${ICH_BENCH_SCRATCH_TIMEOUT:-300} s (ICH_BENCH_SCRATCH_TIMEOUT) and was stopped." >&2; fi
  T_SCRATCH=$(secs "$t" "$(now)")
fi
# 5. several GPUs: ich-train's loop in 1 process and in one per GPU (bench/ddp.py)
T_DDP=skipped
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
DDP=${ICH_BENCH_DDP:-auto}
if [ "$rc" = 0 ] && { [ "$DDP" = 1 ] || { [ "$DDP" = auto ] && [ "$NGPU" -ge 2 ]; }; }; then
  if ! "$PY" -c 'import accelerate' 2>/dev/null; then
    echo "bench/gpu.sh: multi-GPU phase skipped: Hugging Face accelerate does not import (bash bench/gpu.sh --fetch-all brings its wheel)."
  else
    t=$(now)
    ddp_args=()
    if [ "$NGPU" = 0 ]; then ddp_args=(--runs 1x1,2x1 --epochs 2 --n-studies 8 --slices 4 --size 32 --bs 4); fi   # CPU check only
    echo "multi-GPU: bench/ddp.py ${ddp_args[*]} ${ICH_BENCH_DDP_ARGS:-}"
    # shellcheck disable=SC2086
    timeout --kill-after=10 "${ICH_BENCH_DDP_TIMEOUT:-400}" "$PY" -u "$HERE/ddp.py" "${ddp_args[@]}" ${ICH_BENCH_DDP_ARGS:-} || rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "bench/gpu.sh: bench/ddp.py passed its limit of ${ICH_BENCH_DDP_TIMEOUT:-400} s (ICH_BENCH_DDP_TIMEOUT) and was stopped." >&2; fi
    T_DDP=$(secs "$t" "$(now)")
  fi
fi
echo "bench/gpu.sh phases (s): GPU check $T_CHECK, install $T_INSTALL, benchmark $T_RUN, from scratch $T_SCRATCH, multi-GPU $T_DDP; total $(secs "$T0" "$(now)")"
exit "$rc"
