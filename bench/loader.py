"""DataLoader throughput from a training cache: slices/s delivered after the batch transform (uint8 -> float,
random horizontal flips, normalisation), at 256 px, with 0 and 2 worker processes.

    python bench/loader.py [--cache CACHE_DIR] [--size 256] [--bs 64] [--batches 40]

Without --cache it builds (once) a 256 px cache of the synthetic sample. Baseline in the same run: fastai's
`Datasets` + `TfmdDL` path (one item at a time, default collate, `Flip` batch transform), on the same rows.
"""
import argparse, time
import numpy as np, torch
from ich_nbdev.learner import synth_cache, cache_dls, loader_speed, CacheRows

def fastai_item_loader(rows:CacheRows, bs, workers):
    "The usual fastai way: an item pipeline over the same memory-mapped rows, then a batch Flip."
    from fastai.data.core import Datasets
    from fastai.data.transforms import IntToFloatTensor
    from fastai.vision.augment import Flip
    from fastai.torch_core import TensorImage, TensorMultiCategory
    arr, r, y = rows.arr, rows.rows, rows.y
    dsets = Datasets(list(range(len(rows))), [[lambda i: TensorImage(torch.from_numpy(np.array(arr[r[i]])))],
                                              [lambda i: TensorMultiCategory(torch.from_numpy(y[i]))]], splits=None)
    return dsets.dataloaders(bs=bs, num_workers=workers, shuffle=True, after_batch=[IntToFloatTensor(), Flip(p=0.5)]).train

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cache'); ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--bs', type=int, default=64); ap.add_argument('--batches', type=int, default=40)
    a = ap.parse_args()
    cache = a.cache or synth_cache(size=a.size)
    torch.set_num_threads(2)
    res = {}
    for w in (0, 2):
        dls = cache_dls(cache, bs=a.bs, num_workers=w, device='cpu')
        res[f'CacheDL uint8 batches, {w} workers'] = loader_speed(dls.train.new(after_batch=lambda b: b), a.batches)
        res[f'CacheDL + transforms on CPU, {w} workers'] = loader_speed(dls.train, a.batches)
    for w in (0, 2):
        res[f'fastai Datasets/TfmdDL, {w} workers'] = loader_speed(fastai_item_loader(cache_dls(cache, bs=a.bs).train.dataset, a.bs, w), a.batches // 2)
    shape = cache_dls(cache, bs=a.bs).one_batch()[0].shape
    print(f"batches of {tuple(shape)} (flips on), {a.batches} batches each")
    for k, v in res.items(): print(f"  {k:38s} {v:8.0f} slices/s")
    print("(on a GPU the transforms run there; the CPU's job is the uint8 batches)")
    print(f"ratio CacheDL + transforms / fastai item pipeline, 2 workers: {res['CacheDL + transforms on CPU, 2 workers']/res['fastai Datasets/TfmdDL, 2 workers']:.1f}x")
    print(f"CacheDL uint8 batches, 2 workers: {res['CacheDL uint8 batches, 2 workers']:.0f} slices/s (target >= 2000)")

if __name__ == '__main__': main()
