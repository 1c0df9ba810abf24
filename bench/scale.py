"""Which framing of the head trains better: `--scale fixed` (the same mm per pixel for every slice) or `--scale fit`
(the head's box stretched to fill the frame). Builds both caches of the same synthetic data and trains the same recipe
on each with the same seeds; prints the validation figures of every run and the mean per framing.

    python bench/scale.py [--seeds 42,1,2] [--epochs 12] [--size 64] [--fov-mm 256] [--out DIR]
    OMP_NUM_THREADS=1 python bench/scale.py ...   (on a machine whose cores are busy with other work: torch's threads
                                                   then wait on each other and each run takes many times longer)

Defaults: `synth_sample(n_studies=480, slices=4)`, caches at 64 px, and the MobileNetV2 recipe of the notebooks
(`ich-train CACHE --arch mobilenetv2_100 --size 64 --bs 16 --lr 3e-3 --epochs 12 --prior-bias --zero-init --wd 0.05
--seed S --quiet`). A run whose `metrics.json` is already in OUT is not repeated, so an interrupted comparison resumes.
On a CPU each run takes a few minutes.
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', default='42,1,2', help='comma-separated training seeds')
    ap.add_argument('--epochs', type=int, default=12)
    ap.add_argument('--size', type=int, default=64, help='cache and training size, pixels')
    ap.add_argument('--fov-mm', type=float, default=256.0, help='field of view of the fixed framing, mm')
    ap.add_argument('--n-studies', type=int, default=480)
    ap.add_argument('--slices', type=int, default=4)
    ap.add_argument('--out', type=Path, default=None, help='where the runs go (default: in the ich_nbdev cache folder)')
    a = ap.parse_args()
    try: seeds = [int(s) for s in a.seeds.split(',') if s.strip()]
    except ValueError: sys.exit(f"bench/scale.py: --seeds must be comma-separated integers, not {a.seeds!r}")
    if not seeds or a.epochs < 1 or a.size < 16 or not a.fov_mm > 0:
        sys.exit("bench/scale.py: give at least one seed, --epochs >= 1, --size >= 16 and a positive --fov-mm")
    from ich_nbdev.core import cache_root
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.preprocess import build_cache
    data = synth_sample(n_studies=a.n_studies, slices=a.slices)
    out = (a.out or cache_root()/f'bench-scale-{data.name}').expanduser()
    train = str(Path(sys.executable).parent/'ich-train')
    rows = []
    for scale in ('fixed', 'fit'):
        cache = cache_root()/(f'{data.name}-cache-{a.size}-{scale}' + (f'-{a.fov_mm:g}' if scale == 'fixed' else ''))
        t = time.time(); build_cache(data, cache, size=a.size, scale=scale, fov_mm=a.fov_mm, progress=False)
        print(f"{scale}: cache {cache.name} ready ({time.time() - t:.0f} s)", flush=True)
        for seed in seeds:
            run = out/(f'{scale}-{a.fov_mm:g}mm-seed{seed}' if scale == 'fixed' else f'{scale}-seed{seed}')
            if not (run/'metrics.json').exists():
                t = time.time()
                cmd = [train, str(cache), '--arch', 'mobilenetv2_100', '--size', str(a.size), '--bs', '16', '--lr', '3e-3',
                       '--epochs', str(a.epochs), '--prior-bias', '--zero-init', '--wd', '0.05', '--seed', str(seed),
                       '--quiet', '--out', str(run)]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode: sys.exit(f"bench/scale.py: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
                print(f"  seed {seed}: trained in {time.time() - t:.0f} s", flush=True)
            m = json.loads((run/'metrics.json').read_text())
            rows.append(dict(scale=scale if scale == 'fit' else f'fixed {a.fov_mm:g} mm', seed=seed,
                             **{k: m[k] for k in ('weighted_log_loss', 'prior_log_loss', 'auc_any')}))
    import pandas as pd
    df = pd.DataFrame(rows)
    print(f"\ndata: synth_sample(n_studies={a.n_studies}, slices={a.slices}); size {a.size}; "
          f"fixed field of view {a.fov_mm:g} mm; {a.epochs} epochs")
    print(df.to_string(index=False, float_format=lambda v: f'{v:.4f}'))
    mean = df.groupby('scale')[['weighted_log_loss', 'prior_log_loss', 'auc_any']].agg(['mean', 'std'])
    print('\nmean (std) over seeds:')
    print(mean.to_string(float_format=lambda v: f'{v:.4f}'))

if __name__ == '__main__': main()
