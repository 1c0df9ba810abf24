"""`ich-synth`, `ich-meta` and `ich-prepare` as a user meets them in the first hour: the installed commands in a
subprocess, run from a working folder of their own with relative paths, output going to a file (not a terminal),
a second run over the first one's output, and every kind of mistake answered with one line and a non-zero status.
Also the input benchmarks' own options (`bench/preprocess.py --profile`, `bench/synth.py`)."""
import json, os, resource, shutil, signal, subprocess, sys
from pathlib import Path

import numpy as np, pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def tool(name, *args, cwd, log=None, env=None, preexec_fn=None, timeout=600):
    "Run an installed command in `cwd`; stdout goes to the file `log` (or a pipe), stderr to a pipe."
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != 'ICH_PROGRESS'}   # the tools decide themselves
    with open(log or os.devnull, 'w') as out:
        r = subprocess.run([str(BIN/name), *map(str, args)], cwd=cwd, stdout=out if log else subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env, timeout=timeout, preexec_fn=preexec_fn)
    r.log = Path(log).read_text() if log else r.stdout
    return r

def one_line_error(r, tool_name):
    "The message of a failed run: exactly one line on stderr, naming the tool, no traceback."
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr.startswith(f'{tool_name}: ') and r.stderr.count('\n') == 1, r.stderr
    assert 'Traceback' not in r.stderr
    return r.stderr.strip()

def no_redraws(text):
    "Output written to a file holds whole lines, no progress-bar redraws."
    assert '\r' not in text and '\x1b' not in text, repr(text[:500])

def file_size_limit(n):
    "For `preexec_fn`: writes beyond `n` bytes fail with EFBIG ('File too large'), as on a full disk."
    def f():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return f

@pytest.fixture(scope='module')
def dicoms(synth_dir, tmp_path_factory):
    "A working folder holding `dicoms/`: 40 slices of the synthetic sample."
    wd = tmp_path_factory.mktemp('wd')
    (wd/'dicoms').mkdir()
    for p in sorted((synth_dir/'stage_2_train').glob('*.dcm'))[:40]: shutil.copy(p, wd/'dicoms'/p.name)
    return wd

def odd_folder(synth_dir, where):
    "`where/odd`: slices behind a folder link, a name that is not UTF-8, a broken link, a link that loops."
    src = sorted((synth_dir/'stage_2_test').glob('*.dcm'))[:6]
    d, store = where/'odd', where/'store'
    d.mkdir(); store.mkdir()
    for p in src[:3]: shutil.copy(p, d/p.name)
    shutil.copy(src[3], store/src[3].name); shutil.copy(src[4], store/src[4].name)
    os.symlink(store, d/'linked')
    shutil.copy(src[5], os.path.join(os.fsencode(d), b'ID_\xff\xfe.dcm'))
    os.symlink(where/'nothing-here.dcm', d/'ID_gone.dcm')
    os.symlink(d, d/'linked'/'back-up')          # into the store: a way back to the top folder (a loop)
    return d, src

# ---------------------------------------------------------------- ich-synth
def test_synth_relative_paths_log_and_rerun(tmp_path):
    args = ('data', '--n-studies', '2', '--n-test-studies', '1', '--slices', '4', '--n-workers', '0')
    r = tool('ich-synth', *args, cwd=tmp_path, log=tmp_path/'log')
    assert r.returncode == 0, r.stderr
    no_redraws(r.log)
    lines = r.log.splitlines()
    assert lines[0].startswith('studies: 3 written in') and lines[1].startswith('data: 12 DICOM files'), lines
    first = sorted(p.name for p in (tmp_path/'data'/'stage_2_train').iterdir())
    assert len(first) == 8
    r = tool('ich-synth', *args, '--quiet', cwd=tmp_path, log=tmp_path/'log2')        # over the first one's output
    assert r.returncode == 0, r.stderr
    assert r.log.startswith('data: 12 DICOM files') and 'written in' not in r.log
    assert sorted(p.name for p in (tmp_path/'data'/'stage_2_train').iterdir()) == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []

