"""`ich-prepare` as a user runs it: real processes, real files, a real `kill -9` part-way through a build, two builds of
one cache at once, and the framing of the head recorded in the cache."""
import fcntl, filecmp, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np, pandas as pd
import pytest

from ich_nbdev.data import dicom_files, find_rsna
from ich_nbdev.synth import synth_sample

_EXE = Path(sys.executable).parent/'ich-prepare'   # the console script `pip install -e .` puts next to python
PREPARE = [str(_EXE) if _EXE.exists() else shutil.which('ich-prepare') or 'ich-prepare']
SIZE = '64'

def prepare(data, out, *args, **kw):
    "Run `ich-prepare` to completion (the entry point's code, in a fresh interpreter)."
    return subprocess.run([*PREPARE, str(data), '--out', str(out), '--size', SIZE, '--quiet', *args],
                          capture_output=True, text=True, timeout=300, **kw)

def journal(out): return len(list((Path(out)/'.build').glob('*-0*.json')))

def prepare_killed(data, out, after_chunks, *args):
    "Start `ich-prepare`, SIGKILL it (and its workers) once `after_chunks` chunks are journalled; return the count then."
    p = subprocess.Popen([*PREPARE, str(data), '--out', str(out), '--size', SIZE, '--quiet', *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.time()
    try:
        while p.poll() is None and journal(out) < after_chunks and time.time() - t0 < 120: time.sleep(0.002)
        alive = p.poll() is None
        os.killpg(p.pid, signal.SIGKILL)
    finally: p.wait()
    assert alive, f"ich-prepare finished before it could be killed (rc {p.returncode}): {p.stderr.read().decode()[-2000:]}"
    return journal(out)

def same_cache(a, b):
    "Byte-for-byte comparison of two caches (arrays, index tables, problems, cache.json), with a readable failure."
    fa, fb = sorted(p.name for p in Path(a).iterdir()), sorted(p.name for p in Path(b).iterdir())
    assert fa == fb, (fa, fb)
    for name in fa:
        if name.endswith('.parquet'): pd.testing.assert_frame_equal(pd.read_parquet(Path(a)/name), pd.read_parquet(Path(b)/name))
        if name.endswith('.npy'): assert np.array_equal(np.load(Path(a)/name, mmap_mode='r'), np.load(Path(b)/name, mmap_mode='r')), name
        assert filecmp.cmp(Path(a)/name, Path(b)/name, shallow=False), f"{name} differs"

@pytest.fixture(scope='module')
def rsna_subset(tmp_path_factory):
    "An RSNA-layout folder with the labels and a few hundred slices of the synthetic sample."
    src = find_rsna(synth_sample())
    dst = tmp_path_factory.mktemp('rsna')
    shutil.copy(src.train_csv, dst/'stage_2_train.csv')
    for part, n in (('train_dir', 500), ('test_dir', 100)):
        folder = dst/getattr(src, part).name
        folder.mkdir()
        for p in dicom_files(getattr(src, part))[:n]: shutil.copy(p, folder/p.name)
    return dst

@pytest.fixture(scope='module')
def reference(rsna_subset, tmp_path_factory):
    "The cache of an uninterrupted build."
    out = tmp_path_factory.mktemp('ref')/'cache'
    r = prepare(rsna_subset, out, '--chunk-size', '4', '--n-workers', '2')
    assert r.returncode == 0, r.stderr
    return out

def test_uninterrupted(reference):
    info = json.loads((reference/'cache.json').read_text())
    assert info['complete'] and info['size'] == 64 and info['channels'] == ['brain', 'subdural', 'bone']
    assert info['splits']['train']['files'] == 500 and info['splits']['test']['files'] == 100
    arr, idx = np.load(reference/'train.npy', mmap_mode='r'), pd.read_parquet(reference/'train.parquet')
    assert arr.shape == (500, 3, 64, 64) and len(idx) == info['splits']['train']['slices'] > 0
    assert {'row', 'image_id', 'patient_id', 'series_id', 'slice_index', 'any'} <= set(idx.columns)
    assert not (reference/'.build').exists()

def test_killed_and_resumed_equals_uninterrupted(rsna_subset, reference, tmp_path):
    out = tmp_path/'cache'
    n1 = prepare_killed(rsna_subset, out, 3, '--chunk-size', '4', '--n-workers', '2')       # kill -9 early
    assert not json.loads((out/'cache.json').read_text())['complete']
    n2 = prepare_killed(rsna_subset, out, n1 + 40, '--chunk-size', '4', '--n-workers', '1')  # resume, kill again
    assert n2 >= n1 + 40
    print(f"killed after {n1} and {n2} of 150 chunks")
    r = prepare(rsna_subset, out, '--chunk-size', '4', '--n-workers', '2')                  # resume to the end
    assert r.returncode == 0, r.stderr
    same_cache(out, reference)

def test_other_settings_refused(reference, rsna_subset):
    r = prepare(rsna_subset, reference, '--chunk-size', '4', '--windows', 'brain,subdural')
    assert r.returncode != 0 and 'other settings' in r.stderr and 'channels' in r.stderr, r.stderr

def test_bad_files_reported(tmp_path):
    src = dicom_files(find_rsna(synth_sample()).test_dir)[:5]
    folder = tmp_path/'mixed'; folder.mkdir()
    for p in src: shutil.copy(p, folder/p.name)
    (folder/'ID_truncated.dcm').write_bytes(src[0].read_bytes()[:2000])
    (folder/'ID_random.dcm').write_bytes(np.random.default_rng(1).bytes(4096))
    (folder/'notes.txt').write_text('patient moved during the scan\n')
    r = prepare(folder, tmp_path/'cache', '--n-workers', '2', '--chunk-size', '2')
    assert r.returncode == 0, r.stderr
    problems = pd.read_csv(tmp_path/'cache'/'problems.csv').set_index('path')['reason']
    assert sorted(problems.index) == ['ID_random.dcm', 'ID_truncated.dcm', 'notes.txt']
    assert 'truncated' in problems['ID_truncated.dcm']
    assert 'not a DICOM' in problems['ID_random.dcm'] and 'not a DICOM' in problems['notes.txt']
    idx = pd.read_parquet(tmp_path/'cache'/'images.parquet')
    assert sorted(idx.path) == sorted(p.name for p in src)
    r = subprocess.run([*PREPARE, str(folder), '--out', str(tmp_path/'cache2'), '--size', SIZE],
                       capture_output=True, text=True, timeout=300)                              # not quiet: the report
    assert r.returncode == 0 and 'ID_truncated.dcm' in r.stdout and 'problems.csv' in r.stdout, r.stdout

def test_empty_folder_is_an_error(tmp_path):
    (tmp_path/'empty').mkdir()
    r = prepare(tmp_path/'empty', tmp_path/'cache')
    assert r.returncode != 0 and 'no files' in r.stderr, r.stderr
    assert not (tmp_path/'cache').exists()

def test_command_installed():
    r = subprocess.run([*PREPARE, '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and '--size' in r.stdout

def start(data, out, log, *args):
    "Start `ich-prepare` (not quiet), its output going to the file `log`."
    with open(log, 'w') as f:
        return subprocess.Popen([*PREPARE, str(data), '--out', str(out), '--size', SIZE, *args], stdout=f, stderr=subprocess.STDOUT)

def test_two_builders_at_once(rsna_subset, reference, tmp_path):
    "Two builds of one cache started together: both succeed, one of them builds, and the cache is the uninterrupted one."
    out, logs = tmp_path/'cache', [tmp_path/'log0', tmp_path/'log1']
    procs = [start(rsna_subset, out, log, '--chunk-size', '4', '--n-workers', '1') for log in logs]
    codes = [p.wait(timeout=600) for p in procs]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    assert sum('cache complete, nothing to do' in t for t in texts) == 1, texts
    same_cache(out, reference)

def test_second_builder_waits(rsna_subset, reference, tmp_path):
    "While another process holds the cache's lock, a builder says once that it waits, writes nothing, then builds."
    out, log = tmp_path/'cache', tmp_path/'log'
    out.mkdir()
    with open(out/'.lock', 'a') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        p = start(rsna_subset, out, log, '--chunk-size', '4', '--n-workers', '2')
        t0 = time.time()
        while 'waiting' not in log.read_text() and p.poll() is None and time.time() - t0 < 120: time.sleep(0.1)
        time.sleep(1)
        assert p.poll() is None, log.read_text()
        assert log.read_text() == f"{out}: another ich-prepare is building this cache; waiting for it\n"
        assert sorted(q.name for q in out.iterdir()) == ['.lock']
    assert p.wait(timeout=600) == 0, log.read_text()
    same_cache(out, reference)

@pytest.fixture(scope='module')
def few(tmp_path_factory):
    "A folder of 12 test slices of the synthetic sample."
    d = tmp_path_factory.mktemp('few')
    for p in dicom_files(find_rsna(synth_sample()).test_dir)[:12]: shutil.copy(p, d/p.name)
    return d

def test_scale_recorded(few, tmp_path):
    for scale, fov in (('fit', '256'), ('fixed', '200')):
        r = prepare(few, tmp_path/scale, '--scale', scale, '--fov-mm', fov)
        assert r.returncode == 0, r.stderr
    fit, fixed = (json.loads((tmp_path/s/'cache.json').read_text()) for s in ('fit', 'fixed'))
    assert (fit['scale'], fit['fov_mm'], fixed['scale'], fixed['fov_mm']) == ('fit', None, 'fixed', 200.0)
    assert not np.array_equal(np.load(tmp_path/'fit'/'images.npy'), np.load(tmp_path/'fixed'/'images.npy'))
    r = prepare(few, tmp_path/'fixed', '--scale', 'fixed', '--fov-mm', '256')
    assert r.returncode == 1 and 'fov_mm=200.0 (asked: 256.0)' in r.stderr and '--scale fixed --fov-mm 200' in r.stderr, r.stderr

def test_cache_from_before_the_scale_was_recorded(few, tmp_path):
    "A cache whose cache.json has no scale was built with 'fit': it is used as it is for --scale fit, refused for fixed."
    r = prepare(few, tmp_path/'c', '--scale', 'fit')
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path/'c'/'cache.json').read_text())
    del info['scale'], info['fov_mm']
    (tmp_path/'c'/'cache.json').write_text(json.dumps(info))
    r = subprocess.run([*PREPARE, str(few), '--out', str(tmp_path/'c'), '--size', SIZE, '--scale', 'fit'], capture_output=True, text=True)
    assert r.returncode == 0 and 'cache complete, nothing to do' in r.stdout, r.stdout + r.stderr
    r = prepare(few, tmp_path/'c', '--scale', 'fixed')
    assert r.returncode == 1 and "scale='fit' (asked: 'fixed')" in r.stderr and 'ask for --scale fit' in r.stderr, r.stderr

def test_cache_of_an_earlier_format(few, tmp_path):
    """A cache of format 1 (HU resized, then windowed) is refused by every reader and by ich-prepare, with what to do;
    `synth_cache` rebuilds its own folder."""
    from ich_nbdev.preprocess import open_cache, CacheError, CACHE_FORMAT
    from ich_nbdev.learner import synth_cache
    r = prepare(few, tmp_path/'c')
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path/'c'/'cache.json').read_text())
    assert info['format'] == CACHE_FORMAT == 2
    (tmp_path/'c'/'cache.json').write_text(json.dumps(dict(info, format=1)))
    with pytest.raises(CacheError, match=r"cache format 1, written by another version of ich_nbdev \(this one reads format 2: "
                                         r"each window applied, then resized; head box cut to its outline\); rebuild it with ich-prepare in a new folder"):
        open_cache(tmp_path/'c', 'images')
    r = prepare(few, tmp_path/'c')
    assert r.returncode == 1 and 'format=1 (asked: 2)' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    own = synth_cache(size=int(SIZE), data_dir=few)
    try:
        info = json.loads((own/'cache.json').read_text())
        (own/'cache.json').write_text(json.dumps(dict(info, format=1)))
        assert synth_cache(size=int(SIZE), data_dir=few) == own
        assert json.loads((own/'cache.json').read_text())['format'] == 2 and len(open_cache(own, 'images')[1]) == 12
    finally: shutil.rmtree(own, ignore_errors=True)
