"""How far a model's predictions through NIfTI, secondary-capture DICOM and brain-window PNG stray from the DICOM's
(max and mean |ΔP| of each output over the slices), for a brain ×3 model on the synthetic sample's training studies,
and on how many slices the PNG's head box is the DICOM's.

    python bench/forms.py [--studies N]      # default: every training study (960 slices)

The model (resnet10t, 64 px, 4 epochs, seed 42, brain ×3) is trained once into the cache folder, as tests/test_sources.py's."""
import argparse, shutil, sys, warnings
import numpy as np

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--studies', type=int, default=None, help='the first N training studies only (default: all)')
    a = ap.parse_args(argv)
    if a.studies is not None and a.studies < 1: sys.exit(f"bench/forms.py: --studies must be at least 1, not {a.studies}")
    from ich_nbdev.core import SUBTYPES, number_slices, cache_root
    from ich_nbdev.learner import synth_cache, cached_model
    from ich_nbdev.inference import load_model
    from ich_nbdev.synth import synth_sample
    from ich_nbdev.sources import read_source, predict_slices, write_nifti_sample, write_png_sample, write_ot_sample
    from ich_nbdev.sources import slice_hu, image_head_bbox, _image_hu
    from ich_nbdev.preprocess import head_bbox
    warnings.simplefilter('ignore')
    learn = load_model(cached_model('test-sources-brain3', synth_cache(size=64), arch='resnet10t', windows='brain,brain,brain',
                                    epochs=4, seed=42))
    src, w = synth_sample()/'stage_2_train', cache_root()/'bench-forms'
    shutil.rmtree(w, ignore_errors=True)
    forms = dict(nifti=write_nifti_sample(src, w/'nifti', a.studies), ot=write_ot_sample(src, w/'ot', a.studies),
                 png=write_png_sample(src, w/'png', a.studies))
    ref = number_slices(read_source(src)[0])
    ids = set(read_source(forms['png'])[0].image_id)
    ref = ref[ref.image_id.isin(ids)].sort_values(['study_id', 'slice_index']).reset_index(drop=True)
    pa, _ = predict_slices(learn, ref)
    mm = float(ref.spacing_row.iloc[0])
    print(f"{len(ref)} slices of {ref.study_id.nunique()} studies; |ΔP| against the DICOM's, max (mean)")
    print(f"{'form':34s}" + ''.join(f"{s[:14]:>16s}" for s in SUBTYPES))
    for key, kw, what in (('nifti', {}, 'NIfTI'), ('ot', {}, 'secondary capture, 1 mm assumed'),
                          ('ot', dict(pixel_mm=mm), f'secondary capture, {mm:.3f} mm'), ('png', {}, 'PNG, brain window')):
        b = number_slices(read_source(forms[key], **kw)[0])
        b = (b.sort_values(['study_id', 'slice_index']).reset_index(drop=True) if key == 'nifti'
             else b.set_index('image_id').loc[ref.image_id].reset_index())
        pb, bad = predict_slices(learn, b)
        if len(bad) or len(pb) != len(pa): sys.exit(f"bench/forms.py: {key}: {len(bad)} slice(s) refused")
        d = np.abs(pb[SUBTYPES].to_numpy() - pa[SUBTYPES].to_numpy())
        print(f"{what:34s}" + ''.join(f"{m:9.3f} ({a_:.3f})" for m, a_ in zip(d.max(0), d.mean(0))), flush=True)
    png = read_source(forms['png'])[0].set_index('image_id').loc[ref.image_id]
    same = sum(head_bbox(*slice_hu(a)[:2]) == image_head_bbox(_image_hu(b, 'brain')[0], (b.spacing_row, b.spacing_col), black=0)
               for a, b in zip(ref.itertuples(), png.itertuples()))
    print(f"head box of the PNG the DICOM's on {same} of {len(ref)} slices")

if __name__ == '__main__': main()
