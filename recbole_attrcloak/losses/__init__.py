"""AttrCloak losses: the leakage objectives (the random-relabeling null, the Gaussian MI bound
L_AU), two-objective weighting, the baselines' distances and RAP's adversary, and the protocol
every leakage objective implements.

Pure torch: no RecBole, Ray or scikit-learn imports here.
"""

from recbole_attrcloak.losses.adversary import AdversaryGame, AttributeAdversary, reverse_gradient
from recbole_attrcloak.losses.distances import (
    MMDEstimator,
    d2d_loss,
    mmd2,
    random_fourier_features,
    u2u_loss,
)
from recbole_attrcloak.losses.kernel_critics import Critic, default_critics
from recbole_attrcloak.losses.moo import FIXED_SOLVERS, LossWeights, Solver, flat_grad, solve_alpha
from recbole_attrcloak.losses.mutual_info import (
    Covariance,
    GaussianMIBound,
    Target,
    gaussian_kl,
    gaussian_kl_terms,
)
from recbole_attrcloak.losses.objective import LeakageObjective, TermReport
from recbole_attrcloak.losses.relabel import RelabelingNull

__all__ = [
    "AdversaryGame",
    "AttributeAdversary",
    "Covariance",
    "Critic",
    "GaussianMIBound",
    "LeakageObjective",
    "FIXED_SOLVERS",
    "LossWeights",
    "MMDEstimator",
    "RelabelingNull",
    "Solver",
    "Target",
    "TermReport",
    "d2d_loss",
    "default_critics",
    "flat_grad",
    "gaussian_kl",
    "gaussian_kl_terms",
    "mmd2",
    "random_fourier_features",
    "solve_alpha",
    "reverse_gradient",
    "u2u_loss",
]
