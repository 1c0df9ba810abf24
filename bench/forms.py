"""How far a model's predictions through NIfTI, secondary-capture DICOM and brain-window PNG stray from the DICOM's
(max and mean |ΔP| of each output over the slices), what each form scores against the labels (weighted log loss,
AUC of any), and as a yardstick the same for the DICOM with its head box one pixel larger, for a brain ×3 model on the synthetic sample's training studies, and on how many slices the PNG's head
box is the DICOM's.

    python bench/forms.py [--studies N] [--epochs E] [--train-studies M]
    python bench/forms.py --real DIR       # head boxes only: each DICOM slice of DIR against its brain-window picture

Default: every training study of the sample (960 slices) and the tests' model (resnet10t, 64 px, 4 epochs, seed 42,
brain ×3, trained on the sample itself). --epochs trains it longer; --train-studies M trains it instead on M other
synthetic studies (24 slices each, as the sample; seed 7). The model is trained once into the cache folder."""
import argparse, shutil, sys, warnings
import numpy as np

def _model(epochs, train_studies):
    "The brain ×3 model: the tests' (trained on the sample) or one trained on `train_studies` other phantoms."
    from ich_nbdev.learner import synth_cache, cached_model
    from ich_nbdev.inference import load_model
    from ich_nbdev.synth import synth_sample
    data = None if not train_studies else synth_sample(n_studies=train_studies, n_test_studies=10, seed=7)
    name = 'test-sources-brain3' if not train_studies else 'bench-forms-brain3'
    path = cached_model(name, synth_cache(size=64, data_dir=data), arch='resnet10t', windows='brain,brain,brain',
                        epochs=epochs, seed=42)
    return load_model(path), path

def _scores(p, y):
    "Weighted log loss and AUC(any) of predictions `p` against labels `y` (both in the SUBTYPES order)."
    from ich_nbdev.metrics import weighted_log_loss, auc_any
    return weighted_log_loss(y, p), auc_any(y, p)

