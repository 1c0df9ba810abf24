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

@pytest.mark.parametrize('args,message', [
    (['--epochs', '0'], 'bench/forms.py: --epochs must be at least 1, not 0'),
    (['--train-studies', '3'], 'bench/forms.py: --train-studies must be 0 or at least 10, not 3'),
    (['--studies', '0'], 'bench/forms.py: --studies must be at least 1, not 0'),
])
def test_forms_bad_settings(args, message):
    r = run(sys.executable, 'bench/forms.py', *args)
    assert r.returncode != 0 and message in r.stderr, r.stderr

@pytest.mark.parametrize('args,message', [
    (['--compare', '--mimics', '99'], 'bench/sequence.py: mimics must be between 0 and 50 foci per study, not 99.0'),
    (['--compare', '--threads', '0'], 'bench/sequence.py: threads must be at least 1, not 0'),
    (['--compare', '--seeds', 'a,b'], "bench/sequence.py: seeds must be whole numbers separated by commas, not 'a,b'"),
    (['--compare', '--eval-studies', '5'], 'bench/sequence.py: eval-studies must be 0 (off) or at least 10, not 5'),
    (['--compare', '--ema', '1'], 'bench/sequence.py: ema must be at least 0 and below 1, not 1.0'),
    (['--compare', '--zoom', '0.9'], 'bench/sequence.py: --zoom must be between 0 and 0.5 (a fraction of the size; 0: none), not 0.9'),
])
def test_sequence_compare_bad_settings(args, message):
    r = run(sys.executable, 'bench/sequence.py', *args)
    assert r.returncode != 0 and message in r.stderr, r.stderr

@pytest.mark.parametrize('args,message', [
    (['--seeds', '1;2'], "bench/sequence_oof.py: seeds must be whole numbers separated by commas, not '1;2'"),
    (['--studies', '20'], 'bench/sequence_oof.py: needs at least 25 studies (five folds of patients) of at least 3 slices'),
    (['--eval-studies', '3'], 'bench/sequence_oof.py: eval-studies must be at least 10, not 3'),
    (['--threads', '0'], 'bench/sequence_oof.py: threads must be at least 1, not 0'),
    (['--ema', '-0.5'], 'bench/sequence_oof.py: ema must be at least 0 and below 1, not -0.5'),
    (['--rotate', '200'], 'bench/sequence_oof.py: --rotate must be between 0 and 180 (degrees either way; 0: none), not 200.0'),
])
def test_sequence_oof_bad_settings(args, message):
    r = run(sys.executable, 'bench/sequence_oof.py', *args)
    assert r.returncode != 0 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_forms_real_boxes(tmp_path, synth_dir):
    "--real compares each DICOM slice's head box with its brain-window picture's; a file that is not DICOM is skipped, said."
    for f in sorted((synth_dir/'stage_2_train').glob('*.dcm'))[:6]: (tmp_path/f.name).write_bytes(f.read_bytes())
    (tmp_path/'broken.dcm').write_bytes(b'not a DICOM file')
    r = run(sys.executable, 'bench/forms.py', '--real', tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r'^skipped broken\.dcm: ', r.stdout, re.M), r.stdout
    m = re.search(r'^7 slices, (\d+) without a head box.*\n  the same on (\d+), within 2 mm on every side on (\d+) of (\d+);', r.stdout, re.M)
    assert m, r.stdout
    none, same, near, n = map(int, m.groups())
    assert none == 0 and n == 6 and same <= near <= n and same >= 1   # six synthetic slices: a head in each; boxes mostly agree
    empty = tmp_path/'empty'; empty.mkdir()
    r = run(sys.executable, 'bench/forms.py', '--real', empty)
    assert r.returncode != 0 and f'bench/forms.py: no .dcm files in {empty}' in r.stderr
