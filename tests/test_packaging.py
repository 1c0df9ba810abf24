"""How the package installs and opens: every third-party import of the library is a declared dependency; the library
imports without the course-only packages; the oldest Python allowed is one CI tests; `make lab`'s kernel is this
environment's Python."""
import ast, importlib.metadata as md, json, os, pkgutil, re, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

try: import tomllib
except ImportError: import tomli as tomllib          # Python 3.10 (pytest depends on it there)
from packaging.requirements import Requirement

PROJECT = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']
COURSE_ONLY = ('kornia', 'skimage')                   # fastai.medical.imaging needs them; the notebooks and bench/ use it
_norm = lambda name: re.sub(r'[-_.]+', '-', name).lower()

def _declared(reqs): return {_norm(Requirement(r).name) for r in reqs}

def library_imports() -> dict[str, set[str]]:
    "Top-level names imported in `ich_nbdev/*.py` (at the top or in functions), by file; optional ones (in a `try` handling ImportError) left out."
    found = {}
    for f in sorted((ROOT/'ich_nbdev').glob('*.py')):
        tree, names = ast.parse(f.read_text()), set()
        optional = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) and any(
                        isinstance(h.type, ast.Name) and h.type.id in ('ImportError', 'ModuleNotFoundError') for h in t.handlers)
                    for b in t.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            if id(node) in optional: continue
            if isinstance(node, ast.Import): names |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module: names.add(node.module.split('.')[0])
        found[f.name] = names - set(sys.stdlib_module_names) - {'ich_nbdev', '__future__'}
    return found

def import_names() -> dict[str, set[str]]:
    "Distribution names by the top-level name they install (Python 3.10's `packages_distributions` misses wheels without top_level.txt)."
    found = {}
    for d in md.distributions():
        names = set((d.read_text('top_level.txt') or '').split())
        for f in d.files or []:
            top = f.parts[0].removesuffix('.py')
            if not top.endswith(('.dist-info', '.egg-info', '.data', '.libs', '.pth')) and top.isidentifier(): names.add(top)
        for n in names: found.setdefault(n, set()).add(d.metadata['Name'])
    return found

def test_every_import_of_the_library_is_a_declared_dependency():
    dists = import_names()
    declared = _declared(PROJECT['dependencies'])
    undeclared = {}
    for f, names in library_imports().items():
        for n in sorted(names):
            owners = {_norm(d) for d in dists.get(n, [n])}
            if not owners & declared: undeclared.setdefault(f, []).append(f'{n} ({", ".join(sorted(owners))})')
    assert not undeclared, f'imported by the library but not in [project] dependencies: {undeclared}'

def test_course_packages_are_an_extra_that_dev_includes():
    extras = PROJECT['optional-dependencies']
    declared = _declared(PROJECT['dependencies'])
    assert not {'kornia', 'scikit-image'} & declared, 'kornia and scikit-image belong to the course extra'
    assert {'kornia', 'scikit-image'} <= _declared(extras['course'])
    assert any(Requirement(r).name == PROJECT['name'] and 'course' in Requirement(r).extras for r in extras['dev'])

