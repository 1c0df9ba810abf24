"""Coverage of `ich_nbdev.evaluate`'s patient-bootstrap 95 % AUC intervals in a simulation: the share of intervals that
contain the population AUC (simulated patients with 1–8 correlated slices each).

    python bench/ci_coverage.py [REPS] [N_PATIENTS] [N_BOOT]
"""
import sys, time
from ich_nbdev.evaluate import ci_coverage

if __name__ == '__main__':
    reps, n_pat, n_boot = (int(a) for a in (sys.argv[1:] + ['200', '150', '500'][len(sys.argv) - 1:])[:3])
    t0 = time.time()
    cov, truth = ci_coverage(reps=reps, n_patients=n_pat, n_boot=n_boot, seed=0)
    print(f"population AUC {truth:.4f}; {n_pat} patients per sample, {n_boot} resamples per interval: "
          f"{cov:.1%} of {reps} intervals cover it ({time.time() - t0:.0f} s)")
