import json, os, re, sys, tempfile
from pathlib import Path
import pytest

# Under pytest-xdist (`make test` runs two processes) each process, and what it starts, gets its share of the cores:
# two processes that each spread torch over every core slow each other down several times over.
if (n := int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 0)) > 1 and 'OMP_NUM_THREADS' not in os.environ:
    os.environ['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // n))

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SAMPLES = Path(os.environ.get('ICH_RSNA_SAMPLES', ROOT.parent/'shared'/'data'/'rsna-samples'))
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))

@pytest.fixture(scope='session')
def rsna_samples():
    "The folder of real RSNA slices, or a skip when this machine has none."
    if not any(SAMPLES.glob('*.dcm')): pytest.skip(f'real RSNA samples not found in {SAMPLES}')
    return SAMPLES

@pytest.fixture(scope='session')
def synth_dir():
    "The embedded synthetic sample (generated once, then cached)."
    from ich_nbdev.synth import synth_sample
    return synth_sample()

# Absolute paths that belong to the machine a notebook ran on: the usual places of home folders, temporary files and
# checkouts, and this machine's own (repository, Python environment, home, temporary folder).
MACHINE_PREFIXES = ['/tmp', '/root', '/home', '/work', '/Users', '/private/var', '/var/folders']

def machine_prefixes():
    "The absolute path prefixes that must not appear in a committed notebook's outputs."
    own = [ROOT, sys.prefix, sys.base_prefix, Path.home(), tempfile.gettempdir()]
    found = set(MACHINE_PREFIXES) | {str(Path(p)).rstrip('/') for p in own}
    return sorted((p for p in found if len(p) > 1), key=len, reverse=True)

def _path_re(prefixes):
    # a prefix at the start of a path (not inside a URL or a longer name), then the rest of the path
    return re.compile(r'(?<![\w.~:-])(?:' + '|'.join(map(re.escape, prefixes)) + r')(?![\w.-])[^\s\'"<>`,;)]*')

def _output_texts(out):
    "The text of one cell output (streams, text and JSON data, error tracebacks); images are skipped."
    join = lambda v: ''.join(v) if isinstance(v, list) else str(v)
    if out.get('output_type') == 'stream': yield join(out.get('text', ''))
    for kind, v in (out.get('data') or {}).items():
        if kind.startswith('text/') or kind.endswith('json') or kind in ('image/svg+xml', 'application/javascript'):
            yield v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict) else join(v)
    if out.get('output_type') == 'error':
        yield out.get('evalue', ''); yield '\n'.join(out.get('traceback', []))

def machine_paths_in_outputs(nb:dict, prefixes=None) -> list[tuple[int, str, str, str]]:
    "(cell index, cell id, path, the line it is on) for each machine path in the outputs of notebook `nb`, once per cell."
    pat = _path_re(prefixes or machine_prefixes())
    found, seen = [], set()
    for i, cell in enumerate(nb.get('cells', [])):
        for out in cell.get('outputs', []):
            for text in _output_texts(out):
                for m in pat.finditer(text):
                    path = m.group(0).rstrip('.:')
                    if (i, path) in seen: continue
                    seen.add((i, path))
                    line = text[text.rfind('\n', 0, m.start()) + 1:].split('\n', 1)[0]
                    found.append((i, cell.get('id', '?'), path, line.strip()[:160]))
    return found
