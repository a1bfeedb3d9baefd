"""AttrCloak losses: Gaussian MI bound (L_AU), two-objective weighting, baseline distances.

Pure torch: no RecBole, Ray or scikit-learn imports here.
"""

from recbole_attrcloak.losses.distances import d2d_loss, mmd2, u2u_loss
from recbole_attrcloak.losses.moo import LossWeights, flat_grad, solve_alpha
from recbole_attrcloak.losses.mutual_info import GaussianMIBound, gaussian_kl, gaussian_kl_terms

__all__ = [
    "GaussianMIBound",
    "LossWeights",
    "d2d_loss",
    "flat_grad",
    "gaussian_kl",
    "gaussian_kl_terms",
    "mmd2",
    "solve_alpha",
    "u2u_loss",
]
