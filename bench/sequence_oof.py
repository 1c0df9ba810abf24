"""Out-of-fold features for the sequence stage, measured against the remedies `train_seq` offers: what the challenge's
winners did (one slice model per fold; the sequence stage trained on each slice's features from the model that never
saw it), at its price on this machine.

    python bench/sequence_oof.py [--seeds 42,0,1] [--studies 200] [--slices 12] [--mimics 4] [--eval-studies 400] [--ema 0]
                                 [--rotate 0] [--shift 0] [--zoom 0] [--threads N]

For each seed, on the synthetic sample and recipe of `bench/sequence.py --compare` (resnet10t, 12 epochs at 64 px,
batch 16, lr 3e-3; --ema 0.99 adds its average of the weights and --rotate/--shift/--zoom its random affine of the
training images, as they do for `--compare`; its single-slice and 2.5D
models are taken from the model cache when that command trained them with the same settings):
the base 2.5D model holds fold 0 out; four more 2.5D models are trained with the same recipe, each holding out one of
folds 1-4, so that every training slice has features from a model that never saw it. Then, all measured on the
--eval-studies studies of new patients (the 2.5D model's features there, as at inference):
  single slice, 2.5D          the two slice models
  blend                       `train_seq`'s default stage (remap and calibrate) on the base 2.5D model
  oof logits                  a stage reading logits only (as remap's), trained on every series' out-of-fold logits
  oof embedding + logits      a stage reading both (as calibrate's), trained the same way
  oof logits, 5-model input   the oof-logits stage over each of the five 2.5D models' features, logits averaged:
                              the Kaggle way, and an ensemble of five slice models, no longer one model's cost
  5 x 2.5D ensemble           the five 2.5D models' logits averaged, no sequence stage
with the seconds the four extra slice models took to train (`extra_seconds`, from their metrics.json). One line per figure, then a table of ratios to the single slice.
"""
import argparse, inspect, json, sys, time, warnings
from pathlib import Path

