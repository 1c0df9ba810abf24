"""`ich-predict`, `ich-triage` and `ich-demo` as a user runs them: the installed commands in subprocesses, started from a
working directory other than the repository, with relative paths, output that is not a terminal, a second run over
the first one's output, every bad argument, and two runs writing the same outputs at once."""
import os, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np, pandas as pd
import pytest

BIN = Path(sys.executable).parent
SUBTYPES = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']
ENV = {k: v for k, v in os.environ.items() if k not in ('ICH_PROGRESS', 'ICH_DEBUG')}


def run(tool, *args, cwd, ok=True, timeout=900, **kw):
    "Run an installed command in `cwd`, its output captured (so not a terminal)."
    r = subprocess.run([str(BIN/tool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env=ENV, **kw)
    if ok: assert r.returncode == 0, f'{tool} {args} failed:\n{r.stdout}\n{r.stderr}'
    return r

def assert_one_line_error(r, tool, *fragments):
    "A refused command: non-zero exit status, and one line on stderr naming the tool and the problem; no traceback."
    err = r.stderr.strip()
    assert r.returncode != 0, f'{tool} succeeded:\n{r.stdout}'
    assert 'Traceback' not in r.stderr and '\n' not in err, f'not one line:\n{r.stderr}'
    assert err.startswith(f'{tool}: '), err
    for f in fragments: assert f in err, f'{f!r} not in {err!r}'


@pytest.fixture(scope='module')
def model():
    from ich_nbdev.inference import demo_model
    return demo_model()

@pytest.fixture(scope='module')
def work(tmp_path_factory, model, synth_dir):
    "A working folder holding a copy of the model (`m/model.pkl`) and two test studies plus a text file (`in/`)."
    from ich_nbdev.data import dicom_meta
    w = tmp_path_factory.mktemp('cwd')
    (w/'m').mkdir(); shutil.copy(model, w/'m'/'model.pkl')
    meta, _ = dicom_meta(synth_dir/'stage_2_test', n_workers=0, progress=False)
    studies = sorted(meta.study_id.unique())[:2]
    (w/'in').mkdir()
    for p in meta.path[meta.study_id.isin(studies)]: shutil.copy(p, w/'in')
    (w/'in'/'notes.txt').write_text('not an image')
    (w/'junk').mkdir(); (w/'junk'/'a.txt').write_text('hello')
    (w/'empty').mkdir()
    (w/'a-file').write_text('in the way')
    (w/'notes.pkl').write_text('not a model')
    good = [f'ID_{p.stem[3:]}' for p in sorted((w/'in').glob('*.dcm'))]
    (w/'no_id.csv').write_text('Image,Label\nx,0.5\n')
    (w/'bad_ids.csv').write_text('ID,Label\nID_abc_stroke,0.5\n')
    (w/'blank.csv').write_text('')
    (w/'x.csv').mkdir()
    return w


# -------------------------------------------------------------------- every bad argument, one line each
PREDICT = 'ich-predict'; TRIAGE = 'ich-triage'; DEMO = 'ich-demo'
BAD = {   # id: (tool, args, fragments of the one-line message)
    'predict-missing-model': (PREDICT, ['m/none.pkl', 'in', '--out', 'OUT/s.csv'], ['no such model file']),
    'predict-foreign-model': (PREDICT, ['notes.pkl', 'in', '--out', 'OUT/s.csv'], ['not a model exported by ich-train']),
    'predict-missing-folder': (PREDICT, ['m/model.pkl', 'nowhere', '--out', 'OUT/s.csv'], ['nowhere: not a folder']),
    'predict-empty-folder': (PREDICT, ['m/model.pkl', 'empty', '--out', 'OUT/s.csv'], ['no files, so no DICOM files']),
    'predict-no-dicom': (PREDICT, ['m/model.pkl', 'junk', '--out', 'OUT/s.csv'], ['none of its 1 file(s) is a usable DICOM']),
    'predict-out-suffix': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.xlsx'], ['--out must end in .csv']),
    'predict-out-unwritable': (PREDICT, ['m/model.pkl', 'in', '--out', 'a-file/OUT/s.csv'], ['a-file is a file, not a folder']),
    'predict-out-is-folder': (PREDICT, ['m/model.pkl', 'in', '--out', 'x.csv'], ['--out x.csv is a folder']),
    'predict-bs-0': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--bs', '0'], ['--bs must be at least 1, not 0']),
    'predict-workers-neg': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--n-workers', '-1'],
                            ['--n-workers must be at least 0, not -1']),
    'predict-clip-0.6': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--clip', '0.6'],
                         ['--clip must be at least 0 and below 0.5', 'not 0.6']),
    'predict-clip-0.5': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--clip', '0.5'], ['--clip must be at least 0 and below 0.5']),
    'predict-clip-neg': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--clip', '-0.1'], ['--clip must be at least 0']),
    'predict-clip-nan': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--clip', 'nan'], ['--clip must be at least 0']),
    'predict-sample-missing': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--sample-submission', 'none.csv'],
                               ['none.csv: no such sample submission file']),
    'predict-sample-no-id': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--sample-submission', 'no_id.csv'],
                             ["no_id.csv: no 'ID' column"]),
    'predict-sample-bad-ids': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--sample-submission', 'bad_ids.csv'],
                               ['not of the form ID_<image>_<subtype>']),
    'predict-sample-blank': (PREDICT, ['m/model.pkl', 'in', '--out', 'OUT/s.csv', '--sample-submission', 'blank.csv'],
                             ['blank.csv: cannot read it as a CSV']),
    'triage-missing-model': (TRIAGE, ['m/none.pkl', 'in', '--out', 'OUT'], ['no such model file']),
    'triage-foreign-model': (TRIAGE, ['notes.pkl', 'in', '--out', 'OUT'], ['not a model exported by ich-train']),
    'triage-missing-folder': (TRIAGE, ['m/model.pkl', 'nowhere', '--out', 'OUT'], ['nowhere: not a folder']),
    'triage-no-dicom': (TRIAGE, ['m/model.pkl', 'junk', '--out', 'OUT'], ['none of its 1 file(s) is a usable DICOM']),
    'triage-out-unwritable': (TRIAGE, ['m/model.pkl', 'in', '--out', 'a-file/OUT'], ['a-file is a file, not a folder']),
    'triage-how': (TRIAGE, ['m/model.pkl', 'in', '--out', 'OUT', '--how', 'median'], ["--how must be one of max, topk, not 'median'"]),
    'triage-k-0': (TRIAGE, ['m/model.pkl', 'in', '--out', 'OUT', '--k', '0'], ['--k must be at least 1, not 0']),
    'triage-top-0': (TRIAGE, ['m/model.pkl', 'in', '--out', 'OUT', '--top-slices', '0'], ['--top-slices must be at least 1, not 0']),
    'triage-target': (TRIAGE, ['m/model.pkl', 'in', '--out', 'OUT', '--target', 'stroke'], ["--target must be one of", "not 'stroke'"]),
    'triage-max-studies': (TRIAGE, ['m/model.pkl', 'in', '--out', 'OUT', '--max-studies', '-1'], ['--max-studies must be at least 0']),
    'triage-bs-0': (TRIAGE, ['m/model.pkl', 'in', '--out', 'OUT', '--bs', '0'], ['--bs must be at least 1, not 0']),
    'triage-workers-neg': (TRIAGE, ['m/model.pkl', 'in', '--out', 'OUT', '--n-workers', '-1'], ['--n-workers must be at least 0']),
    'demo-n-studies-0': (DEMO, ['OUT', '--n-studies', '0'], ['--n-studies must be at least 10, not 0']),
    'demo-n-test-0': (DEMO, ['OUT', '--n-test-studies', '0'], ['--n-test-studies must be at least 1, not 0']),
    'demo-slices-1': (DEMO, ['OUT', '--slices', '1'], ['--slices must be between 3 and 512, not 1']),
    'demo-size-8': (DEMO, ['OUT', '--size', '8'], ['--size must be between 64 and 1024, not 8']),
    'demo-image-size-8': (DEMO, ['OUT', '--image-size', '8'], ['--image-size must be between 32 and 1024, not 8']),
    'demo-epochs-0': (DEMO, ['OUT', '--epochs', '0'], ['--epochs must be between 1 and 1000, not 0']),
    'demo-bs-1': (DEMO, ['OUT', '--bs', '1'], ['--bs must be at least 2, not 1']),
    'demo-lr-0': (DEMO, ['OUT', '--lr', '0'], ['--lr must be between']),
    'demo-lr-nan': (DEMO, ['OUT', '--lr', 'nan'], ['--lr must be between']),
    'demo-wd-neg': (DEMO, ['OUT', '--wd', '-1'], ['--wd must be between 0 and 1']),
    'demo-seed-neg': (DEMO, ['OUT', '--seed', '-1'], ['--seed must be between 0 and']),
    'demo-max-studies': (DEMO, ['OUT', '--max-studies', '-1'], ['--max-studies must be at least 0']),
    'demo-arch-unknown': (DEMO, ['OUT', '--arch', 'resnet_51'], ["unknown architecture 'resnet_51'"]),
    'demo-arch-no-residual': (DEMO, ['OUT', '--arch', 'lcnet_050'], ['no residual blocks', '--no-zero-init']),
    'demo-data-not-rsna': (DEMO, ['OUT', '--data', 'junk'], ['--data junk: no RSNA data found']),
    'demo-data-missing': (DEMO, ['OUT', '--data', 'nowhere'], ['--data nowhere: not a folder']),
    'demo-out-unwritable': (DEMO, ['a-file/OUT'], ['a-file is a file, not a folder']),
}

