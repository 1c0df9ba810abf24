"""Seconds from a study folder of 32 DICOM slices to its study-level triage score, on the CPU, per architecture.

    python bench/latency.py [--archs mobilenetv2_100,efficientnet_b2,resnet50] [--size 256] [--slices 32]
                            [--warm 3] [--threads 2] [--n-workers N]

For each architecture, an untrained network (latency does not depend on the weights) is built by `ich_learner` on
a small synthetic cache at --size, exported, and loaded back with `load_model`, as `ich-predict` loads a model.
Then, for each study folder, the whole path is timed as `ich-predict` runs it — header reading (`dicom_meta`),
decoding + preprocessing of every slice (`preprocess_files`, the training cache's own `preprocess_file`), inference
(`predict_images`), and the study score (max P(any) over the slices, or the study score of `ich_nbdev.triage` when
that module has one):
  synthetic  --slices slices of one synthetic study written at --size px (the model's input size: no resizing);
  real       --slices of the real 512 x 512 RSNA slices (../shared/data/rsna-samples or $ICH_RSNA_SAMPLES),
             copied into one folder, when present; they come from different studies, and count as one here.
`first` is the first call after loading the model; `warm` is the median of --warm later calls. The step columns
are medians of separately timed warm runs of each step. The figures are printed last.
"""
import os, argparse, shutil, statistics, sys, tempfile, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get('ICH_RSNA_SAMPLES', ROOT.parent/'shared'/'data'/'rsna-samples'))

def timed(fn, *args, **kw):
    "(wall seconds, CPU seconds of this process and its children, result)."
    t, c = time.perf_counter(), _cpu()
    res = fn(*args, **kw)
    return time.perf_counter() - t, _cpu() - c, res

def _cpu():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system

def study_score_fn():
    "The study-level score: `ich_nbdev.triage`'s when it has one, else max P(any) over each study's slices."
    try:
        import ich_nbdev.triage as triage
        for name in ('study_scores', 'study_score'):
            if callable(getattr(triage, name, None)): return f'ich_nbdev.triage.{name}', getattr(triage, name)
    except ImportError: pass
    return 'max P(any) per study', lambda preds: preds.groupby('study_id')['any'].max()

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--archs', default='mobilenetv2_100,efficientnet_b2,resnet50', help='timm architectures')
    ap.add_argument('--size', type=int, default=256, help='model input size, px')
    ap.add_argument('--slices', type=int, default=32, help='slices in the study folder')
    ap.add_argument('--warm', type=int, default=3, help='warm calls (their median counts)')
    ap.add_argument('--threads', type=int, default=2, help='torch threads for inference')
    ap.add_argument('--n-workers', type=int, default=None, help='preprocessing processes (default: all cores)')
    a = ap.parse_args()

    import numpy as np, pandas as pd, torch
    torch.set_num_threads(a.threads)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from ich_nbdev.synth import synth_sample
        from ich_nbdev.data import dicom_meta, SUBTYPES
        from ich_nbdev.learner import synth_cache, cache_dls, ich_learner, predict_images
        from ich_nbdev.inference import load_model, predict_folder, preprocess_files, _model_input
    score_name, study_score = study_score_fn()

    tmp = Path(tempfile.mkdtemp(prefix='bench-latency-'))
    try:
        # one synthetic sample: 8 training studies for the cache the learners are built on, 1 test study to time
        sample = synth_sample(n_studies=8, n_test_studies=1, slices=a.slices, size=a.size)
        cache = synth_cache(size=a.size, data_dir=sample)
        folders = {f'synthetic {a.size} px': sample/'stage_2_test'}
        real = sorted(SAMPLES.glob('*.dcm'))[:a.slices] if SAMPLES.is_dir() else []
        if len(real) == a.slices:
            (tmp/'real').mkdir()
            for p in real: shutil.copy(p, tmp/'real')
            folders['real 512 px'] = tmp/'real'
        else: print(f"note: fewer than {a.slices} real RSNA slices in {SAMPLES}; timing the synthetic study only")
        dls = cache_dls(cache, bs=16, device='cpu')
        rows = []
        for arch in a.archs.split(','):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                learn = ich_learner(dls, arch, pretrained=False, path=tmp)
                learn.export(tmp/f'{arch}.pkl')
            t_load, _, model = timed(load_model, tmp/f'{arch}.pkl', cpu=True)
            torch.set_num_threads(a.threads)
            size, windows = _model_input(model)
            n_params = sum(p.numel() for p in model.model.parameters())/1e6
            for name, folder in folders.items():
                def triage():
                    preds, problems = predict_folder(model, folder, bs=a.slices, n_workers=a.n_workers, progress=False)
                    assert len(preds) == a.slices and not len(problems), problems
                    return study_score(preds)
                first, first_cpu, score = timed(triage)
                warm = [timed(triage)[:2] for _ in range(a.warm)]
                files = sorted(folder.glob('*.dcm'))
                steps = {'headers': [], 'decode+preprocess': [], 'inference': [], 'score': []}
                for _ in range(a.warm):
                    t_meta, _, (meta, _) = timed(dicom_meta, folder, n_workers=a.n_workers, progress=False)
                    t_pre, _, (x, ok, _) = timed(preprocess_files, meta.path.tolist(), size, windows, a.n_workers)
                    t_inf, _, p = timed(predict_images, model, x, bs=a.slices)
                    preds = pd.concat([meta[['image_id', 'patient_id', 'study_id', 'series_id', 'z', 'slice_index']],
                                       pd.DataFrame(p, columns=SUBTYPES)], axis=1)
                    t_score, _, _ = timed(study_score, preds)
                    for k, v in zip(steps, (t_meta, t_pre, t_inf, t_score)): steps[k].append(v)
                rows.append(dict(folder=name, arch=arch, params_m=n_params, load=t_load, first=first,
                                 warm=statistics.median(w for w, _ in warm), warm_cpu=statistics.median(c for _, c in warm),
                                 **{k: statistics.median(v) for k, v in steps.items()}))
                print(f"{arch:16s} {name:16s} warm {rows[-1]['warm']:.2f} s", flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(f"\nstudy of {a.slices} slices -> study score ({score_name}); model input {a.size} px, 3 windows; "
          f"torch threads {a.threads}, preprocessing workers {a.n_workers if a.n_workers is not None else os.cpu_count()}, "
          f"{os.cpu_count()} CPU core(s); load average {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}")
    print(f"{'study folder':16s} {'architecture':16s} {'Mparams':>7s} {'load s':>7s} {'first s':>8s} {'warm s':>7s} "
          f"{'warm CPU s':>10s} | {'headers':>7s} {'decode+pre':>10s} {'inference':>9s} {'score':>6s}  (warm medians, s)")
    for r in rows:
        print(f"{r['folder']:16s} {r['arch']:16s} {r['params_m']:7.1f} {r['load']:7.2f} {r['first']:8.2f} {r['warm']:7.2f} "
              f"{r['warm_cpu']:10.2f} | {r['headers']:7.3f} {r['decode+preprocess']:10.3f} {r['inference']:9.3f} {r['score']:6.4f}")
    mb = [r for r in rows if r['arch'] == 'mobilenetv2_100']
    for r in mb:
        print(f"target: MobileNetV2 warm < 3 s on the {r['folder']} study: {r['warm']:.2f} s -> "
              f"{'met' if r['warm'] < 3 else 'NOT met'}")
    return 0

if __name__ == '__main__': sys.exit(main())
