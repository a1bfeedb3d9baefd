"""Data helpers: sensitive attributes from RecBole ``.user`` files, and dataset converters."""
