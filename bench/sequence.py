"""Extra cost of the sequence stage per study against the CNN stage (milliseconds), on this machine's CPU, or on its
GPU when torch sees one (the same command; nothing to change).

    python bench/sequence.py [--arch resnet10t] [--size 128] [--slices 32] [--context 3] [--kind gru]
                             [--hidden 64] [--warm 5] [--threads N]

An untrained slice model (timing does not depend on the weights) is built by `ich_learner` for --context slices of
the synthetic sample's three windows at --size px, and a `SeqNet` of --kind over its embeddings. For one study of
--slices slices (random uint8 images, already preprocessed), it times, as `IchModel.predict_many` runs them:
  cnn        `stack_context` + `slice_outputs` (embeddings and logits of every slice)
  sequence   `SeqNet.predict_series` over the study's series of embeddings
Each figure is the median of --warm runs after one warm-up run. On a GPU every run ends with a synchronisation.

    python bench/sequence.py --compare [--seeds 42,0,1] [--studies 200] [--slices 12] [--epochs 12] [--train-size 64] [--bs 16] [--lr 3e-3]
                             [--ema 0] [--rotate 0] [--shift 0] [--zoom 0] [--seq-epochs 15] [--mimics 4] [--eval-studies 400] [--threads N]

The course's comparison instead: on a synthetic sample of --studies studies of --slices slices (64 px cache) with
--mimics dense foci per study that look like a bleed on one slice (`dense_foci`: only the neighbouring slice tells), for
each seed (folds, initial weights, batch order), a single-slice and a 2.5D (--context) resnet10t trained at
--train-size px with the same recipe and epochs (by default ich-demo's: 12 epochs, batch 16, lr 3e-3, weight decay 0.05,
prior bias, zero-init; --ema 0.99 adds an average of the weights, `WeightEMA`; --rotate, --shift and --zoom a random
affine of each training image, `random_affine`; --studies 300 --epochs 8 takes as many steps as 200 and 12 over more
patients, the setting of the benchmarks appendix's last comparison), then the sequence stage (--kind) on the 2.5D model with each remedy against over-confident
embeddings (blend, the default: the remap and calibrate stages, their logits averaged; remap: the logits of the training
folds remapped onto the validation series' by rank, the stage trained on them and on the validation series, reading
logits only, measured by cross-validation over the validation patients; calibrate: trained on the training folds, then scaled and shifted per class on the base model's validation
series, measured cross-fitted over their patients; holdout: trained on those series and measured by cross-validation
over their patients; noise; none); the weighted log loss and AUC(any) on the validation fold (held-out patients), and the
seconds each stage took. Every model is then also measured on --eval-studies further studies of new patients (a second
synthetic sample, generator seed 43, the same settings; none of its patients is in the first): the validation fold holds
only about 40 series, on which one seed's figures move by about ±10% with the few series that happen to be in it, while
the new patients' 4,800 slices (by default) narrow that to a few percent; `eval_wll` and `vs_single` are measured there
(0 turns it off; then `vs_single` compares validation figures). One line per run, then a table. --threads fixes torch's CPU threads (the figures of one seed
differ a little with their number); a slice model found in the model cache is reused whatever the threads it trained
with, which its line shows (`threads`; empty for a model trained before metrics.json recorded them).
"""
import argparse, os, statistics, sys, time, warnings
from pathlib import Path

def fail(msg): raise SystemExit(f"bench/sequence.py: {msg}")

def slice_recipe(seed:int, epochs:int=12, bs:int=16, lr:float=3e-3, size:int=64, ema:float=0.,
                 rotate:float=0., shift:float=0., zoom:float=0.) -> dict:
    "The slice models' recipe of --compare (ich-demo's by default) for `cached_model`; bench/sequence_oof.py trains its own with it."
    return dict(arch='resnet10t', epochs=epochs, bs=bs, lr=lr, size=size, seed=seed, ema=ema, rotate=rotate, shift=shift, zoom=zoom)