# refused by the argument checks, before anything is created or loaded (the others once the model or folder is read)
EARLY = {k for k, (tool, args, _) in BAD.items()
         if tool == DEMO or k.startswith(('predict-bs', 'predict-workers', 'predict-clip', 'predict-out'))
         or (tool == TRIAGE and not k.startswith(('triage-missing', 'triage-foreign', 'triage-no-dicom')))}

def _args(case):
    tool, args, _ = BAD[case]
    return tool, [a.replace('OUT', f'out-{case}') for a in args]

@pytest.fixture(scope='module')
def bad_runs(work):
    "Every refused command, run three at a time, each with its own output name."
    with ThreadPoolExecutor(3) as pool:
        futs = {k: pool.submit(run, _args(k)[0], *_args(k)[1], cwd=work, ok=False, timeout=300) for k in BAD}
        return {k: f.result() for k, f in futs.items()}

@pytest.mark.parametrize('case', list(BAD))
def test_bad_argument(case, bad_runs, work):
    tool, args, fragments = BAD[case]
    assert_one_line_error(bad_runs[case], tool, *fragments)
    if case in EARLY:
        assert not (work/f'out-{case}').exists(), f'{case}: the output folder was created before the arguments were checked'
        assert 'ich-predict: model' not in bad_runs[case].stdout              # refused before the model was loaded

