"""What each architecture learns from scratch in a fixed time budget on the synthetic sample's cache: weighted log
loss on held-out patients against the prior-only baseline, and AUC(any).

    python bench/from_scratch.py [--archs plain_cnn,mobilenetv2_100,efficientnet_b2] [--budget 120] [--size 128]
                                 [--bs 32] [--lr 5e-3] [--n-studies 40] [--slices 24] [--no-prior-bias] [--no-zero-init]
                                 [--wd 0.05] [--drop-path 0.2]

Every run uses the same cache, folds, loss (BCE), optimiser (RAdam) and `fit_one_cycle`; the number of epochs is
what fits in `--budget` seconds at the step rate measured on a few batches first. The named baseline is
`plain_cnn`: eight 3x3 convolutions with batch norm and max pooling, then global max pooling and one linear layer
(about 0.3 M parameters). It shows whether the budget is enough to learn the bleeds at all; the timm models are the
notebooks' architectures, trained as in `ich_learner`, with its defaults for training from scratch: the output layer
at the class log-odds, residual blocks started as the identity, weight decay 0.05 (`--no-prior-bias`,
`--no-zero-init` and `--wd 0` turn them off; `--prior-bias` and `--zero-init` are accepted and change nothing).
"""
import argparse, time, warnings
import numpy as np, torch, torch.nn as nn
from fastai.learner import Learner
from fastai.optimizer import RAdam
from fastai.torch_core import set_seed
from ich_nbdev.synth import synth_sample, SynthError
from ich_nbdev.learner import (synth_cache, cache_dls, ich_learner, ich_loss, ich_metrics, predict_rows, check_arch,
                               LearnerSetupError, set_prior_bias, start_settings)
from ich_nbdev.metrics import metrics_summary, prior_log_loss
warnings.filterwarnings('ignore')

def plain_cnn(n_in=3, n_out=6):
    "Four blocks of two 3x3 conv + BN + ReLU and a 2x2 max pool (16-128 channels), global max pool, linear."
    def block(i, o): return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                          nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(n_in, 16), block(16, 32), block(32, 64), block(64, 128),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(128, n_out))

def make_learner(arch, dls, prior_bias=True, zero_init=True, wd=0.05, drop_path=0.):
    if arch != 'plain_cnn':
        return ich_learner(dls, arch, pretrained=False, loss='bce', prior_bias=prior_bias, zero_init=zero_init, wd=wd,
                            drop_path=drop_path)
    learn = Learner(dls, plain_cnn(len(dls.ich['channels'])), loss_func=ich_loss('bce'), opt_func=RAdam, metrics=ich_metrics(), wd=wd)
    learn.ich = dict(dls.ich, arch=arch, n_in=len(dls.ich['channels']))
    if prior_bias: set_prior_bias(learn)
    return learn.to_channelslast(use_amp=False)

def seconds_per_epoch(learn, n=6):
    "Time `n` training steps (after two warm-up steps) on a throw-away copy of the weights; scale to an epoch."
    state = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.model.to(learn.dls.device); learn.create_opt(); learn.model.train()   # `fit` would move it there too
    def batches():                                          # as many as asked for, however few batches an epoch has
        while True: yield from learn.dls.train
    it = batches()
    def step():
        xb, yb = next(it)
        loss = learn.loss_func(learn.model(xb), yb); loss.backward(); learn.opt.step(); learn.opt.zero_grad()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)   # GPU work is asynchronous
    step(); step(); sync(); t = time.perf_counter()
    for _ in range(n): step()
    sync(); per_step = (time.perf_counter() - t) / n
    learn.model.load_state_dict(state); learn.opt = None
    return per_step * len(learn.dls.train)

