"Training in several processes (torchrun, gloo on the CPU), resuming after a kill, gradient accumulation, step limits."
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch

BIN = Path(sys.executable).parent
ICH_TRAIN, TORCHRUN = str(BIN/'ich-train'), str(BIN/'torchrun')
SUBTYPES = ['epidural', 'intraparenchymal', 'intraventricular', 'subarachnoid', 'subdural', 'any']
SMALL = ['--arch', 'mobilenetv2_050', '--bs', '8', '--n-folds', '4']     # 60 training / 20 validation slices below

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A scratch folder (the working directory of every command) holding `cache`, a small training cache."
    from ich_nbdev.learner import synth_cache
    from ich_nbdev.synth import synth_sample
    w = tmp_path_factory.mktemp('scale')
    os.symlink(synth_cache(size=32, data_dir=synth_sample(n_studies=20, slices=4, size=64)), w/'cache')
    return w

def run(work, *args, timeout=600, env=None):
    return subprocess.run([*map(str, args)], capture_output=True, text=True, cwd=work, timeout=timeout,
                          env={**os.environ, 'ICH_PROGRESS': 'lines', **(env or {})})

def torchrun(work, *args, n=2):
    return run(work, TORCHRUN, '--nproc-per-node', str(n), '--no-python', *args, env={'OMP_NUM_THREADS': '1'})

def single_process_preds(work, out):
    "Predictions and metrics of `out/model.pkl` on its validation fold, in this one process."
    import warnings
    from fastai.learner import load_learner
    from ich_nbdev.learner import cache_dls, predict_rows
    from ich_nbdev.metrics import metrics_summary
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = load_learner(work/out/'model.pkl')
    dls = cache_dls(work/'cache', valid_fold=learn.ich['valid_fold'], n_folds=learn.ich['n_folds'], seed=learn.ich['seed'])
    p = predict_rows(learn, dls.valid.dataset)
    return dls, p, metrics_summary(dls.valid.dataset.y, p)

TRACE = '''
import json, os, sys
from fastai.callback.core import Callback
from ich_nbdev.learner import train_model
class Trace(Callback):
    "Each training batch's image ids, per epoch, in a file per process."
    def before_fit(self): self.seen = {}
    def before_batch(self):
        if not self.training: return
        dl = self.learn.dl
        self.seen.setdefault(self.epoch, []).append([str(i) for i in dl.dataset.image_ids[dl.batches[self.iter]]])
    def after_fit(self):
        with open(f"trace-{os.environ['RANK']}.json", 'w') as f: json.dump(self.seen, f)
train_model('cache', 'traced', arch='mobilenetv2_050', epochs=2, bs=8, n_folds=4, progress=False, cbs=[Trace()])
'''

def test_two_processes_split_every_epoch(work):
    "Under torchrun (2 CPU processes, gloo) each training slice is in exactly one process' batches, once per epoch."
    (work/'trace.py').write_text(TRACE)
    r = torchrun(work, sys.executable, 'trace.py')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    from ich_nbdev.learner import cache_dls
    train_ids = sorted(map(str, cache_dls(work/'cache', n_folds=4).train.dataset.image_ids))
    traces = [json.loads((work/f'trace-{k}.json').read_text()) for k in (0, 1)]
    for ep in ('0', '1'):
        batches = [t[ep] for t in traces]
        assert len(batches[0]) == len(batches[1]) > 1                      # the same number of steps in both
        seen = [i for b in batches for batch in b for i in batch]
        assert sorted(seen) == train_ids                                   # every slice once: none twice, none dropped
        assert set(i for b in batches[0] for i in b).isdisjoint(i for b in batches[1] for i in b)
    assert traces[0]['0'] != traces[0]['1']                                # reshuffled each epoch

