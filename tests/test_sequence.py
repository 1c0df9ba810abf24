"""Neighbouring slices (2.5D) and the sequence stage: series ordering, one-slice series, missing z, two series in one
study, padding, one exported model through `ich-predict`/`ich-triage` in any file order, and the one-line errors of
`ich-train --context` and `ich-train-seq`."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest, torch

BIN = Path(sys.executable).parent
SUBTYPES = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']

def run(tool, *args, cwd):
    "The installed command in `cwd`, output to a pipe (not a terminal)."
    env = {k: v for k, v in os.environ.items() if k not in ('ICH_PROGRESS', 'ICH_DEBUG')}
    return subprocess.run([str(BIN/tool), *map(str, args)], capture_output=True, text=True, timeout=900, cwd=cwd, env=env)

def one_line_error(r, tool, words):
    assert r.returncode != 0, r.stdout
    assert 'Traceback' not in r.stderr, r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f'{tool}: ') and words in lines[0], lines[0]

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "A small synthetic sample (series of 6 slices) and its 32 px cache."
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.preprocess import build_cache
    d = tmp_path_factory.mktemp('seqdata')
    sample = synth_sample(d/'sample', n_studies=16, n_test_studies=3, slices=6, seed=3)
    build_cache(sample, d/'cache', size=32, progress=False)
    return sample, d/'cache'

@pytest.fixture(scope='module')
def models(data, tmp_path_factory):
    "A 2.5D slice model (one epoch) and a sequence stage on it (two epochs)."
    from ich_nbdev.learner import train_model
    from ich_nbdev.sequence import train_seq
    sample, cache = data
    d = tmp_path_factory.mktemp('seqmodels')
    train_model(cache, d/'base', arch='resnet10t', epochs=1, bs=16, n_folds=4, context=3, progress=False)
    train_seq(d/'base', cache, d/'seq', epochs=2, hidden=8, progress=False)
    return d/'base', d/'seq'

def test_neighbours_shuffled_missing_z_one_slice_two_series():
    from ich_nbdev.core import neighbour_positions
    idx = pd.DataFrame(dict(image_id=list('abcdefgh'), study_id=['s'] * 8,
                            series_id=['A'] * 3 + ['B'] * 3 + ['C'] + ['D'],
                            z=[2., 0., 1., np.nan, 5., np.nan, 7., 3.], instance_number=[1, 2, 3, 3, 1, 2, 1, 1]))
    want = {'b': 'bbc', 'c': 'bca', 'a': 'caa',            # series A by z
            'e': 'eef', 'f': 'efd', 'd': 'fdd',            # series B misses z: by InstanceNumber
            'g': 'ggg', 'h': 'hhh'}                         # one-slice series; two series of one study never mix
    for seed in range(3):
        s = idx.sample(frac=1, random_state=seed).reset_index(drop=True)
        nb = neighbour_positions(s, 3)
        got = {i: ''.join(s.image_id.to_numpy()[r]) for i, r in zip(s.image_id, nb)}
        assert got == want

def test_padding_never_changes_a_real_slice():
    from ich_nbdev.sequence import SeqNet
    rng = np.random.default_rng(0)
    for kind in ('gru', 'lstm', 'conv'):
        torch.manual_seed(0)
        net = SeqNet(10, hidden=8, kind=kind)
        torch.nn.init.normal_(net.out.weight)               # not the identity
        a, b = rng.normal(size=(4, 16)).astype(np.float32), rng.normal(size=(11, 16)).astype(np.float32)
        alone = net.predict_series([a])[0]
        np.testing.assert_allclose(alone, net.predict_series([b, a])[1], atol=1e-5)
        np.testing.assert_allclose(alone, net.predict_series([a, b, a[:1]])[0], atol=1e-5)
        assert not np.allclose(alone[:1], net.predict_series([a[:1]])[0], atol=1e-4)   # context does change it

def test_context_batches_read_the_union_once(data):
    from ich_nbdev.learner import cache_dls
    _, cache = data
    dls = cache_dls(cache, context=3, n_folds=4, bs=8)
    rows = dls.train.dataset
    arr = np.load(cache/'train.npy', mmap_mode='r')
    pos = np.arange(min(10, len(rows)))
    direct = np.concatenate([arr[rows.neighbours[pos, j]] for j in range(3)], 1)
    np.testing.assert_array_equal(rows.batch(pos)[0].numpy(), direct)
    assert dls.ich['context'] == 3 and dls.one_batch()[0].shape[1] == 9

def test_model_handle_series(models, data):
    from ich_nbdev.inference import load_model, preprocess_args, IchModel
    from ich_nbdev.preprocess import preprocess_file
    from ich_nbdev.core import number_slices
    from ich_nbdev.data import dicom_meta
    sample, _ = data
    base, seq = models
    for path, kind in ((base, 'context'), (seq, 'sequence')):
        m = load_model(path)
        assert isinstance(m, IchModel) and m.kind == kind and m.context == 3
        meta = number_slices(dicom_meta(sample/'stage_2_test', n_workers=0, progress=False)[0])
        pp = preprocess_args(m)
        x = np.stack([preprocess_file(p, **pp)[0] for p in meta.path])
        s1 = meta.series_id.unique()
        xa, xb = x[(meta.series_id == s1[0]).to_numpy()], x[(meta.series_id == s1[1]).to_numpy()]
        pa = m.predict_series(xa)
        np.testing.assert_allclose(pa, m.predict_many([xb, xa])[1], atol=1e-5)      # two series together
        one = m.predict_series(xa[:1])                                               # a one-slice series
        assert one.shape == (1, 6) and np.isfinite(one).all()

def test_predict_and_triage_any_file_order(models, data, tmp_path):
    "ich-predict and ich-triage with a sequence model: a folder whose file names shuffle the z order gives the same probabilities."
    sample, _ = data
    _, seq = models
    files = sorted((sample/'stage_2_test').glob('*.dcm'))
    (tmp_path/'ordered').mkdir(); (tmp_path/'shuffled').mkdir()
    perm = np.random.default_rng(0).permutation(len(files))
    for i, f in enumerate(files):
        shutil.copy(f, tmp_path/'ordered'/f'{i:04d}.dcm')
        shutil.copy(f, tmp_path/'shuffled'/f'{perm[i]:04d}.dcm')
    (tmp_path/'m').symlink_to(seq, target_is_directory=True)
    probs = {}
    for name in ('ordered', 'shuffled'):
        r = run('ich-predict', 'm', name, '--out', f'{name}.csv', '--n-workers', '0', '--quiet', cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        probs[name] = pd.read_csv(tmp_path/f'{name}_probs.csv').set_index('image_id')[SUBTYPES].sort_index()
    assert len(probs['ordered']) == len(files)
    np.testing.assert_allclose(probs['ordered'].to_numpy(), probs['shuffled'].to_numpy(), atol=1e-5)
    wl = {}
    for name in ('ordered', 'shuffled'):
        r = run('ich-triage', 'm', name, '--out', f'tri-{name}', '--n-workers', '0', cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        wl[name] = pd.read_csv(tmp_path/f'tri-{name}'/'worklist.csv').set_index('study_id').sort_index()
    np.testing.assert_allclose(wl['ordered']['score'].to_numpy(), wl['shuffled']['score'].to_numpy(), atol=1e-5)

@pytest.mark.parametrize('k,words', [('2', '--context must be odd'), ('0', '--context must be at least 1, not 0'),
                                     ('-1', '--context must be at least 1')])
def test_ich_train_bad_context(data, tmp_path, k, words):
    _, cache = data
    r = run('ich-train', cache, '--context', k, '--out', 'o', cwd=tmp_path)
    one_line_error(r, 'ich-train', words)
    assert not (tmp_path/'o').exists()

def test_ich_train_seq_mismatch(models, data, tmp_path):
    from ich_nbdev.preprocess import build_cache
    sample, cache = data
    base, seq = models
    build_cache(sample, tmp_path/'cache64', size=64, progress=False)      # same patients, other slice size
    one_line_error(run('ich-train-seq', base, tmp_path/'cache64', '--out', 'o', cwd=tmp_path), 'ich-train-seq',
                   "slices are 64 px and the model's were 32 px")
    from ich_nbdev.synth import synth_sample
    other = synth_sample(tmp_path/'other', n_studies=6, n_test_studies=0, slices=4, seed=11)
    build_cache(other, tmp_path/'cache-other', size=32, progress=False)
    one_line_error(run('ich-train-seq', base, tmp_path/'cache-other', '--out', 'o', cwd=tmp_path), 'ich-train-seq',
                   'not the cache the base model was trained on')
    one_line_error(run('ich-train-seq', seq, cache, '--out', 'o', cwd=tmp_path), 'ich-train-seq', 'a sequence model already')
    one_line_error(run('ich-train-seq', base, cache, '--kind', 'rnn', cwd=tmp_path), 'ich-train-seq', '--kind')
    one_line_error(run('ich-train-seq', base, cache, '--remedy', 'oof', cwd=tmp_path), 'ich-train-seq', '--remedy')
    one_line_error(run('ich-train-seq', tmp_path/'nothing', cache, cwd=tmp_path), 'ich-train-seq', 'no such model file')
    assert not (tmp_path/'o').exists()

def test_ich_train_seq_runs(models, data, tmp_path):
    "The command from a scratch folder with relative paths; metrics with the keys of ich-train."
    _, cache = data
    base, _ = models
    (tmp_path/'b').symlink_to(base, target_is_directory=True); (tmp_path/'c').symlink_to(cache, target_is_directory=True)
    r = run('ich-train-seq', 'b/model.pkl', 'c', '--out', 'seq', '--epochs', '1', '--hidden', '8', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path/'seq'/'metrics.json').read_text())
    base_m = json.loads((base/'metrics.json').read_text())
    assert {'weighted_log_loss', 'prior_log_loss', 'auc_any'} <= set(m) and m['kind'] == 'sequence'
    assert m['valid_slices'] == base_m['valid_slices']          # the base model's own validation fold


# ------------------------------------------------------------------ every kind through ONNX Runtime (chapter 19)
@pytest.fixture(scope='module')
def onnx_models(models, tmp_path_factory):
    "The 2.5D model and the sequence model, each copied to a folder of its own and exported there by `ich-export`."
    w = tmp_path_factory.mktemp('onnx-kinds')
    for name, src in zip(('base', 'seq'), models):
        shutil.copytree(src, w/name)
        r = run('ich-export', name, cwd=w)
        assert r.returncode == 0 and (w/name/'model.onnx').is_file(), r.stdout + r.stderr
        assert ('2.5D + sequence' if name == 'seq' else '2.5D),') in r.stdout and 'checked against torch' in r.stdout, r.stdout
    return w

@pytest.mark.parametrize('name,kind', [('base', 'context'), ('seq', 'sequence')])
def test_onnx_same_probabilities_as_torch(onnx_models, data, name, kind):
    "The test folder through torch and through the ONNX file: same rows, probabilities within 1e-4 (with and without TTA), any file order."
    from ich_nbdev.inference import load_model, predict_folder
    from ich_nbdev.deploy import load_onnx, predict_dicom
    sample, _ = data
    m, om = load_model(onnx_models/name), load_onnx(onnx_models/name)
    assert m.kind == om.kind == kind and om.context == m.context == 3
    files = sorted((sample/'stage_2_test').glob('*.dcm'))
    shuffled = [files[i] for i in np.random.default_rng(5).permutation(len(files))]
    for tta in (False, True):
        pt, _ = predict_folder(m, files, tta=tta, n_workers=0, progress=False)
        for src, overlap in ((files, True), (shuffled, False)):
            po, probs = predict_dicom(om, src, tta=tta, overlap=overlap)
            assert len(probs) == 0 and po.image_id.tolist() == pt.image_id.tolist() and len(po) == len(files)
            assert np.abs(po[SUBTYPES].to_numpy() - pt[SUBTYPES].to_numpy()).max() <= 1e-4

def test_onnx_sequence_model_reads_whole_series(onnx_models):
    "A sequence model's ONNX file predicts series, never loose batches; `predict_many` pads nothing and keeps series apart."
    from ich_nbdev.deploy import load_onnx, OnnxModelError
    from ich_nbdev.inference import load_model
    om, m = load_onnx(onnx_models/'seq'), load_model(onnx_models/'seq')
    s = om.ich['cache_size']
    xs = [np.random.default_rng(i).integers(0, 256, (n, 3, s, s), dtype=np.uint8) for i, n in enumerate((1, 4, 7))]
    with pytest.raises(OnnxModelError, match='reads whole series'): om.predict(np.zeros((2, 9, s, s), np.uint8))
    with pytest.raises(OnnxModelError, match='of 3 neighbouring slices'): om.predict_series(np.zeros((2, 3, s + 1, s), np.uint8))
    got, want = om.predict_many(xs), m.predict_many(xs)
    assert [g.shape for g in got] == [(1, 6), (4, 6), (7, 6)]
    assert max(np.abs(g - w).max() for g, w in zip(got, want)) <= 1e-4
    assert np.abs(om.predict_series(xs[2]) - got[2]).max() == 0 and om.predict_many([]) == []

def test_onnx_kinds_through_the_commands(onnx_models, data):
    "`ich-predict` and `ich-evaluate` give the same numbers through --runtime onnx and torch; int8 is refused for these kinds."
    sample, _ = data
    w = onnx_models
    for rt in ('torch', 'onnx'):
        r = run('ich-predict', 'seq', sample/'stage_2_test', '--out', f'{rt}.csv', '--runtime', rt, '--quiet', cwd=w)
        assert r.returncode == 0 and ('ONNX Runtime' in r.stdout) == (rt == 'onnx'), r.stdout + r.stderr
        r = run('ich-evaluate', 'seq', sample/'stage_2_train', '--labels', sample/'stage_2_train.csv', '--out', f'ev-{rt}',
                '--runtime', rt, '--n-boot', 50, cwd=w)
        assert r.returncode == 0 and ('runtime: ONNX Runtime' in r.stdout) == (rt == 'onnx'), r.stdout + r.stderr
    a, b = pd.read_csv(w/'torch_probs.csv'), pd.read_csv(w/'onnx_probs.csv')
    assert a.image_id.tolist() == b.image_id.tolist() and np.abs(a[SUBTYPES].to_numpy() - b[SUBTYPES].to_numpy()).max() <= 1e-4
    a, b = pd.read_csv(w/'ev-torch'/'predictions.csv'), pd.read_csv(w/'ev-onnx'/'predictions.csv')
    assert len(a) > 50 and np.abs(a[SUBTYPES].to_numpy() - b[SUBTYPES].to_numpy()).max() <= 1e-4
    one_line_error(run('ich-export', 'seq', '--out', 'seq8.onnx', '--int8', cwd=w), 'ich-export', 'int8 is offered for single-slice models')
    one_line_error(run('ich-evaluate', 'seq', sample/'stage_2_train', '--labels', sample/'stage_2_train.csv', '--runtime', 'jax', cwd=w),
                   'ich-evaluate', '--runtime must be one of auto, torch, onnx')

def test_onnx_sequence_predictor_needs_neither_torch_nor_fastai(onnx_models, data):
    sample, _ = data
    code = ("import sys\nfrom ich_nbdev.deploy import predict_dicom\n"
            f"preds, problems = predict_dicom({str(onnx_models/'seq'/'model.onnx')!r}, {str(sample/'stage_2_test')!r})\n"
            "print(len(preds), len(problems), 'fastai' in sys.modules, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=onnx_models)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(len(list((sample/'stage_2_test').glob('*.dcm')))), '0', 'False', 'False'], r.stdout

def test_holdout_remedy_needs_two_patients_and_predicts_out_of_sample(tmp_path):
    "`_holdout_cv` refuses a validation fold of one patient; each series it predicts comes from a stage that never saw it."
    from ich_nbdev.sequence import _holdout_cv, SeriesRows, SeqSetupError
    rng = np.random.default_rng(0)
    feats = [np.concatenate([rng.normal(size=(4, 8)), np.zeros((4, 6))], 1).astype(np.float32) for _ in range(6)]   # slice logits 0
    ys = [np.full((4, 6), float(i % 2), np.float32) for i in range(6)]
    fit = dict(kind='gru', hidden=8, layers=1, epochs=3, bs=2, lr=3e-2, wd=0.01, remedy='holdout', progress=False)
    with pytest.raises(SeqSetupError, match='at least 2 patients, not 1'):
        _holdout_cv(SeriesRows(feats, ys), np.array(['p'] * 6), 8, tmp_path, fit, 0)
    # two patients, each with the opposite labels of the other: a stage that saw a series would fit it; trained on the
    # other patient's series only, it must predict the other patient's label
    ys = [np.full((4, 6), float(i < 3), np.float32) for i in range(6)]
    p = _holdout_cv(SeriesRows(feats, ys), np.array(['a'] * 3 + ['b'] * 3), 8, tmp_path, dict(fit, epochs=40, lr=0.1), 0)
    assert p.shape == (24, 6)
    assert p[:12].max() < 0.3 and p[12:].min() > 0.7, (p[:12].max(), p[12:].min())

def test_calibrate_remedy(models, data, tmp_path):
    "The exported stage carries the fitted scale and shift (recorded in metrics.json); padding still never changes a real slice."
    from ich_nbdev.inference import load_model
    from ich_nbdev.sequence import train_seq
    base, _ = models
    train_seq(base, data[1], tmp_path/'cal', epochs=2, hidden=8, remedy='calibrate', progress=False)
    seq = tmp_path/'cal'
    m = json.loads((seq/'metrics.json').read_text())
    assert m['remedy'] == 'calibrate' and set(m['calibration']) == set(SUBTYPES)
    net = load_model(seq/'model.pkl').seq
    np.testing.assert_allclose(net.cal_scale.numpy(), [m['calibration'][s][0] for s in SUBTYPES], rtol=1e-6)
    assert not np.allclose(net.cal_shift.numpy(), 0)                 # fitted, not left at the identity
    rng = np.random.default_rng(1)
    a, b = [rng.normal(size=(n, net.norm.normalized_shape[0] + 6)).astype(np.float32) for n in (3, 7)]
    np.testing.assert_allclose(net.predict_series([a])[0], net.predict_series([b, a])[1], atol=1e-5)
    raw = net.predict_series([a], logits=True)[0]
    del net._buffers['cal_scale'], net._buffers['cal_shift']         # as a stage saved before calibration existed
    scale, shift = (np.array([m['calibration'][s][i] for s in SUBTYPES]) for i in (0, 1))
    np.testing.assert_allclose(raw, net.predict_series([a], logits=True)[0] * scale + shift, atol=1e-4)

def test_blend_is_the_default_remap_and_calibrate_averaged(models):
    """The default stage: a blend of the remap stage (training and validation slices, blind to the embeddings) and the
    calibrate stage (fitted scale and shift), their logits averaged; padding-safe; trained."""
    from ich_nbdev.inference import load_model
    from ich_nbdev.sequence import SeqBlend
    base, seq = models
    m, base_m = (json.loads((d/'metrics.json').read_text()) for d in (seq, base))
    assert m['remedy'] == 'blend'
    assert m['train_slices'] == base_m['train_slices'] + base_m['valid_slices'] and m['valid_slices'] == base_m['valid_slices']
    blend = load_model(seq/'model.pkl').seq
    assert isinstance(blend, SeqBlend) and len(blend.nets) == 2
    remap, cal = blend.nets
    assert remap.use_emb is False and remap.proj[0].in_features == 6            # the remap stage reads the six logits
    assert cal.use_emb is True and not np.allclose(cal.cal_shift.numpy(), 0)    # the calibrate stage: fitted, not the identity
    np.testing.assert_allclose(cal.cal_scale.numpy(), [m['calibration'][s][0] for s in SUBTYPES], rtol=1e-6)
    rng, n = np.random.default_rng(2), cal.norm.normalized_shape[0] + 6                      # embedding, then six logits
    a = rng.normal(size=(5, n)).astype(np.float32); a2 = a.copy(); a2[:, :-6] = rng.normal(size=(5, n - 6))
    b = rng.normal(size=(8, n)).astype(np.float32)
    np.testing.assert_allclose(remap.predict_series([a])[0], remap.predict_series([a2])[0], atol=1e-6)   # embeddings ignored
    assert cal.proj[0].in_features == n                                                              # calibrate: embedding and logits
    assert remap.out.weight.abs().max() > 0                                                         # trained: no longer the identity
    both = [n.predict_series([a], logits=True)[0] for n in (remap, cal)]
    np.testing.assert_allclose(blend.predict_series([a], logits=True)[0], (both[0] + both[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(blend.predict_series([a])[0], blend.predict_series([b, a])[1], atol=1e-5)  # padding never matters

def test_stage_saved_before_remap_reads_embeddings():
    "A stage pickled before `use_emb` existed has no such attribute: it reads its embeddings as it always did."
    from ich_nbdev.sequence import SeqNet
    torch.manual_seed(0)
    net = SeqNet(8, hidden=4); torch.nn.init.normal_(net.out.weight)
    del net.__dict__['use_emb']
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 14)).astype(np.float32); a2 = a.copy(); a2[:, :8] = rng.normal(size=(4, 8))   # not a shift: LayerNorm removes those
    assert not np.allclose(net.predict_series([a])[0], net.predict_series([a2])[0])

def test_remap_logits():
    "Ranks kept within each class and label, values the reference's; a class and label with too few reference slices as it was."
    from ich_nbdev.sequence import remap_logits
    rng = np.random.default_rng(4)
    y = np.zeros((40, 2), np.float32); y[:10, 0] = 1; y[:4, 1] = 1
    lt = rng.normal(size=(40, 2)).astype(np.float32) + 5 * y
    ry = np.zeros((21, 2), np.float32); ry[:10, 0] = 1; ry[:3, 1] = 1   # 10 reference positives of class 0, 3 of class 1
    rl = rng.normal(size=(21, 2)).astype(np.float32)
    m = remap_logits(lt, y, rl, ry)
    pos, neg = y[:, 0] == 1, y[:, 0] == 0
    np.testing.assert_allclose(np.sort(m[pos, 0]), np.sort(rl[ry[:, 0] == 1, 0]), atol=1e-6)   # same count: the same values
    assert (np.argsort(m[pos, 0]) == np.argsort(lt[pos, 0])).all() and (np.argsort(m[neg, 0]) == np.argsort(lt[neg, 0])).all()
    assert m[neg, 0].min() >= rl[ry[:, 0] == 0, 0].min() - 1e-6 and m[neg, 0].max() <= rl[ry[:, 0] == 0, 0].max() + 1e-6
    np.testing.assert_array_equal(m[y[:, 1] == 1, 1], lt[y[:, 1] == 1, 1])                    # 3 < min_n: untouched
    assert not np.array_equal(m[y[:, 1] == 0, 1], lt[y[:, 1] == 0, 1])                         # 18 reference negatives: remapped
    np.testing.assert_array_equal(lt, lt.copy())                                               # the input is not changed in place

def test_remap_cross_fit_needs_two_patients_and_keeps_each_patient_out(tmp_path):
    "`_holdout_cv` with the remap rows: one patient refused in one line; a series is never in its own stage's training rows."
    from ich_nbdev.sequence import _holdout_cv, _remapped, SeriesRows, SeqSetupError
    rng = np.random.default_rng(5)
    mk = lambda n, v: (np.concatenate([rng.normal(size=(4, 8)), np.full((4, 6), v)], 1).astype(np.float32), np.full((4, 6), v, np.float32))
    trn = SeriesRows(*map(list, zip(*[mk(4, i % 2) for i in range(6)])))
    val = SeriesRows(*map(list, zip(*[mk(4, i % 2) for i in range(6)])))
    fit = dict(kind='gru', hidden=8, layers=1, epochs=2, bs=2, lr=3e-2, wd=0.01, remedy='remap', progress=False)
    with pytest.raises(SeqSetupError, match="remedy 'remap' needs .* at least 2 patients, not 1"):
        _holdout_cv(val, np.array(['p'] * 6), 8, tmp_path, fit, 0, train_rows=lambda v: _remapped(trn, v), remedy='remap')
    seen = []
    def rows(v):
        seen.append([id(f) for f in v.feats]); r = _remapped(trn, v)
        assert len(r) == len(trn) + len(v) and all(a is b for a, b in zip(r.feats[len(trn):], v.feats))
        return r
    pats = np.array(list('aabbcc'))
    p = _holdout_cv(val, pats, 8, tmp_path, fit, 0, train_rows=rows, remedy='remap')
    assert p.shape == (24, 6) and len(seen) == 3
    from ich_nbdev.sequence import _patient_groups
    g = _patient_groups(pats, 0, 'remap')
    for k, ids in zip(np.unique(g), seen):             # each fit saw the other two patients' series, never those it predicts
        assert sorted(ids) == sorted(id(val.feats[i]) for i in np.flatnonzero(g != k))
def test_calibrate_needs_two_patients():
    from ich_nbdev.sequence import _calibrate, SeqNet, SeriesRows, SeqSetupError
    feats = [np.zeros((4, 14), np.float32) for _ in range(3)]
    with pytest.raises(SeqSetupError, match="remedy 'calibrate' needs .* at least 2 patients, not 1"):
        _calibrate(SeqNet(8, hidden=4), SeriesRows(feats, [np.zeros((4, 6), np.float32)] * 3), np.array(['p'] * 3), 0)

def test_one_patient_validation_fold_refused_in_the_remedys_name(tmp_path):
    "A base model whose validation fold holds one patient: the default (blend) and calibrate are refused in one line, naming the remedy asked for."
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.preprocess import build_cache, open_cache
    from ich_nbdev.learner import train_model
    sample = synth_sample(tmp_path/'s', n_studies=5, n_test_studies=0, slices=4, seed=5)
    build_cache(sample, tmp_path/'c', size=32, progress=False)
    n = open_cache(tmp_path/'c', 'train')[1]['patient_id'].nunique()
    train_model(tmp_path/'c', tmp_path/'b', arch='resnet10t', epochs=1, bs=8, n_folds=n, context=3, progress=False)
    for args, name in (((), 'blend'), (('--remedy', 'calibrate'), 'calibrate')):
        one_line_error(run('ich-train-seq', 'b', 'c', '--out', 'o', *args, cwd=tmp_path), 'ich-train-seq',
                       f"remedy '{name}' needs the base model's validation fold to hold series of at least 2 patients, not 1")
    assert not (tmp_path/'o').exists()