def test_help_states_the_clip_range(work):
    r = run(PREDICT, '--help', cwd=work)
    assert '0 <= clip < 0.5' in ' '.join(r.stdout.split())


# -------------------------------------------------------------------- relative paths, logs, second runs
def test_predict_relative_paths_and_second_run(work, tmp_path):
    "From another working directory: relative model, folder and --out; a second run over the first one's output."
    cwd = tmp_path/'here'; cwd.mkdir()
    shutil.copytree(work/'in', cwd/'in'); shutil.copytree(work/'m', cwd/'m')
    r = run(PREDICT, 'm/model.pkl', 'in', '--out', 'out/sub.csv', '--n-workers', '1', cwd=cwd)
    assert '\r' not in r.stdout and '█' not in r.stdout                       # no progress bars in a log ...
    assert 'headers: ' in r.stdout and 'predicted: ' in r.stdout              # ... but one line per stage
    n = len(list((cwd/'in').glob('*.dcm')))
    sub, probs = pd.read_csv(cwd/'out/sub.csv'), pd.read_csv(cwd/'out/sub_probs.csv')
    assert len(sub) == 6 * n and len(probs) == n
    assert [Path(p).name for p in pd.read_csv(cwd/'out/sub_problems.csv').path] == ['notes.txt']
    assert 'in/notes.txt: not a DICOM file' in r.stdout                        # paths as the user gave them
    # second run over the first one's output: the bad file is gone, another run's temporary file sits in the folder
    (cwd/'in'/'notes.txt').unlink()
    (cwd/'out'/'.sub.csv.part').write_text('rows of a run still writing')
    r2 = run(PREDICT, 'm/model.pkl', 'in', '--out', 'out/sub.csv', '--n-workers', '1', '--clip', '0', '--quiet', cwd=cwd)
    assert 'problems: none' in r2.stdout
    assert len(pd.read_csv(cwd/'out/sub_problems.csv')) == 0                  # no stale problems from the first run
    assert (cwd/'out'/'.sub.csv.part').read_text() == 'rows of a run still writing'   # not taken over or moved
    sub2, probs2 = pd.read_csv(cwd/'out/sub.csv'), pd.read_csv(cwd/'out/sub_probs.csv')
    wide = probs2.set_index('image_id')[SUBTYPES].stack()
    wide.index = [f'{i}_{s}' for i, s in wide.index]
    np.testing.assert_allclose(sub2.set_index('ID').Label.loc[wide.index].to_numpy(), wide.to_numpy(), rtol=1e-5)  # --clip 0: raw
    assert sorted(p.name for p in (cwd/'out').iterdir() if not p.name.startswith('.')) == ['sub.csv', 'sub_problems.csv', 'sub_probs.csv']

