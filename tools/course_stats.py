"""How heavy each notebook of the course reads: its longest code cell (lines), the pictures its outputs store, and the
exercises it ends with.

`python tools/course_stats.py`              the table for the notebooks in `nbs/` now
`python tools/course_stats.py --rev REV`    the same for the notebooks as they were at git revision REV
`python tools/course_stats.py --rev REV --compare`   both side by side (REV, then now)
"""
import argparse, json, re, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ('image/png', 'image/jpeg', 'image/svg+xml')
_exercises_h = re.compile(r'^#{1,3}\s+Exercises\b', re.M | re.I)
_item = re.compile(r'^\s*(?:\d+[.)]|[-*])\s+\S', re.M)

def _src(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

def longest_code_cell(nb:dict) -> int:
    "Lines of the longest code cell, nbdev directives (`#| ...`) not counted."
    lens = [sum(1 for l in _src(c).splitlines() if l.strip() and not l.lstrip().startswith('#|'))
            for c in nb['cells'] if c['cell_type'] == 'code']
    return max(lens, default=0)

def pictures(nb:dict) -> int:
    "Figures stored in the outputs (one per output that holds an image)."
    return sum(1 for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])
               if any(k in (o.get('data') or {}) for k in FIGURES))

def exercises(nb:dict) -> int:
    "Numbered or bulleted items in the notebook's 'Exercises' section (the markdown cells from that heading on)."
    cells = [_src(c) for c in nb['cells'] if c['cell_type'] == 'markdown']
    for i, s in enumerate(cells):
        m = _exercises_h.search(s)
        if m:
            text = s[m.end():] + '\n' + '\n'.join(cells[i+1:])
            return len(_item.findall(text))
    return 0

def stats(nb:dict) -> tuple[int, int, int]: return longest_code_cell(nb), pictures(nb), exercises(nb)

def notebooks_now() -> dict:
    return {p.name: json.loads(p.read_text()) for p in sorted((ROOT/'nbs').glob('*.ipynb')) if not p.name.startswith(('_', '.'))}

def notebooks_at(rev:str) -> dict:
    names = subprocess.run(['git', 'ls-tree', '--name-only', rev, 'nbs/'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    out = {}
    for n in names:
        name = Path(n).name
        if not name.endswith('.ipynb') or name.startswith(('_', '.')): continue
        out[name] = json.loads(subprocess.run(['git', 'show', f'{rev}:{n}'], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    return out

def table(before:dict|None, after:dict) -> str:
    names = sorted(set(after) | set(before or {}))
    fmt = lambda nbs, n: '/'.join(map(str, stats(nbs[n]))) if n in nbs else '—'
    if before is None:
        rows = ['| notebook | longest code cell (lines) | pictures | exercises |', '|---|---|---|---|']
        rows += [f'| {n} | ' + ' | '.join(map(str, stats(after[n]))) + ' |' for n in names]
    else:
        rows = ['| notebook | longest cell before → after | pictures before → after | exercises before → after |', '|---|---|---|---|']
        for n in names:
            b = stats(before[n]) if n in before else None
            a = stats(after[n]) if n in after else None
            cols = [f'{b[k] if b else "—"} → {a[k] if a else "—"}' for k in range(3)]
            rows.append(f'| {n} | ' + ' | '.join(cols) + ' |')
    return '\n'.join(rows)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rev', help='a git revision to measure instead of the working tree')
    ap.add_argument('--compare', action='store_true', help='with --rev: show REV and the working tree side by side')
    a = ap.parse_args()
    if a.compare and not a.rev: ap.error('--compare needs --rev')
    if a.rev and a.compare: print(table(notebooks_at(a.rev), notebooks_now()))
    else: print(table(None, notebooks_at(a.rev) if a.rev else notebooks_now()))