def real_boxes(folder):
    "For each DICOM slice of `folder`: the head box of its HU and of its brain-window picture (grey levels kept in memory)."
    from pathlib import Path
    from ich_nbdev.preprocess import load_hu_fast, head_bbox, to_uint8
    from ich_nbdev.dicom import DicomError
    from ich_nbdev.sources import image_head_bbox
    from ich_nbdev.windowing import window
    files = sorted(p for p in Path(folder).expanduser().rglob('*.dcm'))
    if not files: sys.exit(f"bench/forms.py: no .dcm files in {folder}")
    d, none = [], 0
    for f in files:
        try: hu, info = load_hu_fast(f)
        except DicomError as e: print(f"skipped {f.name}: {e.reason}"); continue
        sp = info['spacing']
        grey = to_uint8(window(hu, 40, 80))                                  # the brain window, as a PNG holds it
        a, b = head_bbox(hu, sp), image_head_bbox(grey * np.float32(80 / 255), sp, black=0)   # back to its HU (black: 0 HU)
        if a is None or b is None: none += 1; continue
        d.append(np.array([a[0] - b[0], b[1] - a[1], a[2] - b[2], b[3] - a[3]]) * np.array([sp[0], sp[0], sp[1], sp[1]]))
    g = np.array(d)
    print(f"{len(files)} slices, {none} without a head box in one form or both; the picture's box against the DICOM's, "
          f"mm outwards on each side (top, bottom, left, right):")
    print(f"  the same on {int((g == 0).all(1).sum())}, within 2 mm on every side on {int((np.abs(g) <= 2).all(1).sum())} "
          f"of {len(g)}; median {np.median(g, 0).round(1).tolist()}, least {g.min(0).round(1).tolist()}, most {g.max(0).round(1).tolist()}")

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--studies', type=int, default=None, help='the first N training studies only (default: all)')
    ap.add_argument('--epochs', type=int, default=4, help="the model's training epochs (default 4, the tests' model)")
    ap.add_argument('--train-studies', type=int, default=0, help='train the model on this many other synthetic studies '
                    '(at least 10; default 0: on the sample itself, as the tests)')
    ap.add_argument('--real', default=None, help='compare head boxes only, on the DICOM slices of this folder')
    a = ap.parse_args(argv)
    if a.real is not None: return real_boxes(a.real)
    if a.studies is not None and a.studies < 1: sys.exit(f"bench/forms.py: --studies must be at least 1, not {a.studies}")
    if a.epochs < 1: sys.exit(f"bench/forms.py: --epochs must be at least 1, not {a.epochs}")
    if a.train_studies and a.train_studies < 10: sys.exit(f"bench/forms.py: --train-studies must be 0 or at least 10, not {a.train_studies}")
    from ich_nbdev.core import SUBTYPES, number_slices, cache_root
    from ich_nbdev.data import read_labels
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.sources import read_source, predict_slices, write_nifti_sample, write_png_sample, write_ot_sample
    from ich_nbdev.sources import slice_hu, image_head_bbox, _image_hu
    from ich_nbdev.preprocess import head_bbox
    warnings.simplefilter('ignore')
    learn, path = _model(a.epochs, a.train_studies)
    src, w = synth_sample()/'stage_2_train', cache_root()/'bench-forms'
    shutil.rmtree(w, ignore_errors=True)
    forms = dict(nifti=write_nifti_sample(src, w/'nifti', a.studies), ot=write_ot_sample(src, w/'ot', a.studies),
                 png=write_png_sample(src, w/'png', a.studies))
    ref = number_slices(read_source(src)[0])
    ids = set(read_source(forms['png'])[0].image_id)
    ref = ref[ref.image_id.isin(ids)].sort_values(['study_id', 'slice_index']).reset_index(drop=True)
    y = read_labels(synth_sample()).loc[ref.image_id, SUBTYPES].to_numpy()
    pa, _ = predict_slices(learn, ref)
    mm = float(ref.spacing_row.iloc[0])
    print(f"model: {path.parent.name}; {len(ref)} slices of {ref.study_id.nunique()} studies")
    print(f"|ΔP| against the DICOM's, max (mean); weighted log loss and AUC(any) against the labels")
    print(f"{'form':34s}" + ''.join(f"{s[:14]:>16s}" for s in SUBTYPES) + f"{'wll':>9s}{'AUC any':>9s}")
    print(f"{'DICOM':34s}" + ' '*16*len(SUBTYPES) + '{:9.4f}{:9.4f}'.format(*_scores(pa[SUBTYPES].to_numpy(), y)))
    for key, kw, what in (('nifti', {}, 'NIfTI'), ('ot', {}, 'secondary capture, 1 mm assumed'),
                          ('ot', dict(pixel_mm=mm), f'secondary capture, {mm:.3f} mm'), ('png', {}, 'PNG, brain window')):
        b = number_slices(read_source(forms[key], **kw)[0])
        b = (b.sort_values(['study_id', 'slice_index']).reset_index(drop=True) if key == 'nifti'
             else b.set_index('image_id').loc[ref.image_id].reset_index())
        pb, bad = predict_slices(learn, b)
        if len(bad) or len(pb) != len(pa): sys.exit(f"bench/forms.py: {key}: {len(bad)} slice(s) refused")
        d = np.abs(pb[SUBTYPES].to_numpy() - pa[SUBTYPES].to_numpy())
        print(f"{what:34s}" + ''.join(f"{m:9.3f} ({a_:.3f})" for m, a_ in zip(d.max(0), d.mean(0))) +
              '{:9.4f}{:9.4f}'.format(*_scores(pb[SUBTYPES].to_numpy(), y)), flush=True)
    import ich_nbdev.sources as S                     # the model's sensitivity to framing alone: the DICOM's own box,
    box = S.head_bbox                                  # one pixel larger on every side
    def grown(hu, sp):
        b = box(hu, sp)
        return b and (max(0, b[0] - 1), min(hu.shape[0], b[1] + 1), max(0, b[2] - 1), min(hu.shape[1], b[3] + 1))
    S.head_bbox = grown
    try: pg, _ = predict_slices(learn, ref)
    finally: S.head_bbox = box
    d = np.abs(pg[SUBTYPES].to_numpy() - pa[SUBTYPES].to_numpy())
    print(f"{'DICOM, head box 1 px larger':34s}" + ''.join(f"{m:9.3f} ({a_:.3f})" for m, a_ in zip(d.max(0), d.mean(0))) +
          '{:9.4f}{:9.4f}'.format(*_scores(pg[SUBTYPES].to_numpy(), y)), flush=True)
    png = read_source(forms['png'])[0].set_index('image_id').loc[ref.image_id]
    same = sum(head_bbox(*slice_hu(a)[:2]) == image_head_bbox(_image_hu(b, 'brain')[0], (b.spacing_row, b.spacing_col), black=0)
               for a, b in zip(ref.itertuples(), png.itertuples()))
    print(f"head box of the PNG the DICOM's on {same} of {len(ref)} slices")

if __name__ == '__main__': main()
