"""Seconds from a study folder of 32 DICOM slices to its study-level triage score on the CPU, per architecture,
through eager PyTorch (the fastai learner, channels-last) and through ONNX Runtime (the file `ich-export` writes).

    python bench/latency.py [--archs mobilenetv2_100,efficientnet_b2,resnet50] [--size 256] [--slices 32]
                            [--warm 3] [--threads 2] [--n-workers 0] [--runtimes torch,onnx] [--cold 1] [--int8]

For each architecture, an untrained network (latency does not depend on the weights) is built by `ich_learner` on
a small synthetic cache at --size, exported as `model.pkl` and loaded back with `load_model`, as `ich-predict` loads
it; the same network is exported to ONNX with `export_onnx` and opened with `load_onnx`. Then, for each study folder:
  torch  `predict_folder` (headers, decoding + preprocessing of every slice, `predict_images`), then the study score;
  onnx   `predict_dicom` (the same headers and preprocessing in a second thread while ONNX Runtime runs), the score;
  onnx-serial  the same without the second thread (the sum of the stages).
Study folders:
  synthetic  --slices slices of one synthetic study written at --size px (the model's input size: no resizing);
  real       --slices of the real 512 x 512 RSNA slices (../shared/data/rsna-samples or $ICH_RSNA_SAMPLES),
             copied into one folder, when present; they come from different studies, and count as one here.
With --int8 the ONNX file is also quantised to int8 with ONNX Runtime's tools, statically (`quantize_onnx`: QDQ,
per-channel weights, calibrated on 64 slices of the synthetic cache) and dynamically (`quantize_dynamic`, int8
weights), and the network time of each is reported (`net int8`, `net int8-dyn`), with the whole study through the
static file (`int8`). Their accuracy needs a trained model: `ich-export --int8` prints it for yours.
`warm` is the median of --warm calls after a first one. The stage columns are medians of separately timed warm runs
of each stage (headers, decode+preprocess, the network through torch and through ONNX, the score), and `heatmaps`:
Grad-CAM of the 3 slices a triage report draws for a study (through the torch learner, whichever runtime predicted). `cold` is the
wall time of a fresh Python process (imports, model load, one study, the score), per runtime: the ONNX one imports
neither torch nor fastai. The figures are printed last, with the load average they were measured under.
"""
import os, argparse, shutil, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get('ICH_RSNA_SAMPLES', ROOT.parent/'shared'/'data'/'rsna-samples'))

def timed(fn, *args, **kw):
    "(wall seconds, result)."
    t = time.perf_counter()
    res = fn(*args, **kw)
    return time.perf_counter() - t, res

def median_time(fn, n):
    return statistics.median(timed(fn)[0] for _ in range(n))

def study_score(preds):
    "The study score: max P(any) over each study's slices (what `ich_nbdev.triage.aggregate(how='max')` computes)."
    return preds.groupby('study_id')['any'].max()

COLD_TORCH = """
import sys, time; t0 = time.perf_counter()
import torch; torch.set_num_threads({threads})
from ich_nbdev.inference import load_model, predict_folder
m = load_model({model!r}, cpu=True); torch.set_num_threads({threads})
p, _ = predict_folder(m, {folder!r}, bs={bs}, n_workers={n_workers}, progress=False)
s = p.groupby('study_id')['any'].max()
print(time.perf_counter() - t0)
"""
COLD_ONNX = """
import sys, time; t0 = time.perf_counter()
from ich_nbdev.deploy import load_onnx, predict_dicom
p, _ = predict_dicom(load_onnx({model!r}, threads={threads}), {folder!r}, bs={bs}, n_workers={n_workers})
s = p.groupby('study_id')['any'].max()
assert 'torch' not in sys.modules and 'fastai' not in sys.modules
print(time.perf_counter() - t0)
"""