def vs_prior(loss, prior):
    d = 100 * (1 - loss / prior)
    return f"{d:.0f}% below" if d >= 0 else f"{-d:.0f}% above"

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--archs', default='plain_cnn,mobilenetv2_100,efficientnet_b2')
    ap.add_argument('--budget', type=float, default=120, help='training seconds per architecture')
    ap.add_argument('--size', type=int, default=128); ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--lr', type=float, default=5e-3); ap.add_argument('--n-studies', type=int, default=40)
    ap.add_argument('--slices', type=int, default=24, help='slices per synthetic study (fewer: more heads per slice)')
    ap.add_argument('--seed', type=int, default=42)
    d = start_settings(pretrained=False)                   # the learner's defaults for training from scratch
    ap.add_argument('--prior-bias', action=argparse.BooleanOptionalAction, default=d['prior_bias'],
                    help="start every model's outputs at the class frequencies")
    ap.add_argument('--zero-init', action=argparse.BooleanOptionalAction, default=d['zero_init'],
                    help="start the timm models' residual blocks as the identity")
    ap.add_argument('--wd', type=float, default=d['wd'], help='decoupled weight decay (0: none)')
    ap.add_argument('--drop-path', type=float, default=0., help="stochastic depth rate of the timm models' residual blocks")
    a = ap.parse_args()
    archs = [s.strip() for s in a.archs.split(',') if s.strip()]
    try: [check_arch(arch) for arch in archs if arch != 'plain_cnn']      # before any data is built or trained on
    except LearnerSetupError as e: raise SystemExit(f"bench/from_scratch.py: {e}")
    try: data = synth_sample(n_studies=a.n_studies, slices=a.slices)
    except SynthError as e: raise SystemExit(f"bench/from_scratch.py: {e}")
    cache = synth_cache(size=a.size, data_dir=data)
    dev = 'GPU' if torch.cuda.is_available() else f'CPU, {torch.get_num_threads()} threads'
    print(f"{dev}; synthetic sample of {a.n_studies} training studies of {a.slices} slices, cache {a.size} px; batch {a.bs}, lr {a.lr:g}, "
          f"budget {a.budget:g} s of training per architecture"
          f"{'; output bias at the class log-odds' if a.prior_bias else ''}"
          f"{'; residual blocks start as the identity' if a.zero_init else ''}{f'; weight decay {a.wd:g}' if a.wd else '; no weight decay'}"
          f"{f'; stochastic depth {a.drop_path:g}' if a.drop_path else ''}")
    rows = []
    for arch in archs:
        set_seed(a.seed, reproducible=True)                # Python's random (batch order), NumPy, torch
        dls = cache_dls(cache, bs=a.bs, seed=a.seed)
        learn = make_learner(arch, dls, a.prior_bias, a.zero_init, a.wd, a.drop_path)
        learn.logger = lambda *a, **k: None                # one line per architecture, not one per epoch
        epochs = max(1, int(a.budget / seconds_per_epoch(learn)))
        t = time.perf_counter()
        with learn.no_bar(): learn.fit_one_cycle(epochs, a.lr)
        secs = time.perf_counter() - t
        val = dls.valid.dataset
        m = metrics_summary(val.y, predict_rows(learn, val))
        prior = prior_log_loss(dls.train.dataset.y, val.y)
        n_par = sum(p.numel() for p in learn.model.parameters())
        rows.append((arch, n_par, epochs, secs, m['weighted_log_loss'], prior, m['auc_any']))
        print(f"  {arch:16s} {n_par/1e6:5.2f} M params  {epochs:3d} epochs  {secs:6.1f} s  weighted log loss "
              f"{m['weighted_log_loss']:.4f} (prior-only {prior:.4f}: {vs_prior(m['weighted_log_loss'], prior)})  "
              f"AUC(any) {m['auc_any']:.3f}", flush=True)
    base = [r for r in rows if r[0] == 'plain_cnn']
    if base and len(rows) > 1:
        print("against plain_cnn (weighted log loss ratio, AUC(any) difference):")
        for r in rows:
            if r[0] != 'plain_cnn': print(f"  {r[0]:16s} {r[4]/base[0][4]:.2f}x  {r[6]-base[0][6]:+.3f}")

if __name__ == '__main__': main()
