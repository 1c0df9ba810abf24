"""Training throughput of `ich-train`'s loop in 1 process and in N processes (data parallel under `torchrun`): slices/s
and the speed-up, on this machine's GPUs (NCCL) or, without a GPU, its CPU cores (gloo).

    python bench/ddp.py [--runs 1x1,1x2,2x1] [--arch mobilenetv2_050] [--size 64] [--bs 16] [--epochs 3]
                        [--n-studies 60] [--slices 8]

`--runs` lists PROCESSESxTHREADS: each run starts `torchrun --nproc-per-node PROCESSES` with OMP_NUM_THREADS=THREADS
(on a GPU machine the default is 1x1 and Nx1, N = the number of GPUs). Every run trains the same recipe
(`learner.train_model`, the `ich-train` path: fit_one_cycle, gathered validation, rank 0 writing) on a cache of the
synthetic sample, and times only the training batches of the epochs after the first (the first warms up: loaders,
allocator, cuDNN's choice of kernels); validation, export and start-up are not counted. The figure is the slices of
those epochs over their seconds, all processes together. On a CPU shared with other work the figures vary from run to
run: repeat them, and read them as a check of the machinery rather than of the hardware.
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent

def worker(a):
    "One process of a run (started by torchrun): train, time the training batches, rank 0 prints the result."
    import warnings; warnings.filterwarnings('ignore')
    import torch
    from fastai.callback.core import Callback
    from ich_nbdev.learner import synth_cache, train_model
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.scale import gather_objects, is_main
    class TrainTimer(Callback):
        order = 100
        def before_fit(self): self.secs, self.n = 0., 0
        def before_train(self):
            if torch.cuda.is_available(): torch.cuda.synchronize()
            self.t = time.perf_counter()
        def after_batch(self):
            if self.training and self.epoch > 0: self.n += len(self.learn.yb[0])
        def after_train(self):
            if torch.cuda.is_available(): torch.cuda.synchronize()
            if self.epoch > 0: self.secs += time.perf_counter() - self.t
    cache = synth_cache(size=a.size, data_dir=synth_sample(n_studies=a.n_studies, slices=a.slices, size=max(64, a.size)))
    timer = TrainTimer()
    with tempfile.TemporaryDirectory() as out:
        r = train_model(cache, out, arch=a.arch, size=a.size, epochs=a.epochs, bs=a.bs, progress=False, cbs=[timer])
    got = gather_objects((timer.n, timer.secs))
    n, secs = sum(k for k, _ in got), max(s for _, s in got)
    if is_main(): print('RESULT ' + json.dumps(dict(slices=n, secs=secs, train=r['train_slices'], wll=r['weighted_log_loss'])), flush=True)

def main():
    if os.environ.get('ICH_DDP_BENCH_WORKER'):
        ap = argparse.ArgumentParser(); [ap.add_argument(f'--{k}', type=t) for k, t in
                                         [('arch', str), ('size', int), ('bs', int), ('epochs', int), ('n_studies', int), ('slices', int)]]
        worker(ap.parse_args()); return
    import torch
    gpus = torch.cuda.device_count()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', default=f'1x1,{gpus}x1' if gpus > 1 else ('1x1' if gpus else '1x1,1x2,2x1'),
                    help='PROCESSESxTHREADS, comma-separated')
    ap.add_argument('--arch', default='mobilenetv2_050' if not gpus else 'resnet50')
    ap.add_argument('--size', type=int, default=64 if not gpus else 256)
    ap.add_argument('--bs', type=int, default=16 if not gpus else 64, help='batch per process')
    ap.add_argument('--epochs', type=int, default=3, help='the first is not timed')
    ap.add_argument('--n-studies', type=int, default=60 if not gpus else 400)
    ap.add_argument('--slices', type=int, default=8 if not gpus else 24)
    a = ap.parse_args()
    try: runs = [tuple(int(v) for v in r.lower().split('x')) for r in a.runs.split(',') if r.strip()]
    except ValueError: sys.exit(f"bench/ddp.py: --runs must look like 1x1,2x1 (PROCESSESxTHREADS), not {a.runs!r}")
    if not runs or any(len(r) != 2 or min(r) < 1 for r in runs) or a.epochs < 2 or a.bs < 2:
        sys.exit("bench/ddp.py: give runs of PROCESSESxTHREADS of at least 1x1, --epochs 2 or more, --bs 2 or more")
    if gpus and max(p for p, _ in runs) > gpus:
        sys.exit(f"bench/ddp.py: this machine has {gpus} GPU(s); --runs asks for {max(p for p, _ in runs)} processes")
    dev = f"{gpus} x {torch.cuda.get_device_name()} (NCCL)" if gpus else f"CPU only, {os.cpu_count()} cores (gloo)"
    print(f"device: {dev}; {a.arch}, {a.size} px, batch {a.bs} per process, {a.epochs} epochs (the first untimed), "
          f"synthetic sample of {a.n_studies} studies x {a.slices} slices", flush=True)
    torchrun = [sys.executable, '-m', 'torch.distributed.run']      # torchrun, from this Python's torch
    rows, base = [], None
    print(f"{'processes':>9s} {'threads':>7s} {'train sl/s':>11s} {'speed-up':>9s} {'timed slices':>13s} {'secs':>7s} {'wall':>6s}")
    for procs, threads in runs:
        t = time.perf_counter()
        r = subprocess.run([*torchrun, '--nproc-per-node', str(procs), '--no-python', sys.executable, __file__, '--arch', a.arch, '--size', str(a.size),
                            '--bs', str(a.bs), '--epochs', str(a.epochs), '--n_studies', str(a.n_studies), '--slices', str(a.slices)],
                           capture_output=True, text=True, env={**os.environ, 'OMP_NUM_THREADS': str(threads), 'ICH_DDP_BENCH_WORKER': '1'})
        res = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
        if r.returncode or not res:
            sys.exit(f"bench/ddp.py: the run {procs}x{threads} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
        m = json.loads(res[-1][7:]); rate = m['slices'] / m['secs']
        base = base or rate
        print(f"{procs:9d} {threads:7d} {rate:11.1f} {rate/base:8.2f}x {m['slices']:13d} {m['secs']:7.1f} {time.perf_counter()-t:6.0f}", flush=True)

if __name__ == '__main__': main()