def test_predict_write_error_is_one_line(work, tmp_path):
    "A file that cannot be written after the work (here a folder in its place): one line, and no submission."
    cwd = tmp_path; shutil.copytree(work/'m', cwd/'m')
    (cwd/'in').mkdir()
    for p in sorted((work/'in').glob('*.dcm'))[:3]: shutil.copy(p, cwd/'in')
    (cwd/'out'/'s_probs.csv').mkdir(parents=True)
    r = run(PREDICT, 'm/model.pkl', 'in', '--out', 'out/s.csv', '--n-workers', '0', '--quiet', cwd=cwd, ok=False)
    assert_one_line_error(r, PREDICT, 's_probs.csv: could not be written (Is a directory)')
    assert not (cwd/'out'/'s.csv').exists() and not (cwd/'out'/'s_problems.csv').exists()
    assert not [p for p in (cwd/'out').iterdir() if p.name.endswith('.part')]

def test_triage_relative_paths_and_second_run(work, tmp_path):
    cwd = tmp_path; shutil.copytree(work/'in', cwd/'in'); shutil.copytree(work/'m', cwd/'m')
    r = run(TRIAGE, 'm', 'in', '--out', 'rep', '--n-workers', '1', '--max-studies', '1', cwd=cwd)
    assert '\r' not in r.stdout and 'open rep/index.html' in r.stdout
    wl = pd.read_csv(cwd/'rep/worklist.csv')
    assert len(wl) == 2 and 'notes.txt' in (cwd/'rep/problems.csv').read_text()
    page = (cwd/'rep/index.html').read_text()
    assert page.count('<article class="study"') == 1 and 'in/notes.txt' in page
    (cwd/'in'/'notes.txt').unlink()
    run(TRIAGE, 'm', 'in', '--out', 'rep', '--n-workers', '1', '--max-studies', '2', '--quiet', cwd=cwd)
    page = (cwd/'rep/index.html').read_text()
    assert page.count('<article class="study"') == 2 and 'notes.txt' not in page
    assert len(pd.read_csv(cwd/'rep/problems.csv')) == 0
    assert sorted(p.name for p in (cwd/'rep').iterdir()) == ['index.html', 'problems.csv', 'worklist.csv']

