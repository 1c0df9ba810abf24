"Every notebook in nbs/ runs top to bottom as a test (nbdev's runner; cells flagged `slow` or `gpu` are skipped)."
import os, subprocess, sys
from pathlib import Path
import pytest
from conftest import NBS

NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))

RUN = """
import sys
from nbdev.test import test_nb
ok, secs = test_nb(sys.argv[1], skip_flags=['slow', 'gpu'], showerr=True, cell_timing_min=5)
print(f'{sys.argv[1]}: {secs:.1f} s')
sys.exit(0 if ok else 1)
"""

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    env = dict(os.environ, MPLBACKEND='Agg')
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', '')])   # the project's commands
    r = subprocess.run([sys.executable, '-c', RUN, nb.name], cwd=NBS, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, f'{nb.name} failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}'