SYNTH_BAD = [
    (['--size', '0'], 'ich-synth: --size must be between 64 and 1024, not 0'),
    (['--n-studies', '0'], 'ich-synth: --n-studies must be at least 1, not 0'),
    (['--n-studies', '-4'], 'ich-synth: --n-studies must be at least 1, not -4'),
    (['--n-test-studies', '-1'], 'ich-synth: --n-test-studies must be at least 0, not -1'),
    (['--slices', '2'], 'ich-synth: --slices must be at least 3, not 2; a bleed spans 3 or more slices'),
    (['--seed', '-1'], 'ich-synth: --seed must be at least 0, not -1'),
    (['--noise', '-1'], 'ich-synth: --noise must be at least 0, not -1.0'),
    (['--lesion-scale', '0'], 'ich-synth: --lesion-scale must be positive, not 0.0'),
    (['--contrast', 'nan'], 'ich-synth: --contrast must be positive, not nan'),
    (['--n-workers', '-3'], 'ich-synth: --n-workers must be at least 0, not -3'),
    (['--mimics', '-1'], 'ich-synth: --mimics must be between 0 and 50, not -1.0; dense foci per study'),
    (['--mimics', '60'], 'ich-synth: --mimics must be between 0 and 50, not 60.0; dense foci per study'),
]

@pytest.mark.parametrize('args,message', SYNTH_BAD, ids=[' '.join(a) for a, _ in SYNTH_BAD])
def test_synth_bad_arguments(tmp_path, args, message):
    r = tool('ich-synth', 'out', *args, cwd=tmp_path)
    assert one_line_error(r, 'ich-synth').startswith(message)
    assert not (tmp_path/'out').exists()

def test_synth_mimics_recorded(tmp_path):
    r = tool('ich-synth', 'data', '--n-studies', '2', '--n-test-studies', '0', '--slices', '4', '--mimics', '3', '--quiet',
             '--n-workers', '0', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path/'data'/'synth_info.json').read_text())
    assert info['params']['mimics'] == 3.0
    r = tool('ich-synth', 'plain', '--n-studies', '2', '--n-test-studies', '0', '--slices', '4', '--quiet', '--n-workers', '0', cwd=tmp_path)
    assert 'mimics' not in json.loads((tmp_path/'plain'/'synth_info.json').read_text())['params']   # none: not recorded
    from ich_nbdev.synth import write_synthetic_rsna, SynthError
    with pytest.raises(SynthError, match='mimics must be between 0 and 50'): write_synthetic_rsna(tmp_path/'x', mimics=-2)

def test_synth_unusable_outputs(tmp_path):
    (tmp_path/'a-file').write_text('x')
    msg = one_line_error(tool('ich-synth', 'a-file', '--n-studies', '1', '--slices', '3', cwd=tmp_path), 'ich-synth')
    assert 'a-file exists and is not a folder' in msg
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'notes.txt').write_text('precious')
    msg = one_line_error(tool('ich-synth', 'mine', '--n-studies', '1', '--slices', '3', cwd=tmp_path), 'ich-synth')
    assert 'is not a synthetic sample' in msg and (tmp_path/'mine'/'notes.txt').read_text() == 'precious'
    r = tool('ich-synth', 'out', '--size', 'big', cwd=tmp_path)        # not a number: argparse's own message
    assert r.returncode == 2 and "argument --size: invalid int value: 'big'" in r.stderr and 'Traceback' not in r.stderr

# ---------------------------------------------------------------- ich-meta
def test_meta_relative_paths_log_and_rerun(dicoms):
    r = tool('ich-meta', 'dicoms', '--out', 'tables/meta.csv', '--n-workers', '2', cwd=dicoms, log=dicoms/'log')
    assert r.returncode == 0, r.stderr
    no_redraws(r.log)
    assert r.log.startswith('40 image(s) from 40 file(s) in') and '-> tables/meta.csv' in r.log and 'problems: none' in r.log
    meta = pd.read_csv(dicoms/'tables'/'meta.csv')
    assert len(meta) == 40 and 'instance_number' in meta.columns
    assert pd.read_csv(dicoms/'tables'/'meta_problems.csv').empty
    r = tool('ich-meta', 'dicoms', '--out', 'tables/meta.csv', '--quiet', cwd=dicoms, log=dicoms/'log2')   # again
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(dicoms/'tables'/'meta.csv'), meta)
    assert r.log.startswith('40 image(s) from 40 file(s)'), r.log          # --quiet: no progress, the summary stays

