"""The docs site's notebook step on a fresh copy of the project: `nbdev-proc-nbs`, which `nbdev-docs` and the deploy
workflow run before Quarto, must succeed; every module page must carry the API section (`show_doc`) of each function
and class its module exports, and every figure its notebook stores; and what the docs build runs must not print this
machine's paths."""
import importlib, json, os, shutil, subprocess, sys, tempfile
from pathlib import Path
import pytest
from conftest import NOTEBOOKS, ROOT, machine_paths_in_outputs

BIN = Path(sys.executable).parent
FIGURES = ('image/png', 'image/jpeg', 'image/svg+xml')

def fresh_copy(dest:Path) -> Path:
    "The project's files as a fresh clone would have them (tracked and new files, nothing git ignores) under `dest`."
    r = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode == 0: files = [f for f in r.stdout.split('\0') if f and (ROOT/f).is_file()]
    else:                                                              # not a git checkout: everything but build output
        skip = {'.git', '.venv', '_proc', '_docs', '.pytest_cache', '__pycache__', '.ci-cache', 'out'}
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob('*') if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    for f in files:
        (dest/f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT/f, dest/f)
    return dest

_PROC_ONE = """
import sys
from pathlib import Path
from nbdev.processors import FilterDefaults
from nbdev.serve_drv import main
main((Path(sys.argv[1]), Path(sys.argv[2]), FilterDefaults))
"""

def _each_failure(root:Path, env) -> str:
    "Process the notebooks one at a time (as nbdev-proc-nbs does, without stopping at the first error) and list the failures."
    out = []
    (root/'_each').mkdir(exist_ok=True)
    for nb in sorted((root/'nbs').glob('*.ipynb')):
        r = subprocess.run([sys.executable, '-c', _PROC_ONE, str(nb), str(root/'_each'/nb.name)], cwd=root, env=env,
                           capture_output=True, text=True, timeout=900)
        if r.returncode: out.append(f'--- {nb.name}:\n' + '\n'.join(r.stderr.strip().splitlines()[-8:]))
    return '\n'.join(out)

@pytest.fixture(scope='module')
def proc():
    "The `_proc/` folder that `nbdev-proc-nbs` writes in a fresh copy of the project."
    with tempfile.TemporaryDirectory(prefix='ich-docs-') as d:
        root = fresh_copy(Path(d)/'ich_nbdev')
        env = dict(os.environ, PYTHONPATH=str(root), MPLBACKEND='Agg')       # the copy's package, not the checkout's
        env['PATH'] = os.pathsep.join([str(BIN), env.get('PATH', '')])
        r = subprocess.run([str(BIN/'nbdev-proc-nbs')], cwd=root, env=env, capture_output=True, text=True, timeout=1800)
        if r.returncode:
            pytest.fail(f'nbdev-proc-nbs failed (exit {r.returncode}); the notebooks that fail, each on its own:\n'
                        f'{_each_failure(root, env) or r.stderr[-4000:]}', pytrace=False)
        yield root/'_proc'

def _cells(path): return json.loads(Path(path).read_text())['cells']
def _src(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']
def _figures(cells): return sum(1 for c in cells for o in c.get('outputs', []) if set(FIGURES) & set(o.get('data', {})))
def _hidden(cell): return any(l.strip().replace(' ', '') in ('#|hide', '#|include:false') for l in _src(cell).splitlines())

def _module(cells):
    for c in cells:
        for l in _src(c).splitlines():
            if l.replace(' ', '').startswith('#|default_exp'): return l.split('default_exp', 1)[1].strip()

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_page(proc, nb):
    page = proc/nb.name
    assert page.exists(), f'nbdev-proc-nbs wrote no page for {nb.name}'
    cells, src_cells = _cells(page), _cells(nb)
    stored = _figures(c for c in src_cells if not _hidden(c))
    assert _figures(cells) == stored, f'{nb.name}: the page shows {_figures(cells)} figure(s); the notebook stores {stored}'
    if any(c['cell_type'] == 'code' and not _src(c).lstrip().startswith('#| export') and
           any(k in _src(c) for k in ('plt.', 'plot_', 'imshow(', '.show(')) for c in src_cells):
        assert stored, f'{nb.name} draws figures but stores none: run it and save its outputs'
    docs = '\n'.join(''.join(o.get('data', {}).get('text/markdown', '')) for c in cells for o in c.get('outputs', []))
    name = _module(src_cells)
    if name is None: return
    mod = importlib.import_module(f'ich_nbdev.{name}')
    api = [n for n in mod.__all__ if callable(getattr(mod, n)) and getattr(getattr(mod, n), '__module__', None) == mod.__name__]
    missing = [n for n in api if f'### {n}\n' not in docs]
    assert api and not missing, f'{nb.name}: no API section for {missing} (of {len(api)} exported functions and classes)'
    streams = '\n'.join(''.join(o.get('text', '')) for c in cells for o in c.get('outputs', []) if o.get('output_type') == 'stream')
    no_table = [l.split('docments unavailable for ', 1)[1] for l in streams.splitlines() if 'docments unavailable for ' in l]
    assert not no_table, f'{nb.name}: API sections without their parameter table: {no_table}'

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_page_shows_no_machine_paths(proc, nb):
    "The cells the docs build runs again (imports, exports, `show_doc`) print no path of the build machine."
    stored = {path for _, _, path, _ in machine_paths_in_outputs(json.loads(nb.read_text()))}   # test_notebook_outputs' part
    leaks = [l for l in machine_paths_in_outputs({'cells': _cells(proc/nb.name)}) if l[2] not in stored]
    if leaks: pytest.fail(f'{nb.name}: its docs page shows paths of the build machine:\n' +
                          '\n'.join(f'  cell {i} of the page: {path}   in: {line}' for i, _, path, line in leaks), pytrace=False)

def test_sidebar_lists_every_notebook_once(proc):
    "After the docs step the site's sidebar lists the notebooks, index first, and nothing else (no .yml or .css files)."
    import yaml
    side = yaml.safe_load((proc.parent/'nbs'/'sidebar.yml').read_text())['website']['sidebar']['contents']
    assert side == ['index.ipynb'] + sorted(p.name for p in NOTEBOOKS if p.name != 'index.ipynb'), side

def test_docs_step_leaves_the_site_configuration_as_committed(proc):
    changed = [f.name for f in (ROOT/'nbs').glob('*.yml') if (proc.parent/'nbs'/f.name).read_text() != f.read_text()]
    assert not changed, f'nbdev-proc-nbs rewrites {changed}: commit what it writes (or fix pyproject.toml)'
