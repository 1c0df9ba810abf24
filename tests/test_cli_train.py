"""`ich-train` as a user runs it: the installed command in a subprocess, from a scratch folder, with relative paths,
its output going to a file; every bad argument answered in one line before any work."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest, torch

BIN = Path(sys.executable).parent
SUBTYPES = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']
QUICK = ['--arch', 'mobilenetv2_050', '--size', '32', '--epochs', '2']     # a small network at 32 px: seconds per epoch

def ich_train(*args, cwd, log=None, timeout=900):
    "Run the installed `ich-train` in `cwd`; stdout goes to the file `log` when given (not a terminal), else to a pipe."
    cmd = [str(BIN/'ich-train'), *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in ('ICH_PROGRESS', 'ICH_DEBUG')}
    if log is None: return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    with open(log, 'w') as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=cwd, env=env)
    r.stdout = Path(log).read_text()
    return r

@pytest.fixture(scope='module')
def cache():
    "The synthetic sample's 64 px training cache (built once in the ich_nbdev cache folder)."
    from ich_nbdev.learner import synth_cache
    return synth_cache(size=64)

@pytest.fixture
def work(tmp_path, cache):
    "A scratch working folder, outside the repository, where `cache` is a relative path to the training cache."
    (tmp_path/'cache').symlink_to(cache, target_is_directory=True)
    return tmp_path

@pytest.fixture(scope='module')
def few_patients(tmp_path_factory):
    "A labelled cache of 4 patients: too few for the default 5 folds."
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.preprocess import build_cache
    d = tmp_path_factory.mktemp('few')
    build_cache(synth_sample(d/'sample', n_studies=4, n_test_studies=0, slices=3), d/'cache', size=32, progress=False)
    return d/'cache'

@pytest.fixture(scope='module')
def unlabelled(tmp_path_factory, synth_dir):
    "A cache of DICOM files without a label table."
    from ich_nbdev.preprocess import build_cache
    d = tmp_path_factory.mktemp('unl')
    (d/'dicoms').mkdir()
    for p in sorted((synth_dir/'stage_2_train').glob('*.dcm'))[:6]: shutil.copy(p, d/'dicoms')
    build_cache(d/'dicoms', d/'cache', size=32, progress=False)
    return d/'cache'

BAD = [  # (arguments after the cache, words the one-line message must hold)
    (['--arch', 'notanet'], "unknown architecture 'notanet'"),
    (['--arch', 'resnet5O'], "unknown architecture 'resnet5O'; similar timm names: "),
    (['--windows', 'brain,soft_tissue'], 'window(s) soft_tissue not in this cache; it holds brain, subdural, bone'),
    (['--size', '8'], '--size must be at least 16, not 8'),
    (['--epochs', '0'], '--epochs must be at least 1, not 0'),
    (['--bs', '0'], '--bs must be at least 1, not 0'),
    (['--lr', '0'], '--lr must be above 0, not 0.0; the default maximum learning rate is 0.003'),
    (['--lr', '-0.01'], '--lr must be above 0, not -0.01'),
    (['--loss', 'focal'], "--loss must be one of bce, weighted_bce, not 'focal'"),
    (['--opt', 'sgd'], "--opt must be one of radam, adam, not 'sgd'"),
    (['--head', 'mlp'], "--head must be one of fastai, thesis, not 'mlp'"),
    (['--pretrained', 'weights/missing.pth'], '--pretrained weights/missing.pth: no such weights file; give false (from scratch), true'),
    (['--valid-fold', '5'], '--valid-fold must be between 0 and 4, not 5; the 5 folds are numbered 0 to 4'),
    (['--valid-fold', '-1'], '--valid-fold must be between 0 and 4, not -1'),
    (['--n-folds', '3', '--valid-fold', '3'], '--valid-fold must be between 0 and 2, not 3'),
    (['--n-folds', '1'], '--n-folds must be at least 2, not 1; one fold is held out for validation'),
    (['--n-folds', '999'], '--n-folds 999 needs at least 999 patients; this cache holds {n_pat}: use --n-folds {n_pat} or fewer'),
    (['--workers', '-1'], '--workers must be at least 0, not -1'),
    (['--wd', '-0.1'], '--wd must be at least 0, not -0.1; 0 for no weight decay'),
    (['--drop-path', '1'], '--drop-path must be at least 0 and below 1, not 1.0'),
    (['--drop-path', '-0.2'], '--drop-path must be at least 0 and below 1, not -0.2'),
    (['--arch', 'ghostnet_050', '--drop-path', '0.1'], "'ghostnet_050' has no stochastic depth (drop_path); use drop_path=0"),
    (['--ema', '1'], '--ema must be at least 0 and below 1, not 1.0; it is the weight of the old average of the weights'),
    (['--ema', '-0.5'], '--ema must be at least 0 and below 1, not -0.5'),
    (['--rotate', '-10'], '--rotate must be between 0 and 180 (degrees either way; 0: none), not -10.0'),
    (['--rotate', '400'], '--rotate must be between 0 and 180 (degrees either way; 0: none), not 400.0'),
    (['--shift', '0.6'], '--shift must be between 0 and 0.5 (a fraction of the side; 0: none), not 0.6'),
    (['--zoom', '-0.1'], '--zoom must be between 0 and 0.5 (a fraction of the size; 0: none), not -0.1'),
    (['--out', 'a_file.txt'], '--out a_file.txt is a file; give a folder'),
]

@pytest.mark.parametrize('args,words', BAD, ids=[' '.join(a) for a, _ in BAD])
def test_bad_argument(work, cache, args, words):
    (work/'a_file.txt').write_text('not a folder')
    words = words.replace('{n_pat}', str(pd.read_parquet(cache/'train.parquet').patient_id.nunique()))
    r = ich_train('cache', *args, cwd=work)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith('ich-train: ') and words in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr, r.stderr
    assert not (work/'train-out').exists()                              # refused before any work

@pytest.mark.parametrize('what', ['missing', 'not a cache', 'unlabelled', 'few patients'])
def test_bad_cache(work, what, unlabelled, few_patients):
    (work/'empty').mkdir()
    path, words = {'missing': ('nowhere', 'nowhere: no such folder; give a cache built with ich-prepare'),
                   'not a cache': ('empty', 'empty: not a cache (no cache.json); build one with ich-prepare'),
                   'unlabelled': (unlabelled, 'so no labels to learn from'),
                   'few patients': (few_patients, '--n-folds 5 needs at least 5 patients; this cache holds 4: use --n-folds 4 or fewer')}[what]
    r = ich_train(path, cwd=work)
    assert r.returncode == 1 and words in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr

def test_few_patients_train_with_fewer_folds(work, few_patients):
    "The fix the message names works: 4 patients, 4 folds."
    r = ich_train(few_patients, '--arch', 'mobilenetv2_050', '--epochs', '1', '--n-folds', '4', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr
    m = json.loads((work/'train-out'/'metrics.json').read_text())
    assert (m['n_folds'], m['valid_slices'] > 0) == (4, True)

def test_not_a_number(work):
    r = ich_train('cache', '--epochs', 'many', cwd=work)
    assert r.returncode == 2 and "argument --epochs: invalid int value: 'many'" in r.stderr and 'Traceback' not in r.stderr

def history(folder):
    return pd.read_csv(folder/'history.csv').drop(columns='time')

def test_relative_paths_log_lines_and_seed(work):
    "Relative cache and --out from a scratch folder; a log file gets one line per epoch; one seed gives one run."
    r = ich_train('cache', *QUICK, '--seed', '7', '--out', 'm', cwd=work, log=work/'log.txt')
    assert r.returncode == 0, r.stderr
    out = work/'m'
    assert sorted(p.name for p in out.iterdir()) == ['history.csv', 'loss.png', 'metrics.json', 'model.pkl', 'roc.png', 'valid_preds.csv']
    assert not (out/'m').exists()
    assert '\r' not in r.stdout and '\x1b' not in r.stdout                # no bar redraws, no terminal codes
    lines = r.stdout.splitlines()
    epochs = [l for l in lines if l.startswith('epoch ')]
    assert [l.split('  ')[0] for l in epochs] == ['epoch 1/2', 'epoch 2/2'], r.stdout
    for l in epochs:
        for what in ('train loss ', 'valid loss ', 'weighted log loss ', 'AUC(any) '): assert what in l, l
        assert l.endswith(' s')
    assert lines[-1].startswith('ich-train: mobilenetv2_050, ') and lines[-1].endswith('; outputs in m'), lines[-1]
    assert len(lines) == 3, r.stdout                                     # the epochs and the summary, nothing else
    first = history(out)
    # a second run over the first one's output, with the same seed: the same history on the CPU
    r2 = ich_train('cache', *QUICK, '--seed', '7', '--out', 'm', '--quiet', cwd=work)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.splitlines()[-1].startswith('ich-train: ')
    assert not any(l.startswith('epoch ') for l in r2.stdout.splitlines())   # --quiet
    again = history(out)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    # another seed: another run (so the comparison above can fail)
    r3 = ich_train('cache', *QUICK, '--seed', '8', '--out', 'm8', '--quiet', cwd=work)
    assert r3.returncode == 0, r3.stderr
    assert not np.allclose(history(work/'m8').to_numpy(float), first.to_numpy(float))

def test_random_affine(work):
    "--rotate, --shift and --zoom move the training images (another run than without them) and are recorded; off by default."
    r = ich_train('cache', *QUICK, '--epochs', '1', '--seed', '3', '--rotate', '10', '--shift', '0.025', '--zoom', '0.08',
                  '--out', 'aff', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr
    m = json.loads((work/'aff'/'metrics.json').read_text())
    assert (m['rotate'], m['shift'], m['zoom']) == (10.0, 0.025, 0.08)
    r0 = ich_train('cache', *QUICK, '--epochs', '1', '--seed', '3', '--out', 'plain', '--quiet', cwd=work)
    assert r0.returncode == 0, r0.stderr
    assert 'rotate' not in json.loads((work/'plain'/'metrics.json').read_text())
    assert not np.allclose(history(work/'aff').to_numpy(float), history(work/'plain').to_numpy(float))

def test_weighted_bce_trains(work):
    r = ich_train('cache', *QUICK, '--loss', 'weighted_bce', '--epochs', '1', '--out', 'wb', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr
    m = json.loads((work/'wb'/'metrics.json').read_text())
    assert m['loss'] == 'weighted_bce' and np.isfinite(m['weighted_log_loss'])
    h = pd.read_csv(work/'wb'/'history.csv')
    # the weighted loss is the challenge metric of the sigmoid outputs (the metric clips at 1e-7: equal to 4 decimals)
    assert np.allclose(h['valid_loss'], h['wlogloss'], atol=1e-4), h

def test_pretrained_file_and_fine_tuning_defaults(work):
    "A relative weights file; with pretrained weights the residual blocks keep them (no zero-init) and weight decay is 0.01."
    import timm
    (work/'weights').mkdir()
    torch.save(timm.create_model('mobilenetv2_050', pretrained=False).state_dict(), work/'weights'/'mnv2.pth')
    r = ich_train('cache', *QUICK, '--epochs', '1', '--pretrained', 'weights/mnv2.pth', '--out', 'ft', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr
    m = json.loads((work/'ft'/'metrics.json').read_text())
    assert (m['pretrained'], m['zero_init'], m['prior_bias'], m['wd']) == (True, False, True, 0.01)

def test_thesis_settings(work):
    "The thesis' start: Adam, its one-layer head, no prior bias, no zero-init, no weight decay."
    r = ich_train('cache', *QUICK, '--epochs', '1', '--opt', 'adam', '--head', 'thesis', '--no-prior-bias', '--no-zero-init',
                  '--wd', '0', '--out', 'th', '--quiet', cwd=work)
    assert r.returncode == 0, r.stderr
    m = json.loads((work/'th'/'metrics.json').read_text())
    assert (m['opt'], m['head'], m['prior_bias'], m['zero_init'], m['wd']) == ('adam', 'thesis', False, False, 0.0)
    from fastai.learner import load_learner
    learn = load_learner(work/'th'/'model.pkl')
    assert [type(l).__name__ for l in learn.model[1]] == ['AdaptiveAvgPool2d', 'Flatten', 'Linear']

def test_help_names_defaults():
    r = subprocess.run([str(BIN/'ich-train'), '--help'], capture_output=True, text=True, env={**os.environ, 'COLUMNS': '200'})
    assert r.returncode == 0
    for opt in ('--no-prior-bias', '--no-zero-init', '--wd', '--lr', '--lr-find', '--opt', '--head', '--quiet'): assert opt in r.stdout
    assert '0.05 from scratch' in r.stdout and '0.01 with --pretrained' in r.stdout