BLOCK = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}: raise ImportError(f'{{name}} is not installed here')
sys.meta_path.insert(0, Block())
import ich_nbdev
mods = [m.name for m in pkgutil.iter_modules(ich_nbdev.__path__)]
for m in mods: importlib.import_module(f'ich_nbdev.{{m}}')
assert not set({blocked!r}) & set(sys.modules), sorted(set({blocked!r}) & set(sys.modules))
print(len(mods), 'modules')
"""

def test_every_module_imports_without_the_course_packages():
    r = subprocess.run([sys.executable, '-c', BLOCK.format(blocked=COURSE_ONLY)], capture_output=True, text=True, timeout=300)
    n = len([m for m in pkgutil.iter_modules([str(ROOT/'ich_nbdev')])])
    assert r.returncode == 0 and f'{n} modules' in r.stdout, r.stdout + r.stderr[-3000:]

def test_the_blocker_would_notice_a_course_import():
    "The check above can fail: a module that imports kornia is refused."
    r = subprocess.run([sys.executable, '-c', BLOCK.format(blocked=COURSE_ONLY) + '\nimport kornia'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'kornia is not installed here' in r.stderr

def test_oldest_allowed_python_is_tested_in_ci():
    import yaml
    floor = re.fullmatch(r'>=\s*(3\.\d+)', PROJECT['requires-python'].strip()).group(1)
    jobs = yaml.safe_load((ROOT/'.github'/'workflows'/'test.yaml').read_text())['jobs']
    versions = {str(v) for j in jobs.values() for v in j.get('strategy', {}).get('matrix', {}).get('python-version', [])}
    assert floor in versions, f'requires-python allows {floor}, CI tests {sorted(versions)}'
    assert f'Programming Language :: Python :: {floor}' in PROJECT['classifiers']

def _make(*args):
    stamp = Path(sys.prefix)/'.installed'           # never rebuild the environment from here
    return subprocess.run(['make', '-s', '-C', str(ROOT), '-o', str(stamp), f'VENV={sys.prefix}', *args],
                          capture_output=True, text=True, timeout=300)

def test_lab_kernel_is_this_environment():
    "`make lab` registers a kernel that names this environment's Python, and that kernel runs in this environment."
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import start_new_kernel
    r = _make('lab-kernel', 'KERNEL=ich_nbdev')
    assert r.returncode == 0, r.stdout + r.stderr
    spec = KernelSpecManager().get_kernel_spec('ich_nbdev')
    assert Path(spec.resource_dir).is_relative_to(sys.prefix), spec.resource_dir     # inside the environment
    assert spec.argv[0] == sys.executable, spec.argv
    km, kc = start_new_kernel(kernel_name='ich_nbdev')
    try:
        out = []
        kc.execute_interactive('import sys, ich_nbdev; print(sys.prefix, ich_nbdev.__file__)', timeout=120,
                               output_hook=lambda m: out.append(m['content'].get('text', '')))
        prefix, pkg = ''.join(out).split()
        assert prefix == sys.prefix and Path(pkg).is_relative_to(ROOT), out
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)

def test_make_lab_opens_the_course_with_that_kernel():
    "What `make lab LAB_ARGS=--no-browser` runs (printed by `make -n`): JupyterLab from the environment, on nbs/."
    r = _make('-n', 'lab', 'LAB_ARGS=--no-browser')
    assert r.returncode == 0, r.stderr
    cmd = next(l for l in r.stdout.replace('\\\n', ' ').splitlines() if 'jupyter lab' in l)
    assert f'{sys.prefix}/bin/jupyter lab' in cmd and '--ServerApp.root_dir=nbs' in cmd and cmd.rstrip().endswith('--no-browser')
    assert '--MappingKernelManager.default_kernel_name=ich_nbdev' in cmd

def _workflow(name):
    import yaml
    w = yaml.safe_load((ROOT/'.github'/'workflows'/name).read_text())
    return w, w.get('on', w.get(True))                  # YAML 1.1 reads the key `on` as true

def test_ci_runs_each_notebook_once_on_the_cpu_build_of_torch():
    w, on = _workflow('test.yaml')
    assert on['push'] == {'branches': ['main']} and 'pull_request' in on, on     # not both for the same change
    steps = [s for j in w['jobs'].values() for s in j['steps']]
    assert not [s for s in steps if 'nbdev' in s.get('uses', '') or 'nbdev-test' in s.get('run', '')], 'notebooks run twice'
    assert sum('make test' in s.get('run', '') for s in steps) == 1
    install = next(s['run'] for s in steps if "-e '.[dev]'" in s.get('run', ''))
    assert install.index('download.pytorch.org/whl/cpu') < install.index("-e '.[dev]'"), install

def test_deploy_builds_the_site_with_quarto():
    w, on = _workflow('deploy.yaml')
    assert on['push'] == {'branches': ['main']}
    steps = [s for j in w['jobs'].values() for s in j['steps']]
    assert any('quarto' in s.get('uses', '') for s in steps) and any(s.get('run', '').strip() == 'nbdev-docs' for s in steps)

def test_wheel_installs_and_imports_from_another_folder(tmp_path):
    "The package as `pip install` from a clone builds it: every module and command is in the wheel, and it imports elsewhere."
    import zipfile
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path/'w'), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next((tmp_path/'w').glob('ich_nbdev-*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f'ich_nbdev/{p.name}' for p in (ROOT/'ich_nbdev').glob('*.py')} <= set(names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert all(f'{c} =' in entry for c in PROJECT['scripts']), entry
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(tmp_path/'site'), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    elsewhere = tmp_path/'another_project'; elsewhere.mkdir()
    r = subprocess.run([sys.executable, '-c', 'import ich_nbdev.inference, ich_nbdev.triage as t; print(t.__file__)'], cwd=elsewhere,
                       env=dict(os.environ, PYTHONPATH=str(tmp_path/'site')), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and Path(r.stdout.strip()).is_relative_to(tmp_path/'site'), r.stdout + r.stderr[-3000:]