def recipe_problem(a) -> str | None:
    "What is wrong with --ema, --rotate, --shift and --zoom of the slice recipe (None: nothing); bench/sequence_oof.py asks too."
    if not 0 <= a.ema < 1: return f"ema must be at least 0 and below 1, not {a.ema}"
    from ich_nbdev.learner import check_affine
    from ich_nbdev.core import UsageError
    try: check_affine(a.rotate, a.shift, a.zoom, lambda n: '--' + n)
    except UsageError as e: return str(e)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', default='resnet10t'); ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--slices', type=int, default=32); ap.add_argument('--context', type=int, default=3)
    ap.add_argument('--kind', default='gru'); ap.add_argument('--hidden', type=int, default=64)
    ap.add_argument('--warm', type=int, default=5); ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--compare', action='store_true'); ap.add_argument('--seeds', default='42,0,1')
    ap.add_argument('--studies', type=int, default=200); ap.add_argument('--epochs', type=int, default=12)
    ap.add_argument('--seq-epochs', type=int, default=15); ap.add_argument('--out', default=None)
    ap.add_argument('--train-size', type=int, default=64)
    ap.add_argument('--bs', type=int, default=16); ap.add_argument('--lr', type=float, default=3e-3)
    ap.add_argument('--mimics', type=float, default=4.0); ap.add_argument('--eval-studies', type=int, default=400)
    ap.add_argument('--ema', type=float, default=0.)
    ap.add_argument('--rotate', type=float, default=0.); ap.add_argument('--shift', type=float, default=0.)
    ap.add_argument('--zoom', type=float, default=0.)
    a = ap.parse_args()
    if a.compare: return compare(a)
    if a.size < 32: fail(f"size must be at least 32, not {a.size}")
    if a.slices < 1: fail(f"slices must be at least 1, not {a.slices}")
    if a.warm < 1: fail(f"warm must be at least 1, not {a.warm}")
    if a.context < 1 or a.context % 2 == 0: fail(f"context must be odd and at least 1, not {a.context}")
    import numpy as np, torch
    from ich_nbdev.learner import synth_cache, cache_dls, ich_learner, check_arch, LearnerSetupError
    from ich_nbdev.context import stack_context
    from ich_nbdev.inference import slice_outputs
    from ich_nbdev.sequence import SeqNet, SEQ_KINDS
    if a.kind not in SEQ_KINDS: fail(f"unknown kind '{a.kind}'; use one of {', '.join(SEQ_KINDS)}")
    try: check_arch(a.arch)
    except LearnerSetupError as e: fail(str(e))
    if a.threads: torch.set_num_threads(a.threads)
    gpu = torch.cuda.is_available()
    dev = torch.device('cuda' if gpu else 'cpu')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        dls = cache_dls(synth_cache(size=64), size=a.size, context=a.context, device=dev)
        learn = ich_learner(dls, a.arch)
    learn.model.eval().to(dev)
    x = np.random.default_rng(0).integers(0, 256, (a.slices, 3, a.size, a.size), dtype=np.uint8)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    def cnn():
        out = slice_outputs(learn, stack_context(x, a.context)); sync(); return out
    logits, emb = cnn()
    net = SeqNet(emb.shape[1], hidden=a.hidden, kind=a.kind).to(dev)
    feats = [np.concatenate([emb, logits], 1)]
    def seq(): out = net.predict_series(feats); sync(); return out
    def med(fn):
        fn(); ts = []
        for _ in range(a.warm):
            t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
        return statistics.median(ts) * 1000
    t_cnn, t_seq = med(cnn), med(seq)
    where = torch.cuda.get_device_name(0) if gpu else f"CPU, {torch.get_num_threads()} thread(s), {os.cpu_count()} core(s) seen"
    print(f"device: {where}")
    print(f"study: {a.slices} slices, {a.size} px, context {a.context} ({3 * a.context} channels), {a.arch}; "
          f"sequence {a.kind}, hidden {a.hidden}, embedding {emb.shape[1]}; median of {a.warm} runs")
    print(f"cnn stage:      {t_cnn:9.1f} ms per study ({t_cnn / a.slices:.2f} ms per slice)")
    print(f"sequence stage: {t_seq:9.1f} ms per study ({100 * t_seq / t_cnn:.1f}% of the cnn stage)")