def cold(code, **kw):
    "Wall seconds of a fresh process running `code` (its own figure, and the whole process including interpreter start)."
    t = time.perf_counter()
    r = subprocess.run([sys.executable, '-c', code.format(**kw)], capture_output=True, text=True, timeout=900)
    if r.returncode != 0: raise SystemExit(f"bench/latency.py: the cold run failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--archs', default='mobilenetv2_100,efficientnet_b2,resnet50', help='timm architectures')
    ap.add_argument('--size', type=int, default=256, help='model input size, px')
    ap.add_argument('--slices', type=int, default=32, help='slices in the study folder')
    ap.add_argument('--warm', type=int, default=3, help='warm calls (their median counts)')
    ap.add_argument('--threads', type=int, default=2, help='threads for inference (torch and ONNX Runtime)')
    ap.add_argument('--n-workers', type=int, default=0, help='processes reading headers and preprocessing for torch '
                    '(0: in the process, as the ONNX path does)')
    ap.add_argument('--runtimes', default='torch,onnx', help='torch, onnx or both')
    ap.add_argument('--cold', type=int, default=1, help='fresh-process runs per runtime (0: none)')
    ap.add_argument('--int8', action='store_true', help='also time int8 ONNX files (static and dynamic quantisation)')
    a = ap.parse_args()
    runtimes = a.runtimes.split(',')
    if any(r not in ('torch', 'onnx') for r in runtimes) or not runtimes:
        raise SystemExit(f"bench/latency.py: --runtimes takes torch, onnx or torch,onnx, not {a.runtimes!r}")
    if a.slices < 1 or a.warm < 1 or a.threads < 1 or a.size < 32:
        raise SystemExit("bench/latency.py: --slices, --warm and --threads must be at least 1, --size at least 32")

    import numpy as np, pandas as pd, torch
    torch.set_num_threads(a.threads)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from ich_nbdev.synth import synth_sample
        from ich_nbdev.data import dicom_meta
        from ich_nbdev.learner import synth_cache, cache_dls, ich_learner, predict_images
        from ich_nbdev.inference import load_model, predict_folder
        from ich_nbdev.triage import gradcam
        from ich_nbdev.deploy import export_onnx, load_onnx, predict_dicom, _preprocess_paths, quantize_onnx

    tmp = Path(tempfile.mkdtemp(prefix='bench-latency-'))
    rows = []
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
        for arch in a.archs.split(','):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                learn = ich_learner(dls, arch, pretrained=False, path=tmp)
                learn.export(tmp/f'{arch}.pkl')
            t_load_torch, model = timed(load_model, tmp/f'{arch}.pkl', cpu=True)
            torch.set_num_threads(a.threads)
            t_export, _ = timed(export_onnx, model, tmp/f'{arch}.onnx')
            t_load_onnx, om = timed(load_onnx, tmp/f'{arch}.onnx', threads=a.threads)
            kw = om.preprocess_args()
            om8 = om8d = None
            if a.int8 and 'onnx' in runtimes:
                from onnxruntime.quantization import quantize_dynamic, QuantType
                calib = np.load(cache/'train.npy', mmap_mode='r')[:64]
                om8 = load_onnx(quantize_onnx(tmp/f'{arch}.onnx', tmp/f'{arch}.int8.onnx', np.asarray(calib)), threads=a.threads)
                from onnxruntime.quantization.shape_inference import quant_pre_process
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    quant_pre_process(str(tmp/f'{arch}.onnx'), str(tmp/f'{arch}.pre.onnx'))
                    quantize_dynamic(str(tmp/f'{arch}.pre.onnx'), str(tmp/f'{arch}.dyn.onnx'), weight_type=QuantType.QInt8)
                om8d = load_onnx(tmp/f'{arch}.dyn.onnx', threads=a.threads)
            n_params = sum(p.numel() for p in model.model.parameters())/1e6
            for name, folder in folders.items():
                run = {'torch': lambda: study_score(predict_folder(model, folder, bs=a.slices, n_workers=a.n_workers, progress=False)[0]),
                       'onnx': lambda: study_score(predict_dicom(om, folder, bs=a.slices)[0]),
                       'onnx-serial': lambda: study_score(predict_dicom(om, folder, bs=a.slices, overlap=False)[0])}
                run = {k: f for k, f in run.items() if k.split('-')[0] in runtimes}
                if om8 is not None: run['int8'] = lambda: study_score(predict_dicom(om8, folder, bs=a.slices)[0])
                first = {k: timed(f)[0] for k, f in run.items()}
                warm = {k: median_time(f, a.warm) for k, f in run.items()}
                files = sorted(folder.glob('*.dcm'))
                x = _preprocess_paths([str(f) for f in files], kw)[0]
                stages = {'headers': median_time(lambda: dicom_meta(files, n_workers=0, progress=False), a.warm),
                          'decode+pre': median_time(lambda: _preprocess_paths([str(f) for f in files], kw), a.warm)}
                if 'torch' in runtimes: stages['net torch'] = median_time(lambda: predict_images(model, x, bs=a.slices), a.warm)
                if 'onnx' in runtimes: stages['net onnx'] = median_time(lambda: om.predict(x, bs=a.slices), a.warm)
                if om8 is not None:
                    stages['net int8'] = median_time(lambda: om8.predict(x, bs=a.slices), a.warm)
                    stages['net int8-dyn'] = median_time(lambda: om8d.predict(x, bs=a.slices), 1)
                stages['heatmaps'] = median_time(lambda: gradcam(model, x[:3]), a.warm)
                preds = predict_dicom(om, folder, bs=a.slices)[0]
                stages['score'] = median_time(lambda: study_score(preds), a.warm)
                if 'onnx' in runtimes and 'torch' in runtimes:
                    p_t = predict_folder(model, folder, bs=a.slices, n_workers=a.n_workers, progress=False)[0]
                    diff = float(np.abs(p_t.iloc[:, 7:13].to_numpy() - preds.iloc[:, 7:13].to_numpy()).max())
                else: diff = float('nan')
                colds = {}
                if a.cold and name.startswith('synthetic'):
                    kwc = dict(threads=a.threads, folder=str(folder), bs=a.slices, n_workers=a.n_workers)
                    if 'torch' in runtimes: colds['torch'] = statistics.median(cold(COLD_TORCH, model=str(tmp/f'{arch}.pkl'), **kwc) for _ in range(a.cold))
                    if 'onnx' in runtimes: colds['onnx'] = statistics.median(cold(COLD_ONNX, model=str(tmp/f'{arch}.onnx'), **kwc) for _ in range(a.cold))
                rows.append(dict(folder=name, arch=arch, params_m=n_params, export=t_export, load_torch=t_load_torch,
                                 load_onnx=t_load_onnx, first=first, warm=warm, stages=stages, cold=colds, diff=diff))
                print(f"{arch:16s} {name:16s} warm " + ', '.join(f"{k} {v:.2f} s" for k, v in warm.items()), flush=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(f"\nstudy of {a.slices} slices -> study score (max P(any)); model input {a.size} px, 3 windows; "
          f"{a.threads} inference thread(s) (torch and ONNX Runtime), header/preprocessing workers for torch: {a.n_workers}; "
          f"{os.cpu_count()} CPU core(s); load average at the end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}")
    print(f"{'study folder':16s} {'architecture':16s} {'Mparams':>7s} | {'warm s: torch':>13s} {'onnx':>6s} {'serial':>6s} "
          f"{'speed-up':>8s} | {'cold s: torch':>13s} {'onnx':>6s} | {'headers':>7s} {'decode+pre':>10s} {'net torch':>9s} "
          f"{'net onnx':>8s} {'score':>6s} {'heatmaps':>8s} | {'max |dp|':>8s}")
    f = lambda d, k, w=6: f"{d[k]:{w}.2f}" if k in d else ' ' * (w - 1) + '-'
    f3 = lambda d, k, w: f"{d[k]:{w}.3f}" if k in d else ' ' * (w - 1) + '-'
    for r in rows:
        w, s, c = r['warm'], r['stages'], r['cold']
        sp = f"{w['torch']/w['onnx']:7.1f}x" if 'torch' in w and 'onnx' in w else '       -'
        print(f"{r['folder']:16s} {r['arch']:16s} {r['params_m']:7.1f} | {f(w, 'torch', 13)} {f(w, 'onnx')} {f(w, 'onnx-serial')} "
              f"{sp} | {f(c, 'torch', 13)} {f(c, 'onnx')} | {f3(s, 'headers', 7)} {f3(s, 'decode+pre', 10)} "
              f"{f3(s, 'net torch', 9)} {f3(s, 'net onnx', 8)} {s['score']:6.4f} {s['heatmaps']:8.3f} | {r['diff']:8.1e}")
    for r in rows:
        if 'net int8' in r['stages']:
            s, w = r['stages'], r['warm']
            print(f"int8 {r['arch']:16s} {r['folder']:16s}: network fp32 {s['net onnx']:.3f} s, static int8 {s['net int8']:.3f} s, "
                  f"dynamic int8 {s['net int8-dyn']:.3f} s; whole study static int8 {w['int8']:.2f} s")
    print("share of each stage in the serial sum (headers + decode+pre + network + score):")
    for r in rows:
        s = r['stages']
        for rt in [k for k in ('torch', 'onnx') if f'net {k}' in s]:
            parts = {'headers': s['headers'], 'decode+pre': s['decode+pre'], 'network': s[f'net {rt}'], 'score': s['score']}
            tot = sum(parts.values())
            print(f"  {r['arch']:16s} {r['folder']:16s} {rt:5s} " + ', '.join(f"{k} {v/tot:.0%}" for k, v in parts.items())
                  + f" (sum {tot:.2f} s)")
    for r in rows:
        if r['arch'] == 'mobilenetv2_100' and 'torch' in r['warm'] and 'onnx' in r['warm']:
            sp = r['warm']['torch'] / r['warm']['onnx']
            print(f"target: MobileNetV2, {r['folder']}: ONNX {sp:.1f}x faster than torch (target 3x) -> {'met' if sp >= 3 else 'NOT met'}; "
                  f"ONNX warm study {r['warm']['onnx']:.2f} s + heatmaps of 3 slices {r['stages']['heatmaps']:.2f} s = "
                  f"{r['warm']['onnx'] + r['stages']['heatmaps']:.2f} s (target < 0.5 s) -> "
                  f"{'met' if r['warm']['onnx'] + r['stages']['heatmaps'] < 0.5 else 'NOT met'}")
    return 0

if __name__ == '__main__': sys.exit(main())
