"""Ray Tune sweeps over defences, their hyper-parameters, models, datasets and seeds.

``run_sweep("configs/sweeps/ablation.yaml", "benchmarks/results/ablation")`` runs every trial
of a YAML spec with the same pipeline as the command line (``quick_start.run``), training each
distinct (model, dataset, training config, seed) once; docs/tune.md describes the spec and the
outputs. The benchmark scripts run through it too. This package is the only place that imports
Ray.
"""

from recbole_attrcloak.tune.cluster import ClusterError
from recbole_attrcloak.tune.runner import SweepResult, run_sweep
from recbole_attrcloak.tune.spec import Spec, SpecError, Trial, load_spec
from recbole_attrcloak.tune.workdir import CodeVersionError

__all__ = [
    "ClusterError",
    "CodeVersionError",
    "Spec",
    "SpecError",
    "SweepResult",
    "Trial",
    "load_spec",
    "run_sweep",
]