def test_demo_log_and_second_run(tmp_path):
    "`ich-demo` with its output going to a file: no progress-bar redraws, one line per stage and per epoch; run twice."
    args = ['demo', '--n-studies', '10', '--n-test-studies', '2', '--slices', '3', '--size', '64', '--image-size', '32',
            '--epochs', '2', '--max-studies', '1']
    for attempt in (1, 2):
        with open(tmp_path/f'log{attempt}.txt', 'w') as log:
            r = subprocess.run([str(BIN/DEMO), *args], cwd=tmp_path, stdout=log, stderr=subprocess.PIPE, text=True,
                               timeout=900, env=ENV)
        text = (tmp_path/f'log{attempt}.txt').read_text()
        assert r.returncode == 0, text + r.stderr
        assert '\r' not in text and '█' not in text, text
        lines = text.splitlines()
        for k, stage in enumerate(['data', 'metadata', 'explore', 'cache', 'train', 'predict', 'triage'], 1):
            assert sum(l.startswith(f'[{k}/7] {stage} ...') for l in lines) == 1
            assert sum(l.startswith(f'[{k}/7] {stage} done in') for l in lines) == 1
        assert [l.split(':')[0].strip() for l in lines if l.strip().startswith('epoch ')] == ['epoch 1/2', 'epoch 2/2']
        assert lines[-1].startswith('done in') and lines[-1].endswith('summary: demo/summary.md')
        assert str(tmp_path) not in text                                        # paths as the user gave them
    summary = (tmp_path/'demo'/'summary.md').read_text()
    assert summary.index('| test folder |') < summary.index('| validation fold |')
    assert str(tmp_path) not in summary
    assert len(pd.read_csv(tmp_path/'demo'/'submission.csv')) == 2 * 3 * 6
    assert (tmp_path/'demo'/'triage'/'index.html').exists()


# -------------------------------------------------------------------- two runs into the same --out
def test_concurrent_runs_leave_one_runs_files(work, tmp_path, synth_dir, model):
    """Two predictions that differ (flip TTA on and off) started at once into the same --out: the files left are the
    complete, consistent outputs of one of them. The test holds the outputs' lock until both runs have predicted,
    so that both reach the writing step together, and checks that neither writes while another run holds it."""
    from ich_nbdev.inference import output_lock, predict_folder
    test_dir = synth_dir/'stage_2_test'
    out = tmp_path/'out'/'s.csv'; out.parent.mkdir()
    env = dict(ENV, PYTHONUNBUFFERED='1')
    procs, logs = [], []
    with output_lock(out):
        for i, extra in enumerate([['--tta'], []]):
            logs.append(open(tmp_path/f'run{i}.log', 'w+'))
            procs.append(subprocess.Popen([str(BIN/PREDICT), str(model), str(test_dir), '--out', 'out/s.csv',
                                           '--n-workers', '1', '--quiet', *extra],
                                          cwd=tmp_path, stdout=logs[-1], stderr=subprocess.STDOUT, text=True, env=env))
        deadline = time.time() + 600
        while not all('image(s) from' in (tmp_path/f'run{i}.log').read_text() for i in range(2)):
            assert time.time() < deadline and all(p.poll() is None for p in procs), \
                [(tmp_path/f'run{i}.log').read_text() for i in range(2)]
            time.sleep(0.2)
        time.sleep(2)
        assert not out.exists() and not out.with_name('s_probs.csv').exists()   # both wait for the lock
    for p in procs: assert p.wait(timeout=600) == 0
    for f in logs: f.close()
    sub, probs = pd.read_csv(out), pd.read_csv(out.with_name('s_probs.csv'))
    # the submission holds exactly the probabilities of the table written with it (clipped as --clip 1e-4 does) ...
    long = probs.set_index('image_id')[SUBTYPES].stack()
    long.index = [f'{i}_{s}' for i, s in long.index]
    np.testing.assert_allclose(sub.set_index('ID').Label.loc[long.index].to_numpy(),
                               np.clip(long.to_numpy(), 1e-4, 1 - 1e-4), rtol=1e-5)
    # ... and that table is one run's whole prediction, with or without TTA
    refs = [predict_folder(model, test_dir, tta=tta, n_workers=0, progress=False)[0].set_index('image_id')[SUBTYPES]
            for tta in (True, False)]
    got = probs.set_index('image_id')[SUBTYPES]
    assert not np.allclose(refs[0].to_numpy(), refs[1].loc[refs[0].index].to_numpy(), atol=1e-4)
    matches = [np.allclose(got.to_numpy(), ref.loc[got.index].to_numpy(), atol=1e-5) and len(ref) == len(got) for ref in refs]
    assert sum(matches) == 1, matches
    assert not list(out.parent.glob('.*'))                                      # no temporary or lock file left
