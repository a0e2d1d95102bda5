"""The ``cot-ground`` command line."""
