"""What a defence receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from recbole.config import Config

from recbole_attrcloak.data.attributes import AttributeLabels


@dataclass
class RunContext:
    """What a defence gets: the loaded data, the original model and the sensitive attributes."""

    config: Config
    dataset: Any
    train_data: Any
    valid_data: Any
    test_data: Any
    model: torch.nn.Module
    attributes: dict[str, AttributeLabels]
    output_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class DefenceResult:
    """What a defence returns: the protected model, its report entry, and — for defences that
    retrain on derived data — the context (config, data, attributes) the model belongs to."""

    model: torch.nn.Module
    info: dict[str, Any]
    context: RunContext | None = None
