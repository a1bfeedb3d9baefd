"""Audit a RecBole model's user embeddings for attribute leakage and optionally unlearn it.

python run_recbole_au.py --model BPR --dataset ml-100k --unlearn attrcloak --au_mode df
"""

import sys

from recbole_attrcloak.cli import main

if __name__ == "__main__":
    sys.exit(main())