def compare(a):
    import json, tempfile
    import pandas as pd
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.learner import synth_cache, cached_model
    from ich_nbdev.sequence import train_seq
    try: seeds = [int(s) for s in a.seeds.split(',')]
    except ValueError: fail(f"seeds must be whole numbers separated by commas, not {a.seeds!r}")
    if a.slices < 3 or a.studies < 10: fail("compare needs at least 10 studies of 3 slices (--slices is also the study size here)")
    if not 0 <= a.mimics <= 50: fail(f"mimics must be between 0 and 50 foci per study, not {a.mimics}")
    if a.threads is not None and a.threads < 1: fail(f"threads must be at least 1, not {a.threads}")
    if a.eval_studies != 0 and a.eval_studies < 10: fail(f"eval-studies must be 0 (off) or at least 10, not {a.eval_studies}")
    if problem := recipe_problem(a): fail(problem)
    if a.threads: import torch; torch.set_num_threads(a.threads)
    out = Path(a.out or tempfile.mkdtemp(prefix='seq-compare-'))
    data = synth_sample(n_studies=a.studies, n_test_studies=20, slices=a.slices, seed=42, mimics=a.mimics)
    cache = synth_cache(size=64, data_dir=data)
    measure = held_out(a, cache) if a.eval_studies else (lambda path: {})
    rows = []
    for seed in seeds:
        recipe = slice_recipe(seed, epochs=a.epochs, bs=a.bs, lr=a.lr, size=a.train_size, ema=a.ema, rotate=a.rotate, shift=a.shift,
                              zoom=a.zoom)
        for name, k in (('single slice', 1), (f'2.5D (K={a.context})', a.context)):
            t = time.time()
            m = cached_model(f'ctx-course-k{k}', cache, **recipe, **({} if k == 1 else dict(context=k)))   # reused when trained
            r = json.loads((m.parent/'metrics.json').read_text())
            (out/f'k{k}-s{seed}').mkdir(parents=True, exist_ok=True)
            if not (out/f'k{k}-s{seed}'/'model.pkl').exists(): (out/f'k{k}-s{seed}'/'model.pkl').symlink_to(m)
            rows.append(dict(seed=seed, model=name, wll=r['weighted_log_loss'], auc_any=r['auc_any'], seconds=r['train_seconds'],
                             train_slices=r['train_slices'], valid_slices=r['valid_slices'],
                             threads=r.get('cpu_threads'), **measure(m)))   # a reused model's, which may differ from --threads
            print(rows[-1], flush=True)
        for remedy in ('blend', 'remap', 'calibrate', 'holdout', 'noise', 'none'):
            r = train_seq(out/f'k{a.context}-s{seed}'/'model.pkl', cache, out/f'seq-{remedy}-s{seed}', kind=a.kind, hidden=a.hidden,
                          epochs=a.seq_epochs, remedy=remedy, seed=seed, progress=False)
            rows.append(dict(seed=seed, model=f'2.5D + sequence ({a.kind}, remedy {remedy})', wll=r['weighted_log_loss'],
                             auc_any=r['auc_any'], seconds=r['train_seconds'] + r['embed_seconds'],
                             train_slices=r['train_slices'], valid_slices=r['valid_slices'],
                             **measure(out/f'seq-{remedy}-s{seed}'/'model.pkl')))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    col = 'eval_wll' if a.eval_studies else 'wll'
    single = df[df.model == 'single slice'].set_index('seed')[col]
    df['vs_single'] = df[col] / df.seed.map(single) - 1
    pd.set_option('display.width', 250)
    print(df.round(4).to_string(index=False))
    cols = ['wll', 'auc_any'] + (['eval_wll', 'eval_auc_any'] if a.eval_studies else []) + ['vs_single', 'seconds']
    print(df.groupby('model', sort=False)[cols].mean().round(4).to_string())

def held_out(a, cache):
    "`measure(model_path)`: the weighted log loss and AUC(any) of a model on --eval-studies studies of new patients."
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.learner import synth_cache
    from ich_nbdev.preprocess import open_cache
    from ich_nbdev.inference import predict_cache
    from ich_nbdev.metrics import metrics_summary
    from ich_nbdev.core import SUBTYPES
    ev = synth_cache(size=64, data_dir=synth_sample(n_studies=a.eval_studies, n_test_studies=1, slices=a.slices, seed=43,
                                                    mimics=a.mimics))
    idx, seen = open_cache(ev, 'train')[1], set(open_cache(cache, 'train')[1]['patient_id'])
    if seen & set(idx['patient_id']): fail("the held-out sample shares patients with the training sample")   # ids drawn apart
    labels = idx.set_index('image_id')[SUBTYPES]
    print(f"held-out patients: {idx['patient_id'].nunique()} in {idx['study_id'].nunique()} studies, {len(idx)} slices", flush=True)
    def measure(path):
        preds = predict_cache(path, ev, split='train')[0]
        m = metrics_summary(labels.loc[preds['image_id']].to_numpy(), preds[SUBTYPES].to_numpy())
        return dict(eval_wll=m['weighted_log_loss'], eval_auc_any=m['auc_any'])
    return measure

if __name__ == '__main__': main()
