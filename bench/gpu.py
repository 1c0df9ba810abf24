"""GPU throughput of resnet50, mobilenetv2_100 and efficientnet_b2 through the project's own fastai `Learner`
(mixed precision + channels-last, as `ich_learner` sets them on a GPU), on a cache of the synthetic sample.

    python bench/gpu.py [--archs resnet50,mobilenetv2_100,efficientnet_b2] [--size 256] [--bs 64]
                        [--steps 100] [--warmup 10] [--workers 0] [--baseline resnet50]

Usually started by `bash bench/gpu.sh`, which installs what the GPU machine lacks and guards the run with a timeout.
Each architecture: `learn.fit` for `warmup` + `steps` training batches (forward, loss, backward, RAdam step, fastai's
callbacks), timed over the last `steps`; then `learn.get_preds` for `warmup` + `steps` batches of twice the size.
Untrained weights (no network); a step costs the same whatever the data. Baseline in the same run: the `--baseline`
architecture in plain fp32 with the default memory format. Peak GPU memory is `torch.cuda.max_memory_allocated`,
reset before each phase (inference after the gradients and optimizer state are freed). Without a GPU it stops, unless ICH_BENCH_ALLOW_CPU=1 (a tiny run that checks the script).
"""
import argparse, gc, os, platform, sys, time, warnings
T0 = time.perf_counter()
warnings.filterwarnings('ignore')
import numpy as np, torch, timm
import fastai
from fastai.callback.core import Callback, CancelFitException, CancelValidException
import ich_nbdev
from ich_nbdev.learner import synth_cache, cache_dls, ich_learner, loader_speed, CacheRows
from ich_nbdev.synth import synth_sample

ARCHS = 'resnet50,mobilenetv2_100,efficientnet_b2'

class StepTimer(Callback):
    "Time `steps` batches after `warmup` ones (training in `fit` when `fitting`, else inference in `get_preds`), then stop."
    order = 99                                              # after every other callback's `after_batch`
    def __init__(self, warmup:int, steps:int, fitting:bool):
        self.warmup, self.steps, self.fitting, self.n, self.slices, self.secs = warmup, steps, fitting, 0, 0, None
    def _sync(self):
        if torch.cuda.is_available(): torch.cuda.synchronize()
    def before_validate(self):
        if self.fitting: raise CancelValidException         # a training run never validates
    def after_batch(self):
        self.n += 1
        if self.n == self.warmup: self._sync(); self.t = time.perf_counter()
        elif self.n > self.warmup: self.slices += len(self.learn.xb[0])
        if self.n == self.warmup + self.steps:
            self._sync(); self.secs = time.perf_counter() - self.t
            raise CancelFitException if self.fitting else CancelValidException
    @property
    def rate(self): return self.slices / self.secs if self.secs else float('nan')

def repeat_rows(rows:CacheRows, n:int) -> CacheRows:
    "`rows` repeated (in array order) until there are at least `n`, so one pass covers every step."
    k = -(-n // len(rows))
    r = np.tile(rows.rows, k); order = np.argsort(r, kind='stable')
    return CacheRows(rows.arr_path, r[order], np.tile(rows.y, (k, 1))[order], rows.channels)

def peak_gib():
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float('nan')

def reset_peak():
    if torch.cuda.is_available(): torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()

def run_arch(dls, infer_dl, arch:str, warmup:int, steps:int, fp32:bool=False) -> dict:
    "Train then inference slices/s and peak memory of one architecture."
    t = time.perf_counter()
    learn = ich_learner(dls, arch, pretrained=False, channels_last=not fp32)
    if fp32: learn.to_fp32()                                # plain fp32, default memory format: the baseline
    reset_peak()
    tr = StepTimer(warmup, steps, fitting=True)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=tr)
    train_mem = peak_gib()
    learn.opt = None; learn.model.zero_grad(set_to_none=True); gc.collect()   # inference holds no gradients or optimizer state
    if torch.cuda.is_available(): torch.cuda.empty_cache()
    reset_peak()
    inf = StepTimer(warmup, steps, fitting=False)
    with learn.no_bar(), learn.no_logging(): learn.get_preds(dl=infer_dl, cbs=inf, reorder=False)
    infer_mem = peak_gib()
    mode = 'fp32, default layout' if fp32 else ('AMP fp16 + channels_last' if torch.cuda.is_available() else 'fp32 + channels_last (CPU)')
    r = dict(arch=arch, mode=mode, train=tr.rate, infer=inf.rate, train_mem=train_mem, infer_mem=infer_mem,
             steps=(tr.n - warmup, inf.n - warmup), secs=time.perf_counter() - t)
    del learn; gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()
    return r

