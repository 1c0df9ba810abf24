"""Metadata-table speed: `read_dicom_header` / `dicom_meta` against reading every file fully with `pydicom.dcmread`.

    python bench/meta.py [--dir DICOM_DIR] [--reads 1210] [--cold]

Uses the real RSNA samples (../shared/data/rsna-samples) by default, each file read `reads/len(files)` times.
`--cold` drops each file from the OS page cache before every pass (posix_fadvise DONTNEED), as when reading a
450 GB data set that cannot stay in memory. Ratios are printed last.
"""
import argparse, os, time, warnings
from pathlib import Path
import pydicom
from pydicom import config
from fastcore.parallel import parallel
from ich_nbdev.data import read_dicom_header, dicom_meta

ROOT = Path(__file__).resolve().parents[1]

def drop_cache(files):
    for p in set(files):
        fd = os.open(p, os.O_RDONLY)
        try: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally: os.close(fd)

def full_read(p):
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter('ignore')
        return pydicom.dcmread(p).SOPInstanceUID

def _full_chunk(ps): return [full_read(p) for p in ps]

def timed(name, fn, files, cold):
    if cold: drop_cache(files)
    t = time.perf_counter(); fn(files); secs = time.perf_counter() - t
    return name, len(files) / secs

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--dir', default=os.environ.get('ICH_RSNA_SAMPLES', ROOT.parent/'shared/data/rsna-samples'))
    ap.add_argument('--reads', type=int, default=1210)
    ap.add_argument('--cold', action='store_true')
    a = ap.parse_args()
    files = sorted(Path(a.dir).glob('*.dcm'))
    if not files: raise SystemExit(f"no DICOM files in {a.dir}; pass --dir")
    reps = max(1, a.reads // len(files))
    ncpu = os.cpu_count()
    chunks = lambda fs: [fs[i:i+256] for i in range(0, len(fs), 256)]
    runs = []
    for rep in range(reps):          # interleave the methods so drift in machine load hits all of them alike
        runs += [timed('pydicom.dcmread, full file, 1 process', lambda fs: [full_read(p) for p in fs], files, a.cold),
                 timed('read_dicom_header, 1 process', lambda fs: [read_dicom_header(p) for p in fs], files, a.cold)]
    big = files * reps
    runs += [timed(f'pydicom.dcmread, full file, {ncpu} processes', lambda fs: parallel(_full_chunk, chunks(fs), n_workers=ncpu, progress=False), big, a.cold),
             timed(f'dicom_meta, {ncpu} processes', lambda fs: dicom_meta(fs, n_workers=ncpu, progress=False), big, a.cold)]
    agg = {}
    for name, rate in runs: agg.setdefault(name, []).append(rate)
    print(f"{len(files)} files x {reps} = {len(files)*reps} reads per method, {'cold' if a.cold else 'warm'} page cache, {ncpu} cores")
    rates = {}
    for name, rs in agg.items():
        n_reads = len(files) * reps
        rates[name] = n_reads / sum(len(files) / r for r in rs) if len(rs) > 1 else rs[0]
        print(f"  {name:45s} {rates[name]:9.0f} files/s")
    base1, base_n = rates['pydicom.dcmread, full file, 1 process'], rates[f'pydicom.dcmread, full file, {ncpu} processes']
    print(f"ratio read_dicom_header / full dcmread (1 process): {rates['read_dicom_header, 1 process']/base1:.1f}x")
    print(f"ratio dicom_meta ({ncpu} processes) / full dcmread (1 process): {rates[f'dicom_meta, {ncpu} processes']/base1:.1f}x")
    print(f"ratio dicom_meta / full dcmread ({ncpu} processes each): {rates[f'dicom_meta, {ncpu} processes']/base_n:.1f}x")

if __name__ == '__main__': main()
