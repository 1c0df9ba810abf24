"`ich-triage` as a user runs it: a subprocess on a folder of DICOM files, its report opened in a real browser."
import os, shutil, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path
import pandas as pd
import pytest

ICH_TRIAGE = Path(sys.executable).parent/'ich-triage'
BROWSER_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']

def run(*args, ok=True):
    r = subprocess.run([str(ICH_TRIAGE), *map(str, args)], capture_output=True, text=True, timeout=900)
    if ok: assert r.returncode == 0, f'ich-triage {args} failed:\n{r.stdout}\n{r.stderr}'
    return r

def chromium() -> str|None:
    "The Chromium executable; a failure saying how to install it; None when browser checks are switched off."
    if os.environ.get('ICH_SKIP_BROWSER') == '1': return None
    exe = next((shutil.which(n) for n in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(n)), None)
    if exe is None:
        pytest.fail("headless Chromium is needed to check the triage report as a browser renders it: install it "
                    "(Debian/Ubuntu: `apt-get install -y chromium`) or set ICH_SKIP_BROWSER=1 to skip the browser checks")
    return exe

def browse(exe, tmp_path, *args) -> subprocess.CompletedProcess:
    r = subprocess.run([exe, *BROWSER_FLAGS, f'--user-data-dir={tmp_path/"chromium-profile"}', *map(str, args)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f'chromium failed:\n{r.stderr[-2000:]}'
    return r

class ReportDOM(HTMLParser):
    "The parts of the rendered report the tests look at: study cards, images, external references."
    def __init__(self):
        super().__init__(); self.studies, self.imgs, self.external = [], [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'article' and 'data-study' in a: self.studies.append((a['data-study'], float(a['data-score'])))
        if tag == 'img': self.imgs.append(a.get('src') or '')
        if tag in ('script', 'link', 'iframe', 'object', 'embed'): self.external.append((tag, a))
        for k in ('src', 'href'):
            if (a.get(k) or '').startswith(('http:', 'https:', '//', 'ftp:')): self.external.append((tag, a))

@pytest.fixture(scope='module')
def model_path():
    from ich_nbdev.inference import demo_model
    return demo_model()

@pytest.fixture(scope='module')
def incoming(tmp_path_factory, synth_dir):
    "Three whole test studies, a truncated DICOM file and a text file, in one folder."
    from ich_nbdev.data import dicom_meta
    meta, _ = dicom_meta(synth_dir/'stage_2_test', n_workers=0, progress=False)
    studies = sorted(meta.study_id.unique())[:3]
    d = tmp_path_factory.mktemp('incoming')
    for p in meta.path[meta.study_id.isin(studies)]: shutil.copy(p, d)
    (d/'notes.txt').write_text('not an image')
    whole = Path(meta.path[0]).read_bytes(); (d/'truncated.dcm').write_bytes(whole[:len(whole)//2])
    return d, studies, int(meta.study_id.isin(studies).sum())

@pytest.fixture(scope='module')
def report(tmp_path_factory, model_path, incoming):
    out = tmp_path_factory.mktemp('report')
    r = run(model_path, incoming[0], '--out', out, '--top-slices', '3', '--how', 'topk', '--n-workers', '1')
    return out, r

def test_worklist_csv(report, incoming):
    out, r = report
    _, studies, n_slices = incoming
    wl = pd.read_csv(out/'worklist.csv')
    assert sorted(wl.study_id) == sorted(studies) and wl.study_id.is_unique            # each study once
    assert wl.score.is_monotonic_decreasing and list(wl['rank']) == list(range(1, len(wl) + 1))
    assert wl.n_slices.sum() == n_slices
    assert (wl.top_slices.str.split(';').str.len() == 3).all()
    assert {'patient_id', 'max_any', 'max_subdural'} <= set(wl.columns)
    assert wl.score.between(0, 1).all() and (wl.score <= wl.max_any + 1e-9).all()     # a top-3 mean never exceeds the max
    probs = pd.read_csv(out/'problems.csv')
    assert sorted(Path(p).name for p in probs.path) == ['notes.txt', 'truncated.dcm']
    assert f'{len(studies)} studies ranked from {n_slices} slices (2 problem file(s))' in r.stdout

def test_report_in_browser(report, tmp_path):
    exe = chromium()
    if exe is None: pytest.skip('ICH_SKIP_BROWSER=1')
    out, _ = report
    wl = pd.read_csv(out/'worklist.csv')
    dom = browse(exe, tmp_path, '--dump-dom', (out/'index.html').as_uri()).stdout
    page = ReportDOM(); page.feed(dom)
    assert [s for s, _ in page.studies] == list(wl.study_id)                           # cards in worklist order ...
    scores = [v for _, v in page.studies]
    assert scores == sorted(scores, reverse=True)                                     # ... highest score first
    assert len(page.imgs) == 2 * 3 * len(wl)                                          # brain window + heatmap per top slice
    assert all(s.startswith('data:image/png;base64,') for s in page.imgs), 'an image is not embedded'
    assert page.external == [], f'the report refers to outside resources: {page.external}'
    assert 'truncated.dcm' in dom and 'notes.txt' in dom                               # the problems section
    shot = tmp_path/'report.png'
    browse(exe, tmp_path, f'--screenshot={shot}', '--window-size=1200,1600', (out/'index.html').as_uri())
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and shot.stat().st_size > 20_000

@pytest.mark.parametrize('case', ['no-dicom', 'no-model', 'bad-option'])
def test_clear_errors(case, tmp_path, model_path, incoming):
    junk = tmp_path/'junk'; junk.mkdir()
    (junk/'a.txt').write_text('hello'); (junk/'b.dcm').write_bytes(b'\0' * 300)
    args, msg = {'no-dicom': ([model_path, junk], 'none of its 2 file(s) is a usable DICOM'),
                 'no-model': ([tmp_path/'missing.pkl', incoming[0]], 'no such model file'),
                 'bad-option': ([model_path, incoming[0], '--how', 'median'], "--how must be one of max, topk, not 'median'")}[case]
    r = run(*args, '--out', tmp_path/'out', '--quiet', ok=False)
    assert r.returncode != 0 and msg in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path/'out'/'index.html').exists()