def main():
    gpu = torch.cuda.is_available()
    allow_cpu = os.environ.get('ICH_BENCH_ALLOW_CPU', '') not in ('', '0')
    # defaults: a real measurement on a GPU; a tiny check of the script on a CPU
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--archs', default=ARCHS, help='comma-separated timm names')
    ap.add_argument('--size', type=int, default=256 if gpu else 32, help='cache side, pixels')
    ap.add_argument('--bs', type=int, default=64 if gpu else 4, help='training batch; inference uses twice this')
    ap.add_argument('--steps', type=int, default=100 if gpu else 2, help='timed batches per phase')
    ap.add_argument('--warmup', type=int, default=10 if gpu else 1, help='untimed batches before them')
    ap.add_argument('--workers', type=int, default=0, help='loader processes')
    ap.add_argument('--baseline', default='resnet50', help="architecture also run in plain fp32 ('' for none)")
    a = ap.parse_args()
    if not gpu and not allow_cpu:
        sys.exit("bench/gpu.py: no CUDA GPU visible to torch "
                 f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                 "this benchmark is for a GPU machine. Set ICH_BENCH_ALLOW_CPU=1 for a tiny CPU run that only checks the script.")
    if a.warmup < 1 or a.steps < 1: sys.exit('bench/gpu.py: --warmup and --steps must be at least 1')
    archs = [s.strip() for s in a.archs.split(',') if s.strip()]
    phases = {'imports': time.perf_counter() - T0}
    torch.backends.cudnn.benchmark = True                   # fixed shapes: let cuDNN pick its fastest kernels
    dev = (f"{torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory/2**30:.0f} GiB), "
           f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}") if gpu else \
          f"CPU only ({torch.get_num_threads()} threads) — a check of the script, not a measurement"
    print(f"device: {dev}")
    print(f"software: Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
          f"fastai {fastai.__version__}, numpy {np.__version__}, ich_nbdev {ich_nbdev.__version__}")
    print(f"settings: {a.size} px, 3 windows, train batch {a.bs}, inference batch {2*a.bs}, "
          f"{a.warmup} warm-up + {a.steps} timed batches per phase, {a.workers} loader workers{', cudnn.benchmark' if gpu else ''}", flush=True)

    t = time.perf_counter(); sample = synth_sample(); phases['synthetic sample'] = time.perf_counter() - t
    t = time.perf_counter(); cache = synth_cache(size=a.size, data_dir=sample); phases['cache build'] = time.perf_counter() - t
    t = time.perf_counter()
    dls = cache_dls(cache, bs=a.bs, num_workers=a.workers)
    n_train, n_valid = len(dls.train.dataset), len(dls.valid.dataset)
    need = (a.warmup + a.steps + 1) * a.bs                  # one epoch holds every training step: no epoch ends, no validation
    dls.loaders[0] = dls.train.new(repeat_rows(dls.train.dataset, need))
    infer_dl = dls.valid.new(repeat_rows(dls.valid.dataset, (a.warmup + a.steps) * 2 * a.bs), shuffle=False, drop_last=False)
    loader = loader_speed(dls.train, n_batches=min(50, a.warmup + a.steps))
    phases['loaders'] = time.perf_counter() - t
    print(f"data: {cache} ({n_train} train / {n_valid} valid slices, repeated to fill the steps)")
    print(f"loader: {loader:,.0f} slices/s (training loader with its on-device batch transform, ich_nbdev.learner.loader_speed)",
          flush=True)

    rows = []
    runs = [(arch, False) for arch in archs] + ([(a.baseline, True)] if a.baseline else [])
    hdr = f"{'architecture':16s} {'mode':26s} {'train sl/s':>11s} {'infer sl/s':>11s} {'peak train':>11s} {'peak infer':>11s} {'secs':>6s}"
    print(hdr); print('-' * len(hdr), flush=True)
    for arch, fp32 in runs:
        r = run_arch(dls, infer_dl, arch, a.warmup, a.steps, fp32=fp32)
        rows.append(r); phases[f"{arch}{' fp32' if fp32 else ''}"] = r['secs']
        gib = lambda v: 'n/a' if v != v else f"{v:.2f} GiB"
        rate = lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
        print(f"{arch:16s} {r['mode']:26s} {rate(r['train']):>11s} {rate(r['infer']):>11s} {gib(r['train_mem']):>11s} "
              f"{gib(r['infer_mem']):>11s} {r['secs']:6.1f}", flush=True)

    print('ratios:')
    if a.baseline:
        fast = next((r for r in rows if r['arch'] == a.baseline and not r['mode'].startswith('fp32, default')), None)
        base = rows[-1]
        if fast:
            tf32 = f" (cuDNN TF32 convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'})" if gpu else ''
            print(f"  {a.baseline} {fast['mode']} / {base['mode']}{tf32} (baseline): train {fast['train']/base['train']:.2f}x, "
                  f"inference {fast['infer']/base['infer']:.2f}x")
    best = max(rows[:len(archs)], key=lambda r: r['train'])
    print(f"  loader / fastest training ({best['arch']}): {loader/best['train']:.1f}x "
          f"({'the loader is not the limit' if loader > 1.2 * best['train'] else 'the loader may be the limit: try --workers'})")
    total = time.perf_counter() - T0
    print('phases (s): ' + ', '.join(f"{k} {v:.1f}" for k, v in phases.items()) + f"; python total {total:.1f}")

if __name__ == '__main__': main()
