"""The whole chain as a user runs it: the installed commands, one after another, from a working directory outside the
repository, with relative paths only and output that is not a terminal. Small, so it takes a few minutes on a CPU."""
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

BIN = Path(sys.executable).parent

def sh(cwd, *args, timeout=900):
    "Run a command by name (this environment's, first on PATH) in `cwd`; fail with its output if it fails."
    env = dict(os.environ, PATH=os.pathsep.join([str(BIN), os.environ.get('PATH', '')]))
    r = subprocess.run(list(map(str, args)), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if r.returncode: pytest.fail(f'`{" ".join(map(str, args))}` failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}', pytrace=False)
    return r

def test_chain_with_relative_paths(tmp_path):
    wd = tmp_path/'work'; wd.mkdir()
    n_train, n_test, slices = 12, 2, 6
    sh(wd, 'ich-synth', 'data', '--n-studies', n_train, '--n-test-studies', n_test, '--slices', slices, '--size', 64,
       '--n-workers', 1, '--quiet')
    test_files = sorted((wd/'data'/'stage_2_test').glob('*.dcm'))
    assert (wd/'data'/'stage_2_train.csv').is_file() and (wd/'data'/'stage_2_sample_submission.csv').is_file()
    assert len(list((wd/'data'/'stage_2_train').glob('*.dcm'))) == n_train * slices and len(test_files) == n_test * slices

    for run in (1, 2):                                          # the second run finds the cache complete and keeps it
        sh(wd, 'ich-prepare', 'data', '--out', 'cache', '--size', 64, '--n-workers', 1, '--quiet')
        assert json.loads((wd/'cache'/'cache.json').read_text())['size'] == 64
        assert len(pd.read_parquet(wd/'cache'/'train.parquet')) == n_train * slices

    sh(wd, 'ich-train', 'cache', '--out', 'model', '--arch', 'resnet10t', '--epochs', 1, '--bs', 16, '--lr', 0.01, '--quiet')
    for f in ('model.pkl', 'history.csv', 'metrics.json', 'valid_preds.csv'): assert (wd/'model'/f).is_file(), f
    assert not (wd/'model'/'model').exists()

    sh(wd, 'ich-predict', 'model/model.pkl', 'data/stage_2_test', '--out', 'sub.csv', '--n-workers', 1, '--quiet')
    sub = pd.read_csv(wd/'sub.csv')
    assert len(sub) == 6 * len(test_files) and sub.Label.between(0, 1).all() and (wd/'sub_probs.csv').is_file()
    assert {i.rsplit('_', 1)[0] for i in sub.ID} == {f.stem for f in test_files}

    sh(wd, 'ich-triage', 'model/model.pkl', 'data/stage_2_test', '--out', 'report', '--n-workers', 1, '--quiet')
    assert (wd/'report'/'index.html').stat().st_size > 1000
    assert len(pd.read_csv(wd/'report'/'worklist.csv')) == n_test

    sh(wd, 'ich-demo', 'demo', '--n-studies', 10, '--n-test-studies', 2, '--slices', 4, '--size', 64, '--image-size', 32,
       '--epochs', 1, '--quiet')
    for f in ('summary.md', 'submission.csv', 'triage/index.html'): assert (wd/'demo'/f).is_file(), f
    assert not (wd/'demo'/'demo').exists()
    assert sorted(p.name for p in wd.iterdir()) == ['cache', 'data', 'demo', 'model', 'report', 'sub.csv', 'sub_problems.csv', 'sub_probs.csv']
