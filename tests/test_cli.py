"The command-line tools, run as a user runs them: in a subprocess, on real files."
import os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest

BIN = Path(sys.executable).parent

def run(*args, ok=True, **kw):
    r = subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, timeout=600, **kw)
    if ok: assert r.returncode == 0, f'{args} failed:\n{r.stdout}\n{r.stderr}'
    return r

def test_ich_meta_on_real_samples(rsna_samples, tmp_path):
    r = run('ich-meta', rsna_samples, '--out', tmp_path/'m.csv', '--quiet')
    m = pd.read_csv(tmp_path/'m.csv')
    assert len(m) == 121 and m.study_id.nunique() == 120
    variants = m.groupby(['bits_stored', 'pixel_representation', 'intercept']).size().to_dict()
    assert variants == {(16, 1, -1024.0): 71, (12, 0, -1024.0): 49, (12, 0, -1000.0): 1}
    assert '(16, 1, -1024): 71' in r.stdout
    others = sorted(p.name for p in rsna_samples.iterdir() if p.suffix != '.dcm')   # e.g. a README: reported, not read
    assert (f'{len(others)} file(s) could not be used' in r.stdout) if others else ('problems: none' in r.stdout)
    for name in others: assert f'{name}: not a DICOM file' in r.stdout
    run('ich-meta', rsna_samples, '--out', tmp_path/'m.parquet', '--quiet')
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path/'m.parquet'), m, check_dtype=False)

def test_ich_meta_reports_bad_files(tmp_path, synth_dir):
    d = tmp_path/'dicoms'; d.mkdir()
    good = sorted((synth_dir/'stage_2_train').glob('*.dcm'))[:4]
    for p in good: shutil.copy(p, d)
    (d/'notes.txt').write_text('a note among the slices')
    (d/'random.dcm').write_bytes(np.random.default_rng(1).bytes(2048))
    b = good[0].read_bytes(); (d/'truncated.dcm').write_bytes(b[:len(b) - 100])
    r = run('ich-meta', d, '--out', tmp_path/'m.csv', '--quiet')
    assert len(pd.read_csv(tmp_path/'m.csv')) == 4
    assert '3 file(s) could not be used' in r.stdout
    assert 'notes.txt: not a DICOM file' in r.stdout and 'random.dcm: not a DICOM file' in r.stdout
    assert 'truncated.dcm: truncated: pixel data needs' in r.stdout
    probs = pd.read_csv(tmp_path/'m_problems.csv')
    assert sorted(Path(p).name for p in probs.path) == ['notes.txt', 'random.dcm', 'truncated.dcm']

def test_ich_meta_clear_errors(tmp_path):
    r = run('ich-meta', tmp_path, '--out', tmp_path/'m.csv', ok=False)
    assert r.returncode != 0 and 'no files, so no DICOM files' in r.stderr
    (tmp_path/'a.txt').write_text('x')
    r = run('ich-meta', tmp_path, '--out', tmp_path/'m.csv', ok=False)
    assert r.returncode != 0 and 'none of its 1 file(s) is a usable DICOM' in r.stderr
    r = run('ich-meta', tmp_path/'missing', '--out', tmp_path/'m.csv', ok=False)
    assert r.returncode != 0 and 'not a folder' in r.stderr
    r = run('ich-meta', tmp_path, '--out', tmp_path/'m.xlsx', ok=False)
    assert r.returncode != 0 and '--out must end in .csv or .parquet' in r.stderr
