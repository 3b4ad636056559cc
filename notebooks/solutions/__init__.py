"""Solutions to the exercises of notebooks/04_probes_and_exercises.ipynb, one module per exercise. The notebook
loads them in collapsed cells while USE_SOLUTIONS is True; tests/test_exercises.py holds each to its checker."""
