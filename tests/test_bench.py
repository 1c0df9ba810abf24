"The benchmark scripts' own checks: clear messages on bad settings and on a machine without a GPU, and a tiny run."
import os, re, subprocess, sys
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).parents[1]

def run(*args, env=None):
    return subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, **(env or {})})

def test_from_scratch_unknown_arch():
    r = run(sys.executable, 'bench/from_scratch.py', '--archs', 'plain_cnn,mobilenet_v9')
    assert r.returncode != 0
    assert "bench/from_scratch.py: unknown architecture 'mobilenet_v9'" in r.stderr
    assert 'similar timm names' in r.stderr

def test_from_scratch_bad_sample():
    r = run(sys.executable, 'bench/from_scratch.py', '--archs', 'plain_cnn', '--slices', '2')
    assert r.returncode != 0
    assert 'bench/from_scratch.py: slices must be at least 3' in r.stderr

def test_from_scratch_tiny_run():
    "The learner's defaults for training from scratch, on a sample whose epoch has fewer batches than the timing takes."
    # 24 studies of 4 slices: an epoch has fewer batches than the step-rate timing takes, which must not stop it
    r = run(sys.executable, 'bench/from_scratch.py', '--archs', 'plain_cnn', '--budget', '2', '--size', '64',
            '--n-studies', '24', '--slices', '4')
    assert r.returncode == 0, r.stderr
    assert 'output bias at the class log-odds; residual blocks start as the identity; weight decay 0.05' in r.stdout   # the learner's defaults
    m = re.search(r'plain_cnn .* weighted log loss ([\d.]+) \(prior-only ([\d.]+): \d+% (below|above)\)  AUC\(any\) ([\d.]+)', r.stdout)
    assert m, r.stdout
    loss, prior, auc = float(m[1]), float(m[2]), float(m[4])
    assert loss > 0 and prior > 0 and 0 <= auc <= 1

@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message on a machine without a GPU')
def test_gpu_sh_without_gpu():
    r = run('bash', 'bench/gpu.sh', env={'PYTHON': sys.executable, 'ICH_BENCH_ALLOW_CPU': '0'})
    assert r.returncode == 3
    assert 'bench/gpu.sh: no CUDA GPU visible to torch' in r.stderr
    assert 'ICH_BENCH_ALLOW_CPU=1 runs a tiny CPU check' in r.stderr

def test_gpu_py_bad_steps():
    r = run(sys.executable, 'bench/gpu.py', '--steps', '0', env={'ICH_BENCH_ALLOW_CPU': '1'})
    assert r.returncode != 0
    assert '--warmup and --steps must be at least 1' in r.stderr

@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU check of the script; on a GPU run bench/gpu.sh itself')
def test_gpu_sh_cpu_check():
    "bench/gpu.sh end to end on the CPU (ICH_BENCH_ALLOW_CPU=1): every phase runs and the table has a row per run."
    r = run('bash', 'bench/gpu.sh', '--archs', 'mobilenetv2_100', '--baseline', 'mobilenetv2_100', '--size', '32',
            '--bs', '4', '--steps', '2', '--warmup', '1',
            env={'PYTHON': sys.executable, 'ICH_BENCH_ALLOW_CPU': '1', 'ICH_BENCH_TIMEOUT': '300'})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'a tiny CPU run that checks the script (no measurement)' in r.stdout
    rows = re.findall(r'^mobilenetv2_100\s+(fp32 \+ channels_last \(CPU\)|fp32, default layout)\s+([\d.,]+)\s+([\d.,]+)\s+n/a\s+n/a',
                      r.stdout, re.M)
    assert [m[0] for m in rows] == ['fp32 + channels_last (CPU)', 'fp32, default layout'], r.stdout
    assert all(float(v.replace(',', '')) > 0 for m in rows for v in m[1:])
    assert re.search(r'mobilenetv2_100 fp32 \+ channels_last \(CPU\) / fp32, default layout \(baseline\): train [\d.]+x', r.stdout)
    assert re.search(r'bench/gpu.sh phases \(s\): GPU check [\d.]+, install [\d.]+, benchmark [\d.]+, from scratch skipped', r.stdout)

def test_from_scratch_without_the_defaults():
    r = run(sys.executable, 'bench/from_scratch.py', '--archs', 'plain_cnn', '--budget', '1', '--size', '64',
            '--n-studies', '24', '--slices', '4', '--no-prior-bias', '--no-zero-init', '--wd', '0')
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0]
    assert 'no weight decay' in header and 'output bias' not in header and 'identity' not in header, header
