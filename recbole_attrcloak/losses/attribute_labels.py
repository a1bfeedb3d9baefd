"""The attributes' labels as the random-relabeling null needs them: the users with a known value
in a kept class, their balanced, centred one-hot labels and the label moments of the null.

Pure torch; no RecBole, Ray or scikit-learn import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class _Attribute:
    name: str
    users: Tensor  # rows of the representation with a known value (in a kept class)
    codes: Tensor  # (m,) their classes, 0…K−1
    labels: Tensor  # (m, K) balanced, centred one-hot
    label_sq: float  # ‖Ỹ‖²_F
    pair_sq: float  # mean over pairs u≠v of ⟨ỹ_u, ỹ_v⟩²
    dropped: tuple[int, ...]  # class codes left out (fewer than min_class_size users)


def _rest(attr: _Attribute) -> tuple[float, float, tuple[int, ...]]:
    return attr.label_sq, attr.pair_sq, attr.dropped


def null_moments(
    m: int, off_sum: Tensor, off_sq: Tensor, label_sq: float, pair_sq: float
) -> tuple[Tensor, Tensor]:
    """Mean and spread of U = Σ_{u≠v} k_uv ⟨ỹ_u, ỹ_v⟩ under a uniform permutation of the m
    centred labels, for any symmetric pair weights k with ``off_sum`` = Σ_{u≠v} k_uv and
    ``off_sq`` = Σ_{u≠v} k_uv²: the mean −off_sum·‖Ỹ‖²/(m(m−1)) exactly, the spread
    √(2·E⟨ỹ_u, ỹ_v⟩²·off_sq) with the pairs taken as independent (checked against permutations
    for every critic in the tests). Shared by every critic of ``losses.relabel``."""
    mean = -off_sum / (m * (m - 1)) * label_sq
    with torch.no_grad():
        spread = torch.sqrt((2.0 * pair_sq) * off_sq.clamp_min(0.0)).clamp_min(1e-30)
    return mean, spread


#: ``au_label_weights``: how each class's labels are scaled (``_balanced_onehot``).
LABEL_WEIGHTS = ("class", "scatter")


def _balanced_onehot(
    codes: Tensor, n_classes: int, weights: str = "class", dtype: torch.dtype = torch.float64
) -> Tensor:
    """(m, K): the one-hot, centred, each class scaled, in ``dtype`` on ``codes``' device.

    ``class`` (the default): 1[y=k]/n_k − 1/m, every class mean weighted alike, as the audit's
    class-balanced attackers and balanced accuracy weigh the classes. ``scatter``:
    (1[y=k] − n_k/m)/√n_k, every class mean in units of its own noise, so that tr(SᵀMS) is the
    between-class scatter Σ_k n_k‖f̄_k − f̄‖²_M of an ANOVA. With ``class`` the statistic's null
    spread is dominated by the smallest classes, whose means are mostly noise, and a large
    class's leakage hardly moves its z (tests/test_relabel.py plants one); with ``scatter`` the
    small classes weigh little (measured over the ml-100k grid in docs/attrcloak.md)."""
    if weights not in LABEL_WEIGHTS:
        raise ValueError(f"label weights {weights!r}: choose from {', '.join(LABEL_WEIGHTS)}")
    onehot = torch.zeros(len(codes), n_classes, dtype=dtype, device=codes.device)
    onehot[torch.arange(len(codes), device=codes.device), codes] = 1.0
    counts = onehot.sum(0).clamp_min(1.0)
    if weights == "class":
        return onehot / counts - 1.0 / len(codes)
    return (onehot - counts / len(codes)) / counts.sqrt()


def _attribute(name: str, codes: Tensor, min_class_size: int, weights: str = "class") -> _Attribute:
    codes = torch.as_tensor(codes).long().cpu()
    known = codes >= 0
    counts = torch.bincount(codes[known], minlength=int(codes.max()) + 1 if known.any() else 1)
    kept = counts >= min_class_size
    if int(kept.sum()) < 2:
        raise ValueError(
            f"attribute {name!r}: fewer than 2 classes with at least {min_class_size} users"
        )
    recode = torch.full((len(counts),), -1, dtype=torch.long)
    recode[kept] = torch.arange(int(kept.sum()))
    mapped = torch.where(known, recode[codes.clamp_min(0)], torch.full_like(codes, -1))
    users = (mapped >= 0).nonzero().squeeze(1)
    labels = _balanced_onehot(mapped[users], int(kept.sum()), weights)
    dropped = tuple(int(c) for c in (~kept & (counts > 0)).nonzero().squeeze(1))
    return _labelled(name, users, mapped[users], labels, dropped)


def _labelled(
    name: str, users: Tensor, codes: Tensor, labels: Tensor, dropped: tuple[int, ...]
) -> _Attribute:
    """The attribute with classes ``codes`` (m,) and their ``labels`` (m, K) on ``users``, and
    its label moments."""
    return _Attribute(name, users, codes, labels, *_label_moments(labels), dropped)


def _label_moments(labels: Tensor) -> tuple[float, float]:
    """‖Ỹ‖²_F and the mean over pairs u≠v of ⟨ỹ_u, ỹ_v⟩² of the labels Ỹ (m, K)."""
    m = len(labels)
    # Σ_{u≠v} ⟨ỹ_u, ỹ_v⟩² = ‖ỸᵀỸ‖²_F − Σ_u ‖ỹ_u‖⁴: a (K, K) product, never the (m, m) Gram
    # matrix of the users (80 GB at 10^5 users)
    total = (labels.T @ labels).square().sum()
    pair_sq = float((total - labels.square().sum(1).square().sum()) / (m * (m - 1)))
    return float(labels.square().sum()), pair_sq


@dataclass(frozen=True)
class LabelBlock:
    """Labelings of the same users side by side, so that every critic scores all of them with
    one product: labeling j owns the columns where ``segments`` is j."""

    names: tuple[str, ...]  # one per labeling: an attribute's name, or ``name=k`` for one class
    users: Tensor
    codes: dict[str, Tensor]  # attribute name → its classes (m,) on ``users``
    labels: Tensor  # (m, C): the labelings' balanced, centred one-hot columns
    segments: Tensor  # (C, L): column c belongs to labeling j where it is 1
    label_sq: Tensor  # (L,) ‖Ỹ_j‖²_F
    pair_sq: Tensor  # (L,) mean over pairs u≠v of ⟨ỹ_u, ỹ_v⟩² under labeling j


def block_to(block: LabelBlock, device: torch.device, dtype: torch.dtype) -> LabelBlock:
    """``block`` on ``device``, its label values in ``dtype`` (the representations')."""
    values = ("labels", "segments", "label_sq", "pair_sq")
    moved = {k: getattr(block, k).to(device, dtype) for k in values}
    codes = {name: c.to(device) for name, c in block.codes.items()}
    return replace(block, users=block.users.to(device), codes=codes, **moved)


def label_block(
    names: Sequence[str], users: Tensor, labels: Sequence[Tensor], codes: dict[str, Tensor]
) -> LabelBlock:
    """The block of the labelings ``labels`` (each (m, K_j), balanced and centred) of ``users``;
    ``codes``: the classes of the attributes whose labelings these are (by name)."""
    each = [_label_moments(y) for y in labels]
    widths = torch.tensor([y.shape[1] for y in labels])
    segments = torch.eye(len(labels), dtype=torch.float64).repeat_interleave(widths, 0)
    return LabelBlock(
        tuple(names),
        users,
        dict(codes),
        torch.cat(list(labels), 1),
        segments,
        torch.tensor([label_sq for label_sq, _ in each], dtype=torch.float64),
        torch.tensor([pair_sq for _, pair_sq in each], dtype=torch.float64),
    )


def one_vs_rest(attr: _Attribute) -> list[tuple[str, Tensor]]:
    """``attr``'s classes one at a time against the others (none for two classes): (``name=k``,
    balanced two-class labels of the same users) per class. A trace over K classes weighs each
    class mean by the noise of all K, so one large class that stands apart hardly moves the
    K-class statistic (ml-100k: the 18–24 age class and the students stood ten null standard
    deviations apart on their own while the 7- and 21-class statistics met their tolerance)."""
    n_classes = attr.labels.shape[1]
    if n_classes <= 2:
        return []
    return [
        (f"{attr.name}={k}", _balanced_onehot((attr.codes == k).long(), 2, dtype=attr.labels.dtype))
        for k in range(n_classes)
    ]


def label_blocks(
    attributes: Sequence[_Attribute], class_critics: bool
) -> tuple[list[LabelBlock], set[str]]:
    """Every attribute's labeling (and, with ``class_critics``, each of its classes against the
    rest) grouped into blocks of labelings of the same users; also the names of the one-vs-rest
    labelings (their tolerance is calibrated to their number)."""
    groups: dict[tuple[int, ...], list[tuple[str, Tensor, Tensor]]] = {}
    codes: dict[tuple[int, ...], dict[str, Tensor]] = {}
    classes: set[str] = set()
    for attr in attributes:
        key = tuple(attr.users.tolist())
        rows = groups.setdefault(key, [])
        codes.setdefault(key, {})[attr.name] = attr.codes
        rows.append((attr.name, attr.users, attr.labels))
        for name, labels in one_vs_rest(attr) if class_critics else []:
            rows.append((name, attr.users, labels))
            classes.add(name)
    blocks = [
        label_block([r[0] for r in rows], rows[0][1], [r[2] for r in rows], codes[key])
        for key, rows in groups.items()
    ]
    return blocks, classes