def test_ich_train_under_torchrun(work):
    "ich-train, unchanged, in 2 processes: rank 0 alone writes; the gathered metrics equal a one-process evaluation."
    r = torchrun(work, ICH_TRAIN, 'cache', *SMALL, '--epochs', '2', '--out', 'ddp')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len([l for l in r.stdout.splitlines() if l.startswith('epoch ')]) == 2        # one process reports
    assert len([l for l in r.stdout.splitlines() if l.startswith('ich-train: ')]) == 1
    assert sorted(p.name for p in (work/'ddp').iterdir()) == ['history.csv', 'loss.png', 'metrics.json', 'model.pkl',
                                                               'roc.png', 'valid_preds.csv']
    hist_lines = (work/'ddp'/'history.csv').read_text().splitlines()
    assert len(hist_lines) == 3 and hist_lines[0].startswith('epoch,')                 # one header, one row per epoch
    m = json.loads((work/'ddp'/'metrics.json').read_text())
    assert (m['processes'], m['step_batch'], m['epochs_done']) == (2, 16, 2)
    dls, p, s = single_process_preds(work, 'ddp')
    saved = pd.read_csv(work/'ddp'/'valid_preds.csv')
    assert list(saved.image_id.astype(str)) == list(map(str, dls.valid.dataset.image_ids))
    assert np.abs(saved[SUBTYPES].to_numpy() - p).max() < 1e-5
    for k in ('weighted_log_loss', 'auc_any', 'macro_precision', 'macro_recall'):
        assert abs(m[k] - s[k]) < 1e-5, (k, m[k], s[k])
    h = pd.read_csv(work/'ddp'/'history.csv')                         # gathered during the last epoch's validation
    assert abs(h.wlogloss.iloc[-1] - s['weighted_log_loss']) < 1e-5
    assert abs(h.auc_any.iloc[-1] - s['auc_any']) < 1e-5

def test_resume_after_kill(work):
    "SIGKILL after an epoch, then --resume: the same epochs, history and files as an uninterrupted run; the same loss."
    args = ['cache', *SMALL, '--epochs', '3']
    r = run(work, ICH_TRAIN, *args, '--out', 'whole')
    assert r.returncode == 0, r.stderr[-3000:]
    p = subprocess.Popen([ICH_TRAIN, *args, '--out', 'killed'], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, 'ICH_PROGRESS': 'lines'})
    ckpt, t = work/'killed'/'checkpoint.pth', time.time()
    while not ckpt.exists() and p.poll() is None and time.time() - t < 300: time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert ckpt.exists(), 'the run ended before its first checkpoint'
    done = torch.load(ckpt, weights_only=False)['epoch']
    assert 1 <= done < 3
    assert not (work/'killed'/'metrics.json').exists()
    (work/'killed-ddp').mkdir()                                   # the same checkpoint, resumed below in 2 processes
    for f in ('checkpoint.pth', 'history.csv'): shutil.copy(work/'killed'/f, work/'killed-ddp'/f)
    r = run(work, ICH_TRAIN, *args, '--out', 'killed', '--resume')
    assert r.returncode == 0, r.stderr[-3000:]
    assert [l.split('  ')[0] for l in r.stdout.splitlines() if l.startswith('epoch ')] == [f'epoch {e}/3' for e in range(done + 1, 4)]
    files = lambda d: sorted(q.name for q in (work/d).iterdir())
    assert files('killed') == files('whole')                                     # the checkpoint is gone once all is written
    a, b = pd.read_csv(work/'whole'/'history.csv'), pd.read_csv(work/'killed'/'history.csv')
    assert list(b.epoch) == [0, 1, 2]
    cols = ['train_loss', 'valid_loss', 'wlogloss', 'auc_any']
    np.testing.assert_allclose(b[cols].to_numpy(), a[cols].to_numpy(), rtol=0.01)
    ma, mb = (json.loads((work/d/'metrics.json').read_text()) for d in ('whole', 'killed'))
    assert abs(mb['weighted_log_loss'] - ma['weighted_log_loss']) <= 0.01 * ma['weighted_log_loss']
    assert (mb['resumed_at_epoch'], mb['epochs_done']) == (done, 3)
    # under torchrun: rank 0 reads the checkpoint and sends it on; the run ends at the same epoch count
    r = torchrun(work, ICH_TRAIN, *args, '--out', 'killed-ddp', '--resume')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert [l.split('  ')[0] for l in r.stdout.splitlines() if l.startswith('epoch ')] == [f'epoch {e}/3' for e in range(done + 1, 4)]
    assert files('killed-ddp') == files('whole')
    c = pd.read_csv(work/'killed-ddp'/'history.csv')
    assert list(c.epoch) == [0, 1, 2] and np.allclose(c[cols].to_numpy()[:done], a[cols].to_numpy()[:done])
    assert json.loads((work/'killed-ddp'/'metrics.json').read_text())['processes'] == 2

