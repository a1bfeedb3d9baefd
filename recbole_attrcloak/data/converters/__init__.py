"""Convert original dataset releases to RecBole atomic files.

Each converter reads one original release and writes ``out_dir/name/name.{inter,user,item}``:
tab-separated files whose header cells are ``field:type`` (see
https://recbole.io/docs/user_guide/data/atomic_files.html). The ``.user`` file carries the
sensitive attributes the audit needs. Field mappings are documented in ``docs/datasets.md``.
"""

from recbole_attrcloak.data.converters.common import ConversionError, write_atomic
from recbole_attrcloak.data.converters.lastfm import COUNTRY_TO_CONTINENT, convert_lastfm1k
from recbole_attrcloak.data.converters.modcloth import convert_modcloth
from recbole_attrcloak.data.converters.movielens import convert_ml1m

__all__ = [
    "COUNTRY_TO_CONTINENT",
    "ConversionError",
    "write_atomic",
    "convert_lastfm1k",
    "convert_ml1m",
    "convert_modcloth",
]
