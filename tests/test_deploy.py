"""ONNX export and the torch-free predictor (`ich_nbdev.deploy`), and `ich-export` as a user runs it: the installed
command in a subprocess, from a working directory other than the repository, with relative paths, output that is not
a terminal, a second run over the first one's output, and every bad argument."""
import os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest

BIN = Path(sys.executable).parent
SUBTYPES = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']
ENV = {k: v for k, v in os.environ.items() if k not in ('ICH_PROGRESS', 'ICH_DEBUG')}
EXPORT = 'ich-export'


def run(tool, *args, cwd, ok=True, timeout=900):
    r = subprocess.run([str(BIN/tool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    if ok: assert r.returncode == 0, f'{tool} {args} failed:\n{r.stdout}\n{r.stderr}'
    return r

def assert_one_line_error(r, tool, *fragments):
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
def work(tmp_path_factory, model):
    "A working folder with a copy of the model (`m/model.pkl`), exported once by the command (`m/model.onnx`)."
    w = tmp_path_factory.mktemp('cwd')
    (w/'m').mkdir(); shutil.copy(model, w/'m'/'model.pkl')
    r = run(EXPORT, 'm', cwd=w)
    assert (w/'m'/'model.onnx').is_file() and 'wrote' in r.stdout and 'checked against torch' in r.stdout, r.stdout
    (w/'notes.pkl').write_text('not a model')
    (w/'torch-only').mkdir(); shutil.copy(model, w/'torch-only'/'model.pkl')
    from ich_nbdev.data import dicom_meta
    from ich_nbdev.synth import synth_sample
    meta, _ = dicom_meta(synth_sample()/'stage_2_test', n_workers=0, progress=False)
    (w/'in').mkdir()
    for f in meta.path[meta.study_id.isin(sorted(meta.study_id.unique())[:3])]: shutil.copy(f, w/'in')
    (w/'a-file').write_text('in the way')
    (w/'x.onnx').mkdir()
    return w


# ------------------------------------------------------------------ the resize without torch equals torch's
@pytest.mark.parametrize('shape_in,shape_out', [((512, 512), (200, 180)), ((512, 512), (256, 256)), ((400, 380), (64, 60)),
                                                ((300, 310), (256, 250)), ((100, 90), (256, 240)), ((437, 401), (129, 133)),
                                                ((37, 50), (256, 200)), ((64, 64), (64, 64))])
def test_numpy_resize_equals_torch(shape_in, shape_out):
    import torch, torch.nn.functional as F
    from ich_nbdev.preprocess import _resize_numpy
    img = np.random.default_rng(0).normal(0, 500, shape_in).astype(np.float32)      # HU-like values
    aa = any(o < i/2 for o, i in zip(shape_out, shape_in))
    want = F.interpolate(torch.from_numpy(img)[None, None], size=shape_out, mode='bilinear', align_corners=False,
                         antialias=aa)[0, 0].numpy()
    got = _resize_numpy(img, shape_out, aa)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-2, np.abs(got - want).max()     # float32 rounding of values of ~±2000

def test_preprocess_without_torch_equals_with_torch(synth_dir):
    "`preprocess_file` in a process without torch gives the uint8 channels it gives with torch (to one grey level)."
    from ich_nbdev.preprocess import preprocess_file
    files = sorted((synth_dir/'stage_2_test').glob('*.dcm'))[:4]
    code = ("import sys, numpy as np; from ich_nbdev.preprocess import preprocess_file; "
            f"np.save(sys.argv[1], np.stack([preprocess_file(p, 64)[0] for p in {[str(f) for f in files]!r}])); "
            "print('torch' in sys.modules)")
    out = Path(os.environ.get('TMPDIR', '/tmp'))/f'ich-deploy-{os.getpid()}.npy'
    try:
        r = subprocess.run([sys.executable, '-c', code, str(out)], capture_output=True, text=True, timeout=300)
        assert r.stdout.strip() == 'False', r.stdout + r.stderr
        import torch                                                      # noqa: F401  (this process has torch)
        want = np.stack([preprocess_file(f, 64)[0] for f in files])
        got = np.load(out)
    finally: out.unlink(missing_ok=True)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert (got != want).mean() < 1e-3


# ------------------------------------------------------------------ the ONNX file predicts as the learner does
def test_same_probabilities_torch_and_onnx(work, synth_dir):
    "The synthetic test folder through `predict_folder` (torch) and `predict_dicom` (ONNX): same rows, probabilities to 1e-4."
    from ich_nbdev.inference import load_model, predict_folder, PRED_COLUMNS
    from ich_nbdev.deploy import load_onnx, predict_dicom
    test_dir = synth_dir/'stage_2_test'
    pt, prob_t = predict_folder(load_model(work/'m'), test_dir, bs=32, n_workers=0, progress=False)
    for overlap in (True, False):
        po, prob_o = predict_dicom(load_onnx(work/'m', threads=2), test_dir, bs=32, overlap=overlap)
        assert list(po.columns) == PRED_COLUMNS
        assert po.image_id.tolist() == pt.image_id.tolist() and len(po) > 50
        pd.testing.assert_frame_equal(po.drop(columns=SUBTYPES), pt.drop(columns=SUBTYPES))
        assert np.abs(po[SUBTYPES].to_numpy() - pt[SUBTYPES].to_numpy()).max() <= 1e-4
        assert len(prob_o) == len(prob_t) == 0

def test_flip_tta_and_batches_through_onnx(work):
    from ich_nbdev.inference import load_model
    from ich_nbdev.learner import predict_images
    from ich_nbdev.deploy import load_onnx
    learn, om = load_model(work/'m'), load_onnx(work/'m'/'model.onnx')
    s = om.ich['cache_size']
    x = np.random.default_rng(3).integers(0, 256, (11, 3, s, s), dtype=np.uint8)
    assert np.abs(om.predict(x, bs=4, flip_tta=True) - predict_images(learn, x, bs=4, flip_tta=True)).max() <= 1e-4
    assert om.predict(x[:0]).shape == (0, 6)

def test_onnx_file_holds_the_settings(work):
    "The ONNX file alone says how to preprocess: the learner's size, windows, scale, channels, mean and std."
    from ich_nbdev.inference import load_model, preprocess_args
    from ich_nbdev.deploy import load_onnx
    learn, om = load_model(work/'m'), load_onnx(work/'m')
    for k in ('arch', 'channels', 'window_specs', 'cache_size', 'n_in'): assert om.ich[k] == learn.ich[k], k
    assert om.ich['outputs'] == SUBTYPES and om.ich['kind'] == 'slice'
    assert np.allclose(om.ich['mean'], learn.dls.valid.after_batch.mean.numpy())
    want = preprocess_args(learn)
    got = om.preprocess_args()
    assert {k: got[k] for k in want} == want and got['scale'] == learn.ich.get('scale', 'fit')

def test_predictor_process_imports_neither_torch_nor_fastai(work, synth_dir):
    code = ("import sys\nfrom ich_nbdev.deploy import predict_dicom\n"
            f"preds, problems = predict_dicom({str(work/'m'/'model.onnx')!r}, {str(synth_dir/'stage_2_test')!r})\n"
            "print(len(preds), len(problems), 'fastai' in sys.modules, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=work)
    assert r.returncode == 0, r.stderr
    n, n_bad, fastai, torch = r.stdout.split()
    assert int(n) > 50 and n_bad == '0' and fastai == 'False' and torch == 'False', r.stdout

def test_bad_files_recorded_not_fatal(work, synth_dir, tmp_path):
    from ich_nbdev.deploy import predict_dicom
    files = sorted((synth_dir/'stage_2_test').glob('*.dcm'))[:5]
    for f in files: shutil.copy(f, tmp_path)
    (tmp_path/'ID_cut.dcm').write_bytes(files[0].read_bytes()[:300])
    (tmp_path/'notes.txt').write_text('not an image')
    for overlap in (True, False):
        preds, problems = predict_dicom(work/'m'/'model.onnx', tmp_path, chunk=2, overlap=overlap)
        assert len(preds) == 5 and sorted(preds.path.map(lambda p: Path(p).name)) == sorted(f.name for f in files)
        assert 'ID_cut.dcm' in {Path(p).name for p in problems.path}
        assert problems.reason.str.len().min() > 0

def test_preprocessing_error_in_thread_is_raised(work, synth_dir, monkeypatch):
    "An unexpected error while preprocessing in the second thread reaches the caller; the thread does not hang."
    import ich_nbdev.deploy as deploy
    def boom(*a, **k): raise MemoryError('no memory left')
    monkeypatch.setattr(deploy, '_preprocess_paths', boom)
    with pytest.raises(MemoryError, match='no memory left'):
        deploy.predict_dicom(work/'m'/'model.onnx', synth_dir/'stage_2_test', chunk=1)

def test_foreign_files_refused(work, tmp_path):
    import onnx
    from ich_nbdev.deploy import load_onnx, OnnxModelError
    with pytest.raises(OnnxModelError, match='not an ONNX model'): load_onnx(work/'notes.pkl')
    with pytest.raises(OnnxModelError, match='no such ONNX file'): load_onnx(tmp_path/'none.onnx')
    m = onnx.load(work/'m'/'model.onnx')
    del m.metadata_props[:]
    onnx.save(m, tmp_path/'bare.onnx')
    with pytest.raises(OnnxModelError, match='not one written by ich-export'): load_onnx(tmp_path/'bare.onnx')
    om = load_onnx(work/'m')
    with pytest.raises(OnnxModelError, match='uint8'): om.predict(np.zeros((1, 3, 8, 8), np.uint8))
    with pytest.raises(OnnxModelError, match='uint8 channels'):
        om.predict(np.zeros((1, 3, om.ich['cache_size'], om.ich['cache_size']), np.float32))


# ------------------------------------------------------------------ ich-export as a user runs it
def test_export_out_relative_and_second_run(work):
    sub = work/'sub'; sub.mkdir(exist_ok=True)
    r = run(EXPORT, '../m/model.pkl', '--out', 'exp/a.onnx', cwd=sub)
    assert (sub/'exp'/'a.onnx').is_file() and r.stderr.strip() == '', r.stderr
    first = (sub/'exp'/'a.onnx').read_bytes()
    r = run(EXPORT, '../m/model.pkl', '--out', 'exp/a.onnx', '--quiet', cwd=sub)     # over the first run's file
    assert r.stdout == '' and (sub/'exp'/'a.onnx').read_bytes() == first
    assert not [p for p in (sub/'exp').iterdir() if p.name != 'a.onnx']           # no temporary file left behind

@pytest.mark.parametrize('args,fragments', [
    (['m/none.pkl'], ['no such model file']),
    (['notes.pkl', '--out', 'n.onnx'], ['not a model exported by ich-train']),
    (['m', '--out', 'model.txt'], ['--out must end in .onnx']),
    (['m', '--out', 'x.onnx'], ['is a folder']),
    (['m', '--out', 'a-file/m.onnx'], ['--out', 'is a file, not a folder']),
    (['m', '--opset', '7'], ['--opset']),
])
def test_export_bad_arguments(work, args, fragments):
    assert_one_line_error(run(EXPORT, *args, cwd=work, ok=False), EXPORT, *fragments)


# ------------------------------------------------------------------ ich-predict and ich-triage through ONNX Runtime
def test_predict_runtimes_agree(work):
    "ich-predict through torch and through the ONNX export: the same submission to 1e-4; auto picks ONNX when it is there."
    r_t = run('ich-predict', 'm', 'in', '--out', 'torch/s.csv', '--runtime', 'torch', '--n-workers', '0', cwd=work)
    r_o = run('ich-predict', 'm', 'in', '--out', 'onnx/s.csv', '--runtime', 'onnx', cwd=work)
    r_a = run('ich-predict', 'm/model.pkl', 'in', '--out', 'auto/s.csv', cwd=work)
    assert 'runtime ONNX Runtime' not in r_t.stdout and 'runtime ONNX Runtime' in r_o.stdout and 'runtime ONNX Runtime' in r_a.stdout
    r_pkl = run('ich-predict', 'torch-only', 'in', '--out', 'auto2/s.csv', '--n-workers', '0', cwd=work)   # no export: torch
    assert 'runtime ONNX Runtime' not in r_pkl.stdout
    subs = [pd.read_csv(work/d/'s.csv') for d in ('torch', 'onnx', 'auto', 'auto2')]
    for s in subs[1:]:
        assert s.ID.tolist() == subs[0].ID.tolist() and len(s) > 100
        assert np.abs(s.Label.to_numpy() - subs[0].Label.to_numpy()).max() <= 1e-4

def test_predict_onnx_file_directly(work):
    r = run('ich-predict', 'm/model.onnx', 'in', '--out', 'direct/s.csv', cwd=work)
    assert 'runtime ONNX Runtime' in r.stdout and (work/'direct'/'s.csv').is_file()

@pytest.mark.parametrize('tool,args,fragments', [
    ('ich-predict', ['m', 'in', '--runtime', 'tensorrt', '--out', 'o1/s.csv'], ['--runtime', 'tensorrt']),
    ('ich-predict', ['torch-only', 'in', '--runtime', 'onnx', '--out', 'o2/s.csv'], ['no such ONNX file', 'ich-export']),
    ('ich-predict', ['m/model.onnx', 'in', '--runtime', 'torch', '--out', 'o3/s.csv'], ['an ONNX file', 'model.pkl']),
    ('ich-triage', ['m', 'in', '--runtime', 'tensorrt', '--out', 'o4'], ['--runtime', 'tensorrt']),
])
def test_runtime_bad_arguments(work, tool, args, fragments):
    assert_one_line_error(run(tool, *args, cwd=work, ok=False), tool, *fragments)

def test_triage_runtimes_agree(work):
    "ich-triage ranks the studies alike through either runtime; the heatmaps are drawn from the learner in both."
    run('ich-triage', 'm', 'in', '--out', 'tri-torch', '--runtime', 'torch', '--n-workers', '0', '--quiet', cwd=work)
    run('ich-triage', 'm', 'in', '--out', 'tri-onnx', '--runtime', 'onnx', '--quiet', cwd=work)
    wt, wo = (pd.read_csv(work/d/'worklist.csv') for d in ('tri-torch', 'tri-onnx'))
    assert wt.study_id.tolist() == wo.study_id.tolist() and len(wt) == 3
    assert np.abs(wt.score.to_numpy() - wo.score.to_numpy()).max() <= 1e-4
    for d in ('tri-torch', 'tri-onnx'): assert (work/d/'index.html').read_text().count('data:image/png') >= 6


# ------------------------------------------------------------------ int8, with its accuracy check
def test_export_int8_with_check(work):
    r = run(EXPORT, 'm', '--out', 'q/model.onnx', '--int8', cwd=work)
    assert (work/'q'/'model.int8.onnx').is_file(), r.stdout
    lines = r.stdout.splitlines()
    rows = {l.split()[0]: l.split()[1:] for l in lines if l.split() and l.split()[0] in ('fp32', 'int8')}
    assert set(rows) == {'fp32', 'int8'} and 'weighted_log_loss' in r.stdout and 'auc_any' in r.stdout, r.stdout
    for v in rows.values(): assert all(np.isfinite(float(x)) for x in v)
    from ich_nbdev.deploy import load_onnx
    fp, q = load_onnx(work/'q'/'model.onnx'), load_onnx(work/'q'/'model.int8.onnx')
    assert q.ich['int8'].startswith('static') and {k: v for k, v in q.ich.items() if k != 'int8'} == fp.ich
    s = fp.ich['cache_size']
    x = np.random.default_rng(5).integers(0, 256, (8, 3, s, s), dtype=np.uint8)
    assert np.abs(q.predict(x) - fp.predict(x)).mean() < 0.05          # close, not equal: that is what the check reports

def test_export_int8_without_training_cache(work, tmp_path):
    "int8 needs the training cache (calibration and the accuracy check): without it, one line, and no int8 file."
    from ich_nbdev.inference import load_model
    learn = load_model(work/'m', cpu=True).learn     # the fastai learner inside the loaded model
    learn.ich = dict(learn.ich, cache=str(tmp_path/'gone'))
    (work/'nocache').mkdir(exist_ok=True)
    learn.export(work/'nocache'/'model.pkl')
    r = run(EXPORT, 'nocache', '--int8', cwd=work, ok=False)
    assert_one_line_error(r, EXPORT, "the model's training cache is not here")
    assert not (work/'nocache'/'model.int8.onnx').exists() and not (work/'nocache'/'model.onnx').exists()


# ------------------------------------------------------------------ the benchmark runs (tiny)
def test_latency_bench_tiny():
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, 'bench/latency.py', '--archs', 'resnet10t', '--size', '64', '--slices', '6',
                        '--warm', '1', '--int8'], capture_output=True, text=True, timeout=900, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'load average' in r.stdout and 'speed-up' in r.stdout and 'static int8' in r.stdout, r.stdout
    row = next(l for l in r.stdout.splitlines() if l.startswith('synthetic 64 px') and 'resnet10t' in l)
    diff = float(row.split('|')[-1])
    assert diff <= 1e-4, row                                   # torch and ONNX gave the same probabilities

def test_latency_bench_bad_settings():
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, 'bench/latency.py', '--runtimes', 'tensorrt'], capture_output=True, text=True,
                       timeout=300, cwd=root)
    assert r.returncode != 0 and 'bench/latency.py: --runtimes takes torch, onnx' in r.stderr