def test_meta_stale_problems_do_not_survive(dicoms, tmp_path):
    d = tmp_path/'d'; shutil.copytree(dicoms/'dicoms', d)
    (d/'notes.txt').write_text('not a slice')
    r = tool('ich-meta', 'd', '--out', 'm.csv', '--quiet', cwd=tmp_path)
    assert r.returncode == 0 and '1 file(s) could not be used (listed in m_problems.csv)' in r.stdout, r.stdout
    assert pd.read_csv(tmp_path/'m_problems.csv').path.tolist() == ['d/notes.txt']
    (d/'notes.txt').unlink()
    r = tool('ich-meta', 'd', '--out', 'm.csv', '--quiet', cwd=tmp_path)
    assert r.returncode == 0 and 'problems: none' in r.stdout, r.stdout
    assert pd.read_csv(tmp_path/'m_problems.csv').empty             # the earlier run's list is gone

def test_meta_output_inside_input_is_not_read(dicoms, tmp_path):
    d = tmp_path/'d'; shutil.copytree(dicoms/'dicoms', d)
    for _ in range(2):
        r = tool('ich-meta', '.', '--out', 'meta.csv', '--quiet', cwd=d)
        assert r.returncode == 0 and 'problems: none' in r.stdout, r.stdout
    assert len(pd.read_csv(d/'meta.csv')) == 40

def test_meta_links_and_odd_names(synth_dir, tmp_path):
    d, src = odd_folder(synth_dir, tmp_path)
    r = tool('ich-meta', 'odd', '--out', 'm.parquet', '--n-workers', '0', cwd=tmp_path, log=tmp_path/'log')
    assert r.returncode == 0, r.stderr
    meta = pd.read_parquet(tmp_path/'m.parquet')
    assert sorted(meta.path) == sorted([f'odd/{p.name}' for p in src[:3]] + [f'odd/linked/{p.name}' for p in src[3:5]]
                                       + ['odd/ID_\\xff\\xfe.dcm'])
    problems = pd.read_csv(tmp_path/'m_problems.csv').set_index('path').reason
    assert sorted(problems.index) == ['odd/ID_gone.dcm', 'odd/linked/back-up']
    assert problems['odd/ID_gone.dcm'].startswith('broken symbolic link')
    assert 'odd/ID_gone.dcm: broken symbolic link' in r.log and 'odd/linked/back-up: link to a folder' in r.log

META_BAD = [
    (['missing'], 'ich-meta: missing: not a folder'),
    (['empty'], 'ich-meta: empty: no files, so no DICOM files to read'),
    (['texts'], "ich-meta: texts: none of its 2 file(s) is a usable DICOM; e.g. a.txt: not a DICOM file"),
    (['dicoms', '--out', 'm.xlsx'], "ich-meta: --out must end in .csv or .parquet, not 'm.xlsx'"),
    (['dicoms', '--out', 'folder.csv'], 'ich-meta: --out folder.csv is a folder'),
    (['dicoms', '--n-workers', '-3'], 'ich-meta: --n-workers must be at least 0, not -3'),
    (['dicoms', '--out', 'afile/m.csv'], 'ich-meta: afile'),
]

@pytest.mark.parametrize('args,message', META_BAD, ids=[' '.join(a) for a, _ in META_BAD])
def test_meta_bad_arguments(dicoms, tmp_path, args, message):
    shutil.copytree(dicoms/'dicoms', tmp_path/'dicoms')
    (tmp_path/'empty').mkdir(); (tmp_path/'texts').mkdir(); (tmp_path/'folder.csv').mkdir()
    (tmp_path/'texts'/'a.txt').write_text('x'); (tmp_path/'texts'/'b.txt').write_text('y'); (tmp_path/'afile').write_text('x')
    assert one_line_error(tool('ich-meta', *args, cwd=tmp_path), 'ich-meta').startswith(message)
    assert not (tmp_path/'metadata.csv').exists() and not (tmp_path/'m.xlsx').exists()

