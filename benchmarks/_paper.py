"""The paper's own numbers (Wu et al., AttrCloak, ICDE 2025), typed in from its text
(/work/shared/paper/attrcloak-paper.txt on our machines) as reference for the benchmark
tables: raw attack accuracy (Tables IV, VII), utility (Tables V, VII) and running time on an
A100 (Table VI)."""

from __future__ import annotations

import math
from typing import Any

PAPER_ATTRIBUTES = ("gender", "age", "occupation")


def _paper(
    xgb: tuple[float, ...],
    mlp: tuple[float, ...],
    utility: tuple[float, ...],
    seconds: float | None = None,
) -> dict[str, Any]:
    return {"xgboost": xgb, "mlp": mlp, "utility": utility, "seconds": seconds}


# The paper's own numbers (Wu et al., AttrCloak, ICDE 2025), typed in as reference. Privacy:
# raw attack accuracy for (gender, age, occupation); utility: (NDCG@5, NDCG@10, HR@5, HR@10);
# seconds: running time. NeuMF stands for the paper's NCF backbone: Table IV (privacy),
# Table V (utility), Table VI (time, backbone not stated: the paper's default NCF).
# LightGCN: Table VII (ml-100k only, no times). The paper has no BPR backbone.
PAPER: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("ml-100k", "NeuMF"): {
        "original": _paper(
            (0.7626, 0.4496, 0.2281), (0.7414, 0.3289, 0.2454), (0.8116, 0.7721, 0.7979, 0.7479)
        ),
        "attrcloak-dd": _paper(
            (0.5822, 0.1989, 0.0995),
            (0.5928, 0.1724, 0.0358),
            (0.8172, 0.7769, 0.8034, 0.7524),
            235.78,
        ),
        "rap": _paper(
            (0.9310, 0.8143, 0.6034),
            (0.6286, 0.2056, 0.0995),
            (0.5819, 0.5590, 0.5784, 0.5473),
            580.35,
        ),
        "blurme": _paper(
            (0.6300, 0.3170, 0.1525),
            (0.6605, 0.2162, 0.0902),
            (0.8053, 0.7685, 0.7941, 0.7464),
            678.69,
        ),
        "ldp": _paper(
            (0.6698, 0.2692, 0.1472),
            (0.6976, 0.2586, 0.0690),
            (0.6183, 0.5838, 0.6174, 0.5695),
            414.76,
        ),
        "attrcloak-df": _paper(
            (0.5995, 0.2401, 0.1419),
            (0.6088, 0.1950, 0.0528),
            (0.7728, 0.7531, 0.7661, 0.7409),
            12.81,
        ),
        "u2u": _paper(
            (0.9987, 0.9947, 0.9788),
            (0.6300, 0.2003, 0.1056),
            (0.6952, 0.6735, 0.6895, 0.6619),
            8.98,
        ),
        "d2d": _paper(
            (0.6538, 0.2798, 0.1989),
            (0.6340, 0.2162, 0.0531),
            (0.6685, 0.6439, 0.6614, 0.6294),
            7.45,
        ),
    },
    ("ml-1m", "NeuMF"): {
        "original": _paper(
            (0.7955, 0.4164, 0.1995), (0.7243, 0.3526, 0.1660), (0.6473, 0.6095, 0.6324, 0.5853)
        ),
        "attrcloak-dd": _paper(
            (0.5608, 0.1692, 0.1024),
            (0.5217, 0.1656, 0.0406),
            (0.6554, 0.6176, 0.6404, 0.5934),
            1322.18,
        ),
        "rap": _paper(
            (0.9917, 0.9611, 0.8079),
            (0.5235, 0.1829, 0.0257),
            (0.6518, 0.6224, 0.6285, 0.5979),
            4317.50,
        ),
        "blurme": _paper(
            (0.6641, 0.2957, 0.1482),
            (0.6177, 0.1573, 0.0803),
            (0.6468, 0.6089, 0.6306, 0.5840),
            4266.94,
        ),
        "ldp": _paper(
            (0.6854, 0.3171, 0.1217),
            (0.6475, 0.1838, 0.0828),
            (0.4907, 0.4691, 0.4928, 0.4609),
            2972.77,
        ),
        "attrcloak-df": _paper(
            (0.6203, 0.2503, 0.0772),
            (0.6169, 0.1821, 0.0555),
            (0.6523, 0.6217, 0.6277, 0.5958),
            39.20,
        ),
        "u2u": _paper(
            (0.9999, 0.9992, 0.9999),
            (0.6036, 0.2036, 0.0927),
            (0.6750, 0.6243, 0.6467, 0.5904),
            111.36,
        ),
        "d2d": _paper(
            (0.7113, 0.3180, 0.1551),
            (0.6537, 0.2045, 0.0348),
            (0.6318, 0.6017, 0.5981, 0.5668),
            56.98,
        ),
    },
    ("ml-100k", "LightGCN"): {
        "original": _paper(
            (0.7029, 0.3422, 0.1923), (0.7520, 0.3382, 0.2255), (0.8125, 0.7847, 0.7997, 0.7657)
        ),
        "attrcloak-dd": _paper(
            (0.5557, 0.1499, 0.0849), (0.5530, 0.1645, 0.0836), (0.8218, 0.7944, 0.8017, 0.7768)
        ),
        "rap": _paper(
            (0.8302, 0.6525, 0.4748), (0.5477, 0.1790, 0.0838), (0.6019, 0.5726, 0.5870, 0.5471)
        ),
        "blurme": _paper(
            (0.6008, 0.2294, 0.1300), (0.6061, 0.2255, 0.0902), (0.8136, 0.7875, 0.8000, 0.7794)
        ),
        "ldp": _paper(
            (0.6565, 0.1923, 0.1194), (0.6260, 0.2719, 0.1326), (0.6391, 0.6144, 0.6251, 0.4962)
        ),
        "attrcloak-df": _paper(
            (0.5066, 0.1698, 0.1154), (0.5782, 0.2069, 0.0716), (0.7470, 0.7203, 0.7343, 0.7018)
        ),
        "u2u": _paper(
            (0.9151, 0.6989, 0.8422), (0.5875, 0.2149, 0.0796), (0.6606, 0.6255, 0.6476, 0.6033)
        ),
        "d2d": _paper(
            (0.6273, 0.2228, 0.1658), (0.6153, 0.2480, 0.0822), (0.6371, 0.6150, 0.6359, 0.6036)
        ),
    },
}
PAPER_TABLES = {
    ("ml-100k", "NeuMF"): "Tables IV, V, VI",
    ("ml-1m", "NeuMF"): "Tables IV, V, VI",
    ("ml-100k", "LightGCN"): "Table VII",
}


def paper_value(
    dataset: str, model: str, method: str, kind: str, index: int | None = None
) -> float:
    """One of the paper's numbers (``kind``: xgboost, mlp, utility, seconds), NaN if none."""
    entry = PAPER.get((dataset, model), {}).get(method)
    if entry is None or entry[kind] is None:
        return math.nan
    return entry[kind] if index is None else entry[kind][index]


def paper_attack(dataset: str, model: str, method: str, attr: str, attacker: str) -> float:
    """The paper's raw attack accuracy of ``attacker`` (mlp or xgboost) on ``attr``."""
    if attr not in PAPER_ATTRIBUTES or attacker not in ("mlp", "xgboost"):
        return math.nan
    return paper_value(dataset, model, method, attacker, PAPER_ATTRIBUTES.index(attr))


def paper_seconds(dataset: str, method: str) -> float:
    """Table VI: the paper's running time of ``method`` on ``dataset`` (seconds on an A100;
    the backbone is not stated: its default, NCF). NaN where the table has none."""
    return paper_value(dataset, "NeuMF", method, "seconds")
