"""The defence table: every ``--unlearn`` method, what it is, where its code lives, which
backbones it applies to, and its named variants (``attrcloak-dd`` …). The one place the CLI,
sweeps and benchmarks read methods from.

A defence is a function ``(RunContext) -> DefenceResult`` (``context.py``); its module is
imported only when the defence runs. Add a defence: write that function in ``unlearning/`` (a
post-training defence on the user side) or next to ``retrain.py`` (one that trains a new
model), then add one ``Defence`` line below (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Kind(StrEnum):
    """How a defence protects: it changes a trained model's user side, or trains a new one."""

    POST_TRAINING = "post_training"
    RETRAINING = "retraining"


@dataclass(frozen=True)
class Defence:
    """One ``--unlearn`` method."""

    name: str  # the --unlearn value
    label: str  # as printed in tables
    entry: str  # "module:function" of the defence, imported on use
    kind: Kind
    backbones: tuple[str, ...] | None = None  # the models it applies to; None: any
    folders: tuple[str, ...] = ()  # the folders it writes under the run's output folder
    # Named variants: method name -> (label, the config keys that select it).
    variants: Mapping[str, tuple[str, Mapping[str, Any]]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def load(self) -> Callable:
        """The defence function."""
        module_name, function = self.entry.split(":")
        return getattr(importlib.import_module(module_name), function)

    def applies_to(self, model: str) -> bool:
        """Whether the defence can run on a backbone ``model``."""
        return self.backbones is None or model in self.backbones


_U, _R = "recbole_attrcloak.unlearning", "recbole_attrcloak.retrain"
DEFENCES: dict[str, Defence] = {
    d.name: d
    for d in (
        Defence(
            "attrcloak",
            "AttrCloak",
            f"{_U}.attrcloak:run_attrcloak",
            Kind.POST_TRAINING,
            variants=MappingProxyType(
                {
                    "attrcloak-dd": ("AttrCloak-DD", MappingProxyType({"au_mode": "dd"})),
                    "attrcloak-df": ("AttrCloak-DF", MappingProxyType({"au_mode": "df"})),
                }
            ),
        ),
        Defence("u2u", "U2U-R", f"{_U}.distance_unlearning:run_u2u", Kind.POST_TRAINING),
        Defence("d2d", "D2D-R", f"{_U}.distance_unlearning:run_d2d", Kind.POST_TRAINING),
        # RAP's backbones: those of model.rap.RAP_VARIANTS (tests/test_baselines.py checks).
        Defence(
            "rap",
            "RAP",
            f"{_R}:run_rap",
            Kind.RETRAINING,
            ("BPR", "NeuMF", "LightGCN"),
            ("retrain",),
        ),
        Defence("blurme", "BlurMe", f"{_R}:run_blurme", Kind.RETRAINING, folders=("derived",)),
        Defence("ldp", "LDP-SH", f"{_R}:run_ldp", Kind.RETRAINING, folders=("derived",)),
    )
}
#: ``--unlearn`` values: ``none`` (audit only) and every defence.
CHOICES: tuple[str, ...] = ("none", *DEFENCES)


@dataclass(frozen=True)
class Method:
    """A defence with the settings of one of its variants (or itself), or the original model
    (``defence`` None): a row of the tables."""

    name: str  # e.g. "attrcloak-dd", "u2u", "original"
    label: str
    defence: Defence | None
    settings: Mapping[str, Any]  # config keys besides ``unlearn`` that select it

    @property
    def config(self) -> dict[str, Any]:
        """The config keys that run this method."""
        return {"unlearn": self.defence.name if self.defence else "none", **self.settings}

    @property
    def retrains(self) -> bool:
        """It trains a new model from scratch (no checkpoint of the original is reused)."""
        return self.defence is not None and self.defence.kind is Kind.RETRAINING

    @property
    def models(self) -> tuple[str, ...] | None:
        """The backbones it applies to (None: any)."""
        return self.defence.backbones if self.defence else None


def _methods() -> dict[str, Method]:
    out: dict[str, Method] = {}
    for defence in DEFENCES.values():
        for name, (label, settings) in defence.variants.items():
            out[name] = Method(name, label, defence, settings)
        if not defence.variants:
            out[defence.name] = Method(defence.name, defence.label, defence, MappingProxyType({}))
    return out


#: Every method by name: the defences without variants, and the variants of the others.
METHODS: dict[str, Method] = _methods()
#: The rows of the benchmark tables, in order: the original model, then every method.
CATALOGUE: dict[str, Method] = {
    "original": Method("original", "Original", None, MappingProxyType({})),
    **METHODS,
}


def check_method(name: Any) -> str:
    """``name`` if it is an ``--unlearn`` value, else ``ValueError`` listing them."""
    if name not in CHOICES:
        raise ValueError(f"unknown --unlearn method '{name}': choose one of {sorted(CHOICES)}")
    return str(name)


def check_backbone(name: str, model: str) -> None:
    """``ValueError`` when the ``--unlearn`` method ``name`` does not apply to ``model``."""
    defence = DEFENCES.get(name)
    if defence is not None and not defence.applies_to(model):
        raise ValueError(f"--unlearn {name} applies to {', '.join(defence.backbones)}, not {model}")


def get_defence(name: str, model: str | None = None) -> Callable | None:
    """The defence function for ``--unlearn name`` (None for ``none``); with ``model``, also
    check that the defence applies to that backbone (before any training)."""
    check_method(name)
    if model is not None:
        check_backbone(name, model)
    return None if name == "none" else DEFENCES[name].load()


def method_of(settings: Mapping[str, Any]) -> Method | None:
    """The method that a run's settings select: ``unlearn`` and, for a defence with variants,
    the keys that tell them apart (e.g. ``au_mode``); None for ``none``."""
    defence = DEFENCES.get(settings.get("unlearn", "none"))
    if defence is None:
        return None
    chosen = [
        method
        for method in METHODS.values()
        if method.defence is defence
        and all(key in settings and settings[key] == v for key, v in method.settings.items())
    ]
    if len(chosen) != 1:
        keys = sorted({k for m in METHODS.values() if m.defence is defence for k in m.settings})
        raise ValueError(f"{defence.name}: the settings must select one variant by {keys}")
    return chosen[0]


def method_name(settings: Mapping[str, Any]) -> str:
    """The catalogue name of a run's settings: ``original`` for ``none``, the variant when the
    settings select one, else the defence's own name (e.g. AttrCloak with its default mode)."""
    try:
        method = method_of(settings)
    except ValueError:
        return str(settings["unlearn"])
    return "original" if method is None else method.name
