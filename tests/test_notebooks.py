"""Every notebook in nbs/ runs top to bottom as a test, the way Jupyter's "Run All" runs it: every code cell, whatever its
nbdev flags (`slow`, `gpu`) or `eval:` option, in a Jupyter kernel of this Python environment, with the notebook's folder
as working directory. A full-scale cell must therefore do nothing on a CPU machine without the RSNA data until its
notebook's `FULL_SCALE` switch is on."""
import json, os, re, sys, tempfile, time
from pathlib import Path
import pytest
from conftest import NOTEBOOKS

CELL_TIMEOUT = int(os.environ.get('ICH_CELL_TIMEOUT', 900))   # seconds one cell may take
KERNEL = 'ich-nbdev-run-all'
_ansi = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')

def kernel_manager_class(workdir:Path):
    "A kernel manager class whose kernel is this Python (`sys.executable`), not whatever `python3` kernel Jupyter finds first."
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets import default
    kernels = Path(workdir)/'kernels'
    (kernels/KERNEL).mkdir(parents=True, exist_ok=True)
    (kernels/KERNEL/'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'ich_nbdev (tests)', 'language': 'python'}))
    class ThisPython(AsyncKernelManager):
        @default('kernel_spec_manager')
        def _kernel_spec_manager_default(self): return KernelSpecManager(kernel_dirs=[str(kernels)])
    return ThisPython

def run_all(nb_path:Path) -> float:
    "Execute every code cell of the notebook at `nb_path` in a fresh kernel, in order; stop at the first error."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    nb = nbformat.read(nb_path, as_version=4)
    env = dict(os.environ)
    env['PATH'] = os.pathsep.join([str(Path(sys.executable).parent), env.get('PATH', '')])   # the project's commands
    env.pop('MPLBACKEND', None)                      # the kernel's own inline backend, as in Jupyter
    with tempfile.TemporaryDirectory() as d:
        client = NotebookClient(nb, kernel_manager_class=kernel_manager_class(d), kernel_name=KERNEL,
                                timeout=CELL_TIMEOUT, allow_errors=False,
                                resources={'metadata': {'path': str(nb_path.parent)}})
        t0 = time.time()
        try: client.execute(env=env, cwd=str(nb_path.parent))
        except (CellExecutionError, CellTimeoutError) as e:
            i, cell = next(((i, c) for i, c in enumerate(nb.cells) if any(o.get('output_type') == 'error' for o in c.get('outputs', []))),
                           (None, None))
            where = f'cell {i} (id {cell.get("id")})' if cell is not None else 'a cell'
            pytest.fail(f'{nb_path.name}: {where} failed after {time.time() - t0:.0f} s:\n{_ansi.sub("", str(e))[-6000:]}', pytrace=False)
    return time.time() - t0

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb):
    secs = run_all(nb)
    print(f'{nb.name}: {secs:.1f} s')

def _write_nb(path:Path, *sources):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path

def test_runner_runs_flagged_cells(tmp_path):
    "Cells flagged `slow` or `gpu`, or `eval: false`, run as in Jupyter; nbdev's runner with skip flags would pass this notebook."
    nb = _write_nb(tmp_path/'flags.ipynb', 'x = 1', '#| slow\nx += 1', '#| gpu\n#| eval: false\nx += 1',
                   f'import os, sys\nassert x == 3, x\nassert os.getcwd() == {str(tmp_path)!r}\nassert sys.executable == {sys.executable!r}',
                   '#| slow\nraise RuntimeError("the full-scale cell ran")')
    with pytest.raises(pytest.fail.Exception, match=r'flags.ipynb: cell 4 \(id .*\) failed(.|\n)*the full-scale cell ran'):
        run_all(nb)