def test_max_steps_and_accum(work):
    "--max-steps stops after that many optimiser steps and still writes everything; --accum K steps once per K batches."
    r = run(work, ICH_TRAIN, 'cache', *SMALL, '--epochs', '3', '--max-steps', '2', '--accum', '2', '--out', 'trial')
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((work/'trial'/'metrics.json').read_text())
    # 60 training slices, batch 8, the last incomplete batch dropped: 7 batches an epoch; with --accum 2, 4 steps
    assert (m['steps'], m['epochs_done'], m['accum'], m['step_batch']) == (2, 1, 2, 16)
    assert len(pd.read_csv(work/'trial'/'history.csv')) == 1
    assert (work/'trial'/'model.pkl').exists() and not (work/'trial'/'checkpoint.pth').exists()
    r = run(work, ICH_TRAIN, 'cache', *SMALL, '--epochs', '1', '--accum', '2', '--out', 'acc')
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((work/'acc'/'metrics.json').read_text())['steps'] == 4      # ceil(7 / 2): the last batch steps too

def one_line_error(r, tool='ich-train'):
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'{tool}: ') and 'Traceback' not in r.stderr, r.stderr
    return lines[0]

@pytest.mark.parametrize('args,msg', [
    (['--accum', '0'], '--accum must be at least 1, not 0'),
    (['--max-steps', '0'], '--max-steps must be at least 1, not 0'),
    (['--resume', '--out', 'nothing-here'], 'checkpoint.pth: no checkpoint in nothing-here; nothing to resume'),
    (['--resume', '--pretrained', 'true'], '--resume continues training from scratch'),
])
def test_bad_values(work, args, msg):
    assert msg in one_line_error(run(work, ICH_TRAIN, 'cache', *SMALL, *args))

def test_lr_find_in_several_processes(work):
    env = {'WORLD_SIZE': '2', 'RANK': '0', 'LOCAL_RANK': '0'}
    assert '--lr-find runs in one process, not 2' in one_line_error(run(work, ICH_TRAIN, 'cache', '--lr-find', env=env))

def test_checkpoint_refused(work):
    "A checkpoint of other settings, or a file that is not one, is refused in one line."
    from ich_nbdev.learner import cache_dls
    from ich_nbdev.scale import load_checkpoint, settings_fingerprint
    ck = work/'ck'; ck.mkdir()
    (ck/'checkpoint.pth').write_bytes(b'not a checkpoint')
    line = one_line_error(run(work, ICH_TRAIN, 'cache', *SMALL, '--resume', '--out', 'ck'))
    assert 'checkpoint.pth in ck is not a readable checkpoint' in line
    settings = dict(arch='resnet10t', windows=None, size=None, epochs=5, bs=8, lr=3e-3, loss='bce', opt='radam', head='fastai',
                    balanced=False, valid_fold=0, n_folds=4, seed=42, prior_bias=None, zero_init=None, wd=None, drop_path=0.,
                    accum=1, max_steps=None, context=1)
    torch.save(dict(format=1, settings=settings_fingerprint(work/'cache', **settings), epoch=1), ck/'checkpoint.pth')
    line = one_line_error(run(work, ICH_TRAIN, 'cache', *SMALL, '--resume', '--out', 'ck'))
    assert line.startswith("ich-train: the checkpoint in ck was written for other settings: arch 'resnet10t' (now 'mobilenetv2_050'). "
                           "Resume with the checkpoint's settings"), line   # the one difference, named
    with pytest.raises(ValueError, match='written for other settings'): load_checkpoint(ck/'checkpoint.pth', {'arch': 'x'})

def test_ddp_bench_cpu(work):
    "bench/ddp.py on the CPU: a 1-process and a 2-process run of the training loop, each with its slices/s."
    import re
    root = Path(__file__).parents[1]
    r = run(work, sys.executable, root/'bench'/'ddp.py', '--runs', '1x1,2x1', '--epochs', '2', '--n-studies', '8',
            '--slices', '4', '--size', '32', '--bs', '4')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = re.findall(r'^\s+(\d)\s+1\s+([\d.]+)\s+([\d.]+)x\s+(\d+)', r.stdout, re.M)
    assert [x[0] for x in rows] == ['1', '2'], r.stdout
    assert all(float(x[1]) > 0 and int(x[3]) > 0 for x in rows) and rows[0][2] == '1.00'
    r = run(work, sys.executable, root/'bench'/'ddp.py', '--runs', '2y1')
    assert r.returncode != 0 and "bench/ddp.py: --runs must look like 1x1,2x1 (PROCESSESxTHREADS), not '2y1'" in r.stderr