def fail(msg): raise SystemExit(f"bench/sequence_oof.py: {msg}")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', default='42,0,1'); ap.add_argument('--studies', type=int, default=200)
    ap.add_argument('--slices', type=int, default=12); ap.add_argument('--mimics', type=float, default=4.0)
    ap.add_argument('--eval-studies', type=int, default=400); ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--ema', type=float, default=0.)
    ap.add_argument('--rotate', type=float, default=0.); ap.add_argument('--shift', type=float, default=0.)
    ap.add_argument('--zoom', type=float, default=0.)
    a = ap.parse_args()
    try: seeds = [int(s) for s in a.seeds.split(',')]
    except ValueError: fail(f"seeds must be whole numbers separated by commas, not {a.seeds!r}")
    if a.slices < 3 or a.studies < 25: fail("needs at least 25 studies (five folds of patients) of at least 3 slices")
    if a.eval_studies < 10: fail(f"eval-studies must be at least 10, not {a.eval_studies}")
    if a.threads is not None and a.threads < 1: fail(f"threads must be at least 1, not {a.threads}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sequence import slice_recipe, recipe_problem                        # bench/sequence.py, the one recipe of both
    if problem := recipe_problem(a): fail(problem)
    import numpy as np, pandas as pd, torch, tempfile
    if a.threads: torch.set_num_threads(a.threads)
    from fastai.torch_core import set_seed
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.learner import synth_cache, cached_model
    from ich_nbdev.inference import load_model
    from ich_nbdev.data import patient_folds
    from ich_nbdev.metrics import metrics_summary
    from ich_nbdev.core import SUBTYPES
    from ich_nbdev.sequence import series_features, _split_series, _fit_seq, train_seq, SeriesRows
    data = synth_sample(n_studies=a.studies, n_test_studies=20, slices=a.slices, seed=42, mimics=a.mimics)
    cache = synth_cache(size=64, data_dir=data)
    ev = synth_cache(size=64, data_dir=synth_sample(n_studies=a.eval_studies, n_test_studies=1, slices=a.slices, seed=43,
                                                    mimics=a.mimics))
    work = Path(tempfile.mkdtemp(prefix='seq-oof-'))
    sig = lambda l: 1 / (1 + np.exp(-l))
    stage = {k: p.default for k, p in inspect.signature(train_seq).parameters.items()   # the stage train_seq trains by default
             if k in ('kind', 'hidden', 'layers', 'epochs', 'bs', 'lr', 'wd')}
    rows = []
    for seed in seeds:
        recipe = slice_recipe(seed, ema=a.ema, rotate=a.rotate, shift=a.shift, zoom=a.zoom)   # bench/sequence.py --compare's
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            single, base = (load_model(cached_model(f'ctx-course-k{k}', cache, **recipe, **({} if k == 1 else dict(context=k))))
                            for k in (1, 3))
            idx, feats = series_features(base, cache)
            iev, fev = series_features(base, ev)
            fev1 = series_features(single, ev)[1]
            fold = patient_folds(idx, n_folds=5, seed=seed).to_numpy()
            oof, evs, extra = feats.copy(), [fev], 0.
            for j in range(1, 5):
                path = cached_model('oof-k3', cache, **recipe, context=3, valid_fold=j)
                extra += json.loads((path.parent/'metrics.json').read_text())['train_seconds']   # when it was trained
                m = load_model(path)
                oof[fold == j] = series_features(m, cache)[1][fold == j]
                evs.append(series_features(m, ev)[1])
        yev = iev[SUBTYPES].to_numpy(np.float32)
        groups = np.split(np.arange(len(iev)), np.flatnonzero(iev['slice_index'].to_numpy() == 0)[1:])
        def wll(logit): return metrics_summary(yev, sig(logit))
        def add(name, logit, **kw):
            m = wll(logit); rows.append(dict(seed=seed, model=name, eval_wll=m['weighted_log_loss'], eval_auc_any=m['auc_any'], **kw))
            print(rows[-1], flush=True)
        add('single slice', fev1[:, -6:]); add('2.5D (K=3)', fev[:, -6:])
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            train_seq(base, cache, work/f'blend-s{seed}', seed=seed, progress=False)
            blend = load_model(work/f'blend-s{seed}'/'model.pkl').seq
            add('2.5D + sequence, blend', np.concatenate(blend.predict_series([fev[g] for g in groups], logits=True)))
            _, _, _, trn, val = _split_series(idx, oof, base.ich)
            allrows, n_emb = SeriesRows(trn.feats + val.feats, trn.ys + val.ys), feats.shape[1] - 6
            nets = {}
            for name, remedy in (('oof logits', 'remap'), ('oof embedding + logits', 'none')):
                set_seed(seed, reproducible=True)
                nets[name] = _fit_seq(allrows, val, n_emb, work/'l', **stage, remedy=remedy, progress=False)[0].model
                add(f'2.5D + sequence, {name}', np.concatenate(nets[name].predict_series([fev[g] for g in groups], logits=True)),
                    extra_seconds=round(extra))
            five = [np.concatenate(nets['oof logits'].predict_series([f[g] for g in groups], logits=True)) for f in evs]
            add('2.5D + sequence, oof logits, 5-model input', np.mean(five, 0), extra_seconds=round(extra))
            add('5 x 2.5D ensemble', np.mean([f[:, -6:] for f in evs], 0), extra_seconds=round(extra))
    df = pd.DataFrame(rows)
    df['vs_single'] = df.eval_wll / df.seed.map(df[df.model == 'single slice'].set_index('seed').eval_wll) - 1
    pd.set_option('display.width', 250)
    print(df.round(4).to_string(index=False))
    print(df.groupby('model', sort=False)[['eval_wll', 'eval_auc_any', 'vs_single']].mean().round(4).to_string())

if __name__ == '__main__': main()
