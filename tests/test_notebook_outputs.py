"The outputs stored in the committed notebooks (what the docs site and GitHub show) name no path of the machine they ran on."
import json
import pytest
from conftest import NOTEBOOKS, ROOT, machine_paths_in_outputs

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_machine_paths_in_outputs(nb):
    leaks = machine_paths_in_outputs(json.loads(nb.read_text()))
    if leaks: pytest.fail(f'{nb.name}: stored outputs show absolute paths of the machine they ran on; print names or '
                          f'relative paths instead:\n' + '\n'.join(f'  cell {i} (id {cid}): {path}   in: {line}' for i, cid, path, line in leaks),
                          pytrace=False)

def _nb(*outputs): return {'cells': [{'cell_type': 'code', 'id': 'c0', 'source': '', 'outputs': list(outputs)}]}

def test_scanner_finds_paths_everywhere_an_output_holds_text():
    stream = {'output_type': 'stream', 'name': 'stdout', 'text': ['wrote /tmp/tmpab12/run/history.csv\n']}
    html = {'output_type': 'execute_result', 'data': {'text/html': ['<td>/root/.cache/ich_nbdev/synth-0.0.1/x.dcm</td>'],
                                                      'text/plain': ['ok']}}
    warning = {'output_type': 'stream', 'name': 'stderr', 'text': '/home/ci/venv/lib/python3.11/site-packages/torch/x.py:3: Warning'}
    error = {'output_type': 'error', 'ename': 'OSError', 'evalue': 'no such file', 'traceback': [f'File {ROOT}/nbs/a.py']}
    found = machine_paths_in_outputs(_nb(stream, html, warning, error))
    assert [p for _, _, p, _ in found] == ['/tmp/tmpab12/run/history.csv', '/root/.cache/ich_nbdev/synth-0.0.1/x.dcm',
                                          '/home/ci/venv/lib/python3.11/site-packages/torch/x.py:3', f'{ROOT}/nbs/a.py'], found
    assert {(i, cid) for i, cid, _, _ in found} == {(0, 'c0')}

def test_scanner_leaves_relative_paths_and_urls_alone():
    ok = {'output_type': 'stream', 'name': 'stdout',
          'text': 'wrote run/history.csv and ~/data/rsna; see https://example.org/home/page and file.tmp/x\n'}
    assert machine_paths_in_outputs(_nb(ok)) == []
