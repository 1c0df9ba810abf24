"""Keep the generated files in step with the notebooks, without Quarto.

`python tools/sync.py`          writes `ich_nbdev/` (nbdev-export), `README.md` (from `nbs/index.ipynb`) and the docs
                                site's `nbs/sidebar.yml` (every notebook, index first).
`python tools/sync.py --check`  fails, listing the differences, when any of them is stale or a notebook is not as
                                `nbdev-clean` leaves it.
"""
import argparse, difflib, filecmp, json, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB, NBS = ROOT/'ich_nbdev', ROOT/'nbs'
_directive = re.compile(r'^\s*#\s*\|')

def _src(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def _directives(src):
    return {l.split('|',1)[1].strip().split()[0] for l in src.splitlines() if _directive.match(l) and l.split('|',1)[1].strip()}

def readme_text(nb_path=NBS/'index.ipynb'):
    "Markdown for README.md from the index notebook: prose as is, code in fences, text outputs after it."
    nb = json.loads(Path(nb_path).read_text())
    out = []
    for cell in nb['cells']:
        src = _src(cell)
        flags = _directives(src)
        if 'hide' in flags or 'exporti' in flags: continue
        if cell['cell_type'] == 'markdown':
            out.append(src.strip())
            continue
        if cell['cell_type'] != 'code': continue
        code = '\n'.join(l for l in src.splitlines() if not _directive.match(l)).strip()
        if code and 'hide_input' not in flags and 'echo: false' not in src: out.append(f'```python\n{code}\n```')
        if 'hide_output' in flags: continue
        for o in cell.get('outputs', []):
            txt = None
            if o.get('output_type') == 'stream': txt = ''.join(o['text'])
            elif 'data' in o:
                d = o['data']
                if 'text/markdown' in d: out.append(''.join(d['text/markdown']).strip()); continue
                txt = ''.join(d.get('text/plain', ''))
            if txt and txt.strip(): out.append(f'```\n{txt.rstrip()}\n```')
    body = '\n\n'.join(o for o in out if o)
    return f'<!-- generated from nbs/index.ipynb by `python tools/sync.py`; edit the notebook, not this file -->\n\n{body}\n'

def sidebar_text(nbs=NBS):
    "The docs site's sidebar: every notebook in `nbs`, index first, then in file-name order."
    names = sorted(p.name for p in Path(nbs).glob('*.ipynb') if not p.name.startswith(('_', '.')))
    names = [n for n in names if n == 'index.ipynb'] + [n for n in names if n != 'index.ipynb']
    return 'website:\n  sidebar:\n    contents:\n' + ''.join(f'      - {n}\n' for n in names)

def unclean_notebooks():
    "Notebooks that `nbdev-clean` would change (run on copies, so nothing here is touched)."
    with tempfile.TemporaryDirectory() as d:
        for p in NBS.glob('*.ipynb'): shutil.copy2(p, Path(d)/p.name)
        subprocess.run([sys.executable, '-c', 'import sys; from nbdev.clean import nbdev_clean; nbdev_clean.__wrapped__(fname=sys.argv[1])', d],
                       cwd=ROOT, check=True, capture_output=True)
        return sorted(p.name for p in NBS.glob('*.ipynb') if (Path(d)/p.name).read_bytes() != p.read_bytes())

def export_to(dest):
    "Run nbdev-export and copy the result to `dest`, leaving `ich_nbdev/` as it was."
    backup = Path(tempfile.mkdtemp())/'lib'
    shutil.copytree(LIB, backup)
    try:
        subprocess.run([sys.executable, '-c', 'from nbdev.doclinks import nbdev_export; nbdev_export.__wrapped__()'],
                       cwd=ROOT, check=True)
        shutil.copytree(LIB, dest, ignore=shutil.ignore_patterns('__pycache__'))
    finally:
        shutil.rmtree(LIB); shutil.copytree(backup, LIB)

def _tree_diff(a, b):
    files = lambda p: {f.relative_to(p) for f in p.rglob('*.py') if '__pycache__' not in f.parts}
    fa, fb = files(a), files(b)
    diffs = [f'only in {a.name}: {f}' for f in sorted(fa-fb)] + [f'only in export: {f}' for f in sorted(fb-fa)]
    for f in sorted(fa & fb):
        if (a/f).read_text() != (b/f).read_text():
            diffs.append(''.join(difflib.unified_diff((a/f).read_text().splitlines(True), (b/f).read_text().splitlines(True),
                                                      f'ich_nbdev/{f}', f'exported/{f}', n=1)))
    return diffs

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--check', action='store_true', help='fail if ich_nbdev/ or README.md is stale')
    a = p.parse_args()
    readme = readme_text()
    if not a.check:
        subprocess.run([sys.executable, '-c', 'from nbdev.doclinks import nbdev_export; nbdev_export.__wrapped__()'], cwd=ROOT, check=True)
        (ROOT/'README.md').write_text(readme)
        (NBS/'sidebar.yml').write_text(sidebar_text())
        print('exported ich_nbdev/, wrote README.md and nbs/sidebar.yml')
        return
    problems = []
    with tempfile.TemporaryDirectory() as d:
        export_to(Path(d)/'lib')
        problems += _tree_diff(LIB, Path(d)/'lib')
    if not (ROOT/'README.md').exists() or (ROOT/'README.md').read_text() != readme:
        problems.append('README.md is stale: run `python tools/sync.py` (it is generated from nbs/index.ipynb)')
    if (NBS/'sidebar.yml').read_text() != sidebar_text():
        problems.append('nbs/sidebar.yml is stale: run `python tools/sync.py` (it lists every notebook)')
    unclean = unclean_notebooks()
    if unclean: problems.append(f'not cleaned: {", ".join(unclean)}: run `nbdev-clean` (or `make sync`)')
    if problems:
        print('Generated files are out of step with the notebooks:\n' + '\n'.join(problems), file=sys.stderr)
        sys.exit(1)
    print('in sync: nbdev-export leaves ich_nbdev/ unchanged; README.md and nbs/sidebar.yml match the notebooks, which are clean')

if __name__ == '__main__': main()
