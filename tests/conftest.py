import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SAMPLES = Path(os.environ.get('ICH_RSNA_SAMPLES', ROOT.parent/'shared'/'data'/'rsna-samples'))

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