def test_meta_write_error_is_one_line(dicoms, tmp_path):
    shutil.copytree(dicoms/'dicoms', tmp_path/'dicoms')
    r = tool('ich-meta', 'dicoms', '--out', 'm.csv', '--quiet', cwd=tmp_path, preexec_fn=file_size_limit(4096))
    assert one_line_error(r, 'ich-meta') == 'ich-meta: m.csv: File too large'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['dicoms']       # nothing half-written left behind

# ---------------------------------------------------------------- ich-prepare
def test_prepare_relative_paths_log_and_rerun(dicoms):
    r = tool('ich-prepare', 'dicoms', '--out', 'caches/c64', '--size', '64', '--n-workers', '2', '--chunk-size', '8',
             cwd=dicoms, log=dicoms/'plog')
    assert r.returncode == 0, r.stderr
    no_redraws(r.log)
    lines = r.log.splitlines()
    assert lines[0].startswith('chunks of 8 files: 5 done in'), lines
    assert lines[1].startswith('caches/c64 (64 px, head box fills the frame (scale fit), brain, subdural, bone): images: 40 slices')
    assert lines[-1].startswith('ich-prepare: 40 slices in caches/c64'), lines
    info = json.loads((dicoms/'caches'/'c64'/'cache.json').read_text())
    assert info['complete'] and info['source'] == str((dicoms/'dicoms').resolve())
    r = tool('ich-prepare', 'dicoms', '--out', 'caches/c64', '--size', '64', '--chunk-size', '8', cwd=dicoms, log=dicoms/'plog2')
    assert r.returncode == 0 and r.log.startswith('caches/c64: cache complete, nothing to do'), r.log
    r = tool('ich-prepare', 'dicoms', '--out', 'caches/c64', '--size', '64', '--chunk-size', '8', '--quiet', cwd=dicoms, log=dicoms/'plog3')
    assert r.returncode == 0 and r.log == '', r.log

