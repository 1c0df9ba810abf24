"""`ich-evaluate` and `ich-triage` on other sources, as a user runs them (installed commands, relative paths, another working
directory, output that is not a terminal, a second run over the first's output), plus the metrics behind them."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest

BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if k not in ('ICH_PROGRESS', 'ICH_DEBUG')}
SUBTYPES = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']

def run(tool, *args, cwd, ok=True, timeout=900):
    r = subprocess.run([str(BIN/tool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    if ok: assert r.returncode == 0, f'{tool} {args} failed:\n{r.stdout}\n{r.stderr}'
    return r

def one_line_error(r, tool, *fragments):
    err = r.stderr.strip()
    assert r.returncode != 0, r.stdout
    assert 'Traceback' not in r.stderr and '\n' not in err, r.stderr
    assert err.startswith(f'{tool}: '), err
    for f in fragments: assert f in err, (f, err)


@pytest.fixture(scope='module')
def model():
    from ich_nbdev.inference import demo_model
    return demo_model()

@pytest.fixture(scope='module')
def work(tmp_path_factory, model, synth_dir):
    "A working folder: the model as m/model.pkl and a clinical folder with labels as clin/."
    from ich_nbdev.sources import write_clinical_sample
    w = tmp_path_factory.mktemp('evalcwd')
    (w/'m').mkdir(); (w/'m'/'model.pkl').write_bytes(Path(model).read_bytes())
    write_clinical_sample(synth_dir/'stage_2_train', w/'clin', n_studies=3)
    return w


def test_evaluate_cli_clinical(work):
    "Relative paths, another working folder, no terminal; one study has no axial series: reported, the rest scored."
    r = run('ich-evaluate', 'm', 'clin', '--labels', 'clin/labels.csv', '--out', 'ev', '--n-boot', 100, cwd=work)
    # the demo model records what it was trained on (synthetic data); one cached before that was recorded says so
    assert ('trained on: synthetic data' in r.stdout or 'trained on: not recorded' in r.stdout) and 'AUC any' in r.stdout, r.stdout
    m = json.loads((work/'ev'/'metrics.json').read_text())
    assert m['slices'] == 72 and m['studies'] == 3
    pr = pd.read_csv(work/'ev'/'problems.csv')
    assert pr.reason.str.contains('no usable axial series').sum() == 1
    page = (work/'ev'/'report.html').read_text()
    for part in ('Series not read', 'localizer (scout)', 'bone kernel', 'AUC (95 % CI)', 'roc.png'):
        assert part in page, part
    # a second run over the first one's output
    r2 = run('ich-evaluate', 'm', 'clin', '--labels', 'clin/labels.csv', '--out', 'ev', '--n-boot', 100, cwd=work)
    assert json.loads((work/'ev'/'metrics.json').read_text())['slices'] == 72

def test_evaluate_cli_study_labels(work):
    r = run('ich-evaluate', 'm', 'clin', '--labels', 'clin/study_labels.csv', '--out', 'ev_study', '--n-boot', 100, cwd=work)
    t = pd.read_csv(work/'ev_study'/'metrics.csv')
    assert set(t.level) == {'study'} and (t.n == 3).all()

def test_evaluate_cli_refusals(work, tmp_path):
    one_line_error(run('ich-evaluate', 'm', 'clin', cwd=work, ok=False), 'ich-evaluate', '--labels is required')
    one_line_error(run('ich-evaluate', 'm', 'clin', '--labels', 'clin/labels.csv', '--n-boot', 3, cwd=work, ok=False),
                   'ich-evaluate', '--n-boot must be between 50')
    one_line_error(run('ich-evaluate', 'm', 'nowhere', '--labels', 'clin/labels.csv', cwd=work, ok=False), 'ich-evaluate', 'no such file or folder')
    (work/'bad.csv').write_text('image,any\na.png,maybe\n')
    one_line_error(run('ich-evaluate', 'm', 'clin', '--labels', 'bad.csv', cwd=work, ok=False), 'ich-evaluate', 'labels must be 0, 1 or blank')
    (work/'empty').mkdir(exist_ok=True); (work/'empty'/'x.txt').write_text('nothing')
    one_line_error(run('ich-evaluate', 'm', 'empty', '--labels', 'clin/labels.csv', cwd=work, ok=False), 'ich-evaluate', 'no slice could be read')

def test_png_labels_name_missing_files(work, synth_dir):
    "A PNG folder whose label CSV names missing files: the missing ones are reported, the rest scored (the model refuses PNG here)."
    from ich_nbdev.sources import write_png_sample
    png = write_png_sample(synth_dir/'stage_2_train', work/'png', 1)
    lab = pd.read_csv(png/'labels.csv')
    pd.concat([lab, lab.head(2).assign(image_id=['gone_1', 'gone_2'])]).to_csv(png/'labels.csv', index=False)
    r = run('ich-evaluate', 'm', 'png', '--labels', 'png/labels.csv', '--out', 'ev_png', cwd=work, ok=False)
    one_line_error(r, 'ich-evaluate', 'no slice could be read', 'which images saved in the brain window cannot give')

def test_png_brain3_model(work, synth_dir):
    "A brain ×3 model reads the PNG folder; the labels naming missing files are listed as problems."
    from ich_nbdev.learner import cache_dls, ich_learner, synth_cache
    from ich_nbdev.evaluate import evaluate
    learn = ich_learner(cache_dls(synth_cache(size=64), windows='brain,brain,brain', bs=16), prior_bias=False, zero_init=False)
    png = work/'png'
    if not png.exists():
        from ich_nbdev.sources import write_png_sample
        write_png_sample(synth_dir/'stage_2_train', png, 1)
        lab = pd.read_csv(png/'labels.csv')
        pd.concat([lab, lab.head(2).assign(image_id=['gone_1', 'gone_2'])]).to_csv(png/'labels.csv', index=False)
    r = evaluate(learn, png, png/'labels.csv', work/'ev_png3', n_boot=60)
    assert len(r['preds']) == 24
    missing = r['problems'][r['problems'].reason.str.contains('no such slice was read')]
    assert set(missing.path) == {'gone_1', 'gone_2'}

def test_reproduces_training_validation(model, synth_dir, tmp_path):
    "The validation images, evaluated from their DICOM files, give the weighted log loss ich-train wrote (to 1e-3)."
    from ich_nbdev.evaluate import evaluate
    mdir = Path(model).parent
    vp = pd.read_csv(mdir/'valid_preds.csv')
    files = {p.stem: p for p in (synth_dir/'stage_2_train').rglob('*.dcm')}
    lab = vp[['image_id'] + [f'{c}_label' for c in SUBTYPES]].rename(columns={f'{c}_label': c for c in SUBTYPES})
    lab.to_csv(tmp_path/'labels.csv', index=False)
    r = evaluate(str(model), [files[i] for i in vp.image_id], tmp_path/'labels.csv', tmp_path/'ev', n_boot=60)
    m = json.loads((mdir/'metrics.json').read_text())
    assert abs(r['weighted_log_loss'] - m['weighted_log_loss']) < 1e-3
    assert abs(r['slice'].at['any', 'auc'] - m['auc_any']) < 1e-3

def test_labels_formats(tmp_path):
    from ich_nbdev.evaluate import read_eval_labels, EvalLabelError
    (tmp_path/'long.csv').write_text('ID,Label\n' + ''.join(f'ID_a_{c},{int(c == "any")}\n' for c in SUBTYPES) + 'ID_b_any,0\n')
    lab = read_eval_labels(tmp_path/'long.csv')
    assert lab.at['ID_a', 'any'] == 1 and np.isnan(lab.at['ID_b', 'subdural']) and lab.at['ID_b', 'any'] == 0
    (tmp_path/'conflict.csv').write_text('image_id,any\na,1\na,0\n')
    with pytest.raises(EvalLabelError, match='rows disagree'): read_eval_labels(tmp_path/'conflict.csv')
    (tmp_path/'noid.csv').write_text('x,any\na,1\n')
    with pytest.raises(EvalLabelError, match='no id column'): read_eval_labels(tmp_path/'noid.csv')

def test_bootstrap_ci_coverage():
    "Patient-bootstrap 95 % intervals cover the population AUC in a simulation (30 repetitions: at least 24)."
    from ich_nbdev.evaluate import ci_coverage
    cov, truth = ci_coverage(reps=30, n_boot=200, seed=1)
    assert cov >= 0.8, cov
    assert 0.6 < truth < 0.95

def test_bootstrap_resamples_patients():
    "Slices of one patient move together: resampling slices instead would give a narrower interval."
    from ich_nbdev.evaluate import bootstrap_ci, simulate_patients
    y, p, g = simulate_patients(np.random.default_rng(3), 120)
    lo, hi = bootstrap_ci(y, p, g, n_boot=300)
    lo_s, hi_s = bootstrap_ci(y, p, np.arange(len(y)), n_boot=300)
    assert hi - lo > hi_s - lo_s

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A model trained briefly on the synthetic cache by `train_model` (so it records its provenance)."
    from ich_nbdev.learner import synth_cache, train_model
    return train_model(synth_cache(size=64), tmp_path_factory.mktemp('tiny')/'m', size=32, epochs=1, bs=64, progress=False)

def test_provenance_and_warnings(tmp_path, synth_dir, tiny):
    "A model trained on synthetic data records it; applied to inputs that are not synthetic, every study is marked."
    from ich_nbdev.evaluate import input_warnings, model_record
    r = tiny
    pv = r['learn'].ich['provenance']
    assert pv['source'] == 'synthetic' and pv['train_slices'] == r['train_slices'] and pv['valid_metrics']['weighted_log_loss'] > 0
    from ich_nbdev.inference import load_model
    learn = load_model(r['out']/'model.pkl')                      # the exported model carries it
    assert learn.ich['provenance'] == pv
    assert 'trained on: synthetic data' in '\n'.join(model_record(learn))
    slices = pd.DataFrame(dict(study_id=['a', 'b'], spacing_row=[0.5, 0.5]))
    warn, marked = input_warnings(learn, slices, tmp_path)          # tmp_path holds no synth_info.json
    assert any('synthetic phantoms' in w for w in warn) and marked == {'a', 'b'}
    warn, marked = input_warnings(learn, slices, synth_dir/'stage_2_train')
    assert not any('synthetic phantoms' in w for w in warn)

def test_real_rsna_samples_warned(rsna_samples, tmp_path, tiny):
    "The real RSNA slices under a model trained on synthetic data: the triage report carries the warning at its top."
    t = run('ich-triage', tiny['out']/'model.pkl', rsna_samples, '--out', tmp_path/'tri', '--max-studies', 2, cwd=tmp_path)
    assert 'WARNING: this model was trained only on synthetic phantoms' in t.stdout
    page = (tmp_path/'tri'/'index.html').read_text()
    assert page.index('trained only on synthetic phantoms') < page.index('Worklist')
    assert pd.read_csv(tmp_path/'tri'/'worklist.csv').marked.all()

def test_triage_clinical_folder(work):
    "ich-triage on a clinical folder: one entry per study, the soft 5 mm series read, every other series listed with its reason."
    r = run('ich-triage', 'm', 'clin', '--out', 'tri', '--max-studies', 1, cwd=work)
    wl = pd.read_csv(work/'tri'/'worklist.csv')
    assert wl.study_id.is_unique and len(wl) == 3 and (wl.n_slices == 24).all()
    pr = pd.read_csv(work/'tri'/'problems.csv')
    for part in ('not read: localizer', 'not read: bone kernel', 'not read: slice thickness 1.25 mm', 'no usable axial series'):
        assert pr.reason.str.contains(part, regex=False).any(), part
    page = (work/'tri'/'index.html').read_text()
    assert 'not read: bone kernel' in page

def test_warnings_without_spacing_column(tiny):
    "Predictions of the plain RSNA reader carry no pixel spacing: the check skips it instead of failing (it did, in ich-triage)."
    from ich_nbdev.evaluate import input_warnings
    warn, marked = input_warnings(tiny['learn'], pd.DataFrame(dict(study_id=['a'])), '.')
    assert marked == {'a'}
