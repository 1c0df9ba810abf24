"""How long the synthetic sample takes to generate: the default data set of every chapter (40 + 10 studies of 24
slices at 128 x 128), written to a temporary folder.

    python bench/synth.py [--rounds 2] [--n-workers N]

Prints seconds and files per second of each round and the best round. Wall-clock time on a machine shared with other
work varies; the best of several rounds is the steadier figure. Target: the default sample in under 60 s on two cores.
"""
import argparse, os, shutil, sys, tempfile, time
from pathlib import Path

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=2, help='samples to generate; the best round counts')
    ap.add_argument('--n-workers', type=int, default=None, help='worker processes (default: one per core)')
    a = ap.parse_args()
    if a.rounds < 1: sys.exit("bench/synth.py: --rounds must be at least 1")
    if a.n_workers is not None and a.n_workers < 0: sys.exit("bench/synth.py: --n-workers must be 0 or more")
    from ich_nbdev.synth import write_synthetic_rsna, read_synth_info
    tmp = Path(tempfile.mkdtemp(prefix='bench-synth-'))
    try:
        best = float('inf')
        for k in range(a.rounds):
            t = time.perf_counter()
            out = write_synthetic_rsna(tmp/f'sample{k}', n_workers=a.n_workers, progress=False)
            secs = time.perf_counter() - t
            info = read_synth_info(out)
            n = info['train_images'] + info['test_images']
            print(f"round {k + 1}: {n} files in {secs:.1f} s ({n/secs:.0f} files/s)", flush=True)
            best = min(best, secs)
            shutil.rmtree(out)
        workers = a.n_workers if a.n_workers is not None else os.cpu_count()
        print(f"best: {best:.1f} s for the default sample with {workers} worker(s) on {os.cpu_count()} core(s) "
              f"(target < 60 s on two cores): {'met' if best < 60 else 'NOT met'}")
    finally: shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__': main()