def on_a_terminal(args, cwd):
    "Run an installed command with a pseudo-terminal as its standard output; its return code and what it wrote there."
    import pty
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != 'ICH_PROGRESS'}
    p = subprocess.Popen([str(BIN/args[0]), *map(str, args[1:])], cwd=cwd, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = b''
    while True:
        try: chunk = os.read(master, 4096)
        except OSError: break                          # the other end is closed
        if not chunk: break
        out += chunk
    os.close(master)
    return p.wait(timeout=600), out.decode(errors='replace')

def test_prepare_live_bar_on_a_terminal(dicoms, tmp_path):
    code, text = on_a_terminal(['ich-prepare', 'dicoms', '--out', tmp_path/'c', '--size', '64', '--chunk-size', '8', '--n-workers', '0'], dicoms)
    assert code == 0, text
    assert '\r' in text and '5/5' in text, repr(text)              # a bar, redrawn, to the last chunk
    assert 'chunks of 8 files: 5 done in' not in text                # the line for logs is not printed too

PREPARE_BAD = [
    (['dicoms'], 'ich-prepare: give the cache folder with --out'),
    (['dicoms', '--out', 'c', '--size', '0'], 'ich-prepare: --size must be between 16 and 2048, not 0'),
    (['dicoms', '--out', 'c', '--windows', 'brian'], "ich-prepare: unknown window 'brian'"),
    (['dicoms', '--out', 'c', '--windows', '40/0'], "ich-prepare: window '40/0': width must be positive"),
    (['dicoms', '--out', 'c', '--chunk-size', '0'], 'ich-prepare: --chunk-size must be at least 1, not 0'),
    (['dicoms', '--out', 'c', '--n-workers', '-3'], 'ich-prepare: --n-workers must be at least 0, not -3'),
    (['dicoms', '--out', 'c', '--scale', 'stretch'], "ich-prepare: --scale must be one of fixed, fit, not 'stretch'"),
    (['dicoms', '--out', 'c', '--fov-mm', '0'], 'ich-prepare: --fov-mm must be between 50 and 1000, not 0.0'),
    (['dicoms', '--out', 'afile'], 'ich-prepare: afile: is a file, not a folder'),
    (['dicoms', '--out', 'dicoms/cache'], 'ich-prepare: dicoms/cache: inside the data folder dicoms'),
    (['dicoms', '--out', 'dicoms'], 'ich-prepare: dicoms: inside the data folder dicoms'),
    (['dicoms', '--out', 'other'], 'ich-prepare: other: exists and is not a cache'),
    (['missing', '--out', 'c'], 'ich-prepare: missing: not a folder'),
    (['empty', '--out', 'c'], 'ich-prepare: empty: no files to preprocess'),
    (['texts', '--out', 'c'], 'ich-prepare: texts: none of its 2 file(s) could be preprocessed; reasons in c/problems.csv'),
]

@pytest.mark.parametrize('args,message', PREPARE_BAD, ids=[' '.join(a) for a, _ in PREPARE_BAD])
def test_prepare_bad_arguments(dicoms, tmp_path, args, message):
    shutil.copytree(dicoms/'dicoms', tmp_path/'dicoms')
    (tmp_path/'empty').mkdir(); (tmp_path/'texts').mkdir(); (tmp_path/'other').mkdir()
    (tmp_path/'texts'/'a.txt').write_text('x'); (tmp_path/'texts'/'b.txt').write_text('y')
    (tmp_path/'afile').write_text('x'); (tmp_path/'other'/'thesis.pdf').write_text('%PDF')
    assert one_line_error(tool('ich-prepare', *args, '--quiet', cwd=tmp_path), 'ich-prepare').startswith(message)
    if 'texts' not in args: assert not (tmp_path/'c').exists() and not (tmp_path/'dicoms'/'cache').exists()

def test_prepare_links_and_odd_names(synth_dir, tmp_path):
    d, src = odd_folder(synth_dir, tmp_path)
    r = tool('ich-prepare', 'odd', '--out', 'cache', '--size', '64', '--n-workers', '0', cwd=tmp_path, log=tmp_path/'log')
    assert r.returncode == 0, r.stderr
    idx = pd.read_parquet(tmp_path/'cache'/'images.parquet')
    assert sorted(idx.path) == sorted([p.name for p in src[:3]] + [f'linked/{p.name}' for p in src[3:5]] + ['ID_\\xff\\xfe.dcm'])
    problems = pd.read_csv(tmp_path/'cache'/'problems.csv').set_index('path').reason
    assert sorted(problems.index) == ['ID_gone.dcm', 'linked/back-up'] and problems['ID_gone.dcm'].startswith('broken symbolic link')
    assert 'images/ID_gone.dcm: broken symbolic link' in r.log
    r = tool('ich-prepare', 'odd', '--out', 'cache', '--size', '64', cwd=tmp_path)          # the plan kept every name
    assert r.returncode == 0 and 'nothing to do' in r.stdout, r.stdout + r.stderr

def test_prepare_write_error_is_one_line(dicoms, tmp_path):
    shutil.copytree(dicoms/'dicoms', tmp_path/'dicoms')
    r = tool('ich-prepare', 'dicoms', '--out', 'c', '--size', '64', '--quiet', cwd=tmp_path, preexec_fn=file_size_limit(100_000))
    msg = one_line_error(r, 'ich-prepare')
    assert msg.startswith('ich-prepare: c/images.npy') and msg.endswith('File too large'), msg
    assert not (tmp_path/'c'/'images.npy').exists() and not [p for p in (tmp_path/'c').iterdir() if p.suffix == '.part']

# ---------------------------------------------------------------- the input benchmarks' own options
def run_bench(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT)

def test_bench_preprocess_profile(synth_dir):
    r = run_bench('bench/preprocess.py', '--dir', synth_dir/'stage_2_test', '--reads', '20', '--rounds', '1', '--size', '64', '--profile')
    assert r.returncode == 0, r.stderr[-3000:]
    for step in ('load_hu_fast', 'head_bbox', 'stack_windows + to_uint8', 'preprocess_file (all)'):
        line = next((l for l in r.stdout.splitlines() if l.strip().startswith(step)), None)
        assert line and float(line.split()[-1]) > 0, (step, r.stdout)
    assert 'cache row -> tensor:' in r.stdout

def test_bench_preprocess_without_samples(tmp_path):
    r = run_bench('bench/preprocess.py', '--dir', tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('skipped: no DICOM slices in'), r.stdout + r.stderr

def test_bench_synth_bad_rounds():
    r = run_bench('bench/synth.py', '--rounds', '0')
    assert r.returncode != 0 and 'bench/synth.py: --rounds must be at least 1' in r.stderr
