"`ich-predict`, run as a user runs it: the installed command in a subprocess, on real DICOM files."
import shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest

BIN = Path(sys.executable).parent
SUBTYPES = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']

def run(*args, ok=True):
    r = subprocess.run([str(BIN/'ich-predict'), *map(str, args)], capture_output=True, text=True, timeout=900)
    if ok: assert r.returncode == 0, f'ich-predict {args} failed:\n{r.stdout}\n{r.stderr}'
    return r

@pytest.fixture(scope='session')
def model():
    "A small model trained on the synthetic sample (trained once, then reused from the ich_nbdev cache folder)."
    from ich_nbdev.inference import demo_model
    return demo_model()

def test_real_samples(model, rsna_samples, tmp_path):
    r = run(model, rsna_samples, '--out', tmp_path/'s.csv', '--quiet')
    from ich_nbdev.inference import check_submission
    sub = check_submission(pd.read_csv(tmp_path/'s.csv'))           # six rows per image, IDs well formed, labels in [0, 1]
    n = len(list(rsna_samples.glob('*.dcm')))
    assert n == 121 and len(sub) == n*6
    assert set(sub.ID.str.rsplit('_', n=1).str[0]) == {p.stem for p in rsna_samples.glob('*.dcm')}
    probs = pd.read_csv(tmp_path/'s_probs.csv')
    assert len(probs) == n and probs.study_id.nunique() == 120 and probs[SUBTYPES].notna().all().all()
    others = sorted(p.name for p in rsna_samples.iterdir() if p.suffix != '.dcm')   # the README: reported, not read
    for name in others: assert f'{name}: not a DICOM file' in r.stdout
    assert f'{n} image(s) from {n + len(others)} file(s)' in r.stdout

def test_rsna_folder_follows_sample_submission(model, synth_dir, tmp_path):
    r = run(model, synth_dir, '--out', tmp_path/'s.csv', '--tta', '--quiet')
    assert 'RSNA folder: predicting stage_2_test/' in r.stdout and 'TTA on' in r.stdout
    sample = pd.read_csv(synth_dir/'stage_2_sample_submission.csv')
    sub = pd.read_csv(tmp_path/'s.csv')
    assert sub.ID.tolist() == sample.ID.tolist()                      # the same IDs, in the same order
    assert sub.Label.between(1e-4, 1 - 1e-4).all()
    assert len(pd.read_csv(tmp_path/'s_probs.csv')) == len(sample)//6

def test_bad_files_and_mixed_studies(model, synth_dir, tmp_path):
    d = tmp_path/'dicoms'; d.mkdir()
    test = sorted((synth_dir/'stage_2_test').glob('*.dcm'))
    from ich_nbdev.data import dicom_meta
    meta, _ = dicom_meta(test, n_workers=0, progress=False)
    studies = meta.groupby('study_id').path.apply(list)
    good = studies.iloc[0][:3] + studies.iloc[1][:2]                  # slices of two studies, mixed in one folder
    for p in good: shutil.copy(p, d)
    b = Path(good[0]).read_bytes()
    (d/'corrupt.dcm').write_bytes(b[:len(b)//2])                       # header fine, pixel data cut short
    (d/'notes.txt').write_text('not a DICOM file')
    import pydicom
    shutil.copy(Path(pydicom.__file__).parent/'data/test_files/MR_small.dcm', d)   # a DICOM, but not CT
    r = run(model, d, '--out', tmp_path/'s.csv', '--n-workers', '2', '--quiet')
    assert '3 file(s) could not be used' in r.stdout
    assert 'corrupt.dcm: truncated' in r.stdout and 'notes.txt: not a DICOM file' in r.stdout
    assert 'MR_small.dcm: not CT' in r.stdout
    sub = pd.read_csv(tmp_path/'s.csv')
    assert sorted(sub.ID.str.rsplit('_', n=1).str[0].unique()) == sorted(Path(p).stem for p in good)
    probs = pd.read_csv(tmp_path/'s_probs.csv')
    assert len(probs) == 5 and probs.study_id.nunique() == 2
    assert sorted(probs.groupby('study_id').slice_index.max()) == [1, 2]
    assert sorted(Path(p).name for p in pd.read_csv(tmp_path/'s_problems.csv').path) == ['MR_small.dcm', 'corrupt.dcm', 'notes.txt']

def test_demanded_images_missing_or_unreadable(model, synth_dir, tmp_path):
    d = tmp_path/'dicoms'; d.mkdir()
    good = sorted((synth_dir/'stage_2_test').glob('*.dcm'))[:4]
    for p in good: shutil.copy(p, d)
    (d/'ID_0badc0de0.dcm').write_bytes(np.random.default_rng(0).bytes(4096))   # named like a slice, not a DICOM
    ids = [p.stem for p in good] + ['ID_0badc0de0', 'ID_0123abcde']            # the last has no file at all
    pd.DataFrame({'ID': [f'{i}_{s}' for i in ids for s in SUBTYPES], 'Label': 0.5}).to_csv(tmp_path/'sample.csv', index=False)
    r = run(model, d, '--out', tmp_path/'s.csv', '--sample-submission', tmp_path/'sample.csv', '--quiet', ok=False)
    assert r.returncode != 0
    assert '2 image(s) demanded by the sample submission have no readable DICOM file' in r.stderr
    assert 'ID_0123abcde' in r.stderr and 'ID_0badc0de0 (not a DICOM file' in r.stderr
    assert not (tmp_path/'s.csv').exists()
    # without the demand, the same folder predicts: the bad file is reported and gets no rows
    run(model, d, '--out', tmp_path/'s.csv', '--quiet')
    assert len(pd.read_csv(tmp_path/'s.csv')) == 4*6

def test_clear_errors(model, tmp_path):
    r = run(tmp_path/'none.pkl', tmp_path, '--out', tmp_path/'s.csv', ok=False)
    assert r.returncode != 0 and 'no such model file' in r.stderr
    r = run(model, tmp_path/'missing', '--out', tmp_path/'s.csv', ok=False)
    assert r.returncode != 0 and 'not a folder' in r.stderr
    r = run(model, tmp_path, '--out', tmp_path/'s.xlsx', ok=False)
    assert r.returncode != 0 and '--out must end in .csv' in r.stderr
    (tmp_path/'a.txt').write_text('x')
    r = run(model, tmp_path, '--out', tmp_path/'s.csv', ok=False)
    assert r.returncode != 0 and 'none of its 1 file(s) is a usable DICOM' in r.stderr
