"""The suite's numerical tolerances, in one table (add entries; do not change others' without a reason).

Each entry says why its value is what it is. Import as ``from _tolerances import TOL``
(pytest prepends ``tests/`` to sys.path: the folder has no __init__.py).
"""
TOL = {
    # float64 central differences with h = 1e-6: truncation O(h^2 |f'''|) ~ 1e-12, round-off
    # O(eps |f| / h) ~ 1e-10; 1e-7 relative leaves a wide margin on well-scaled small nets.
    "fd_float64": {"rtol": 1e-7, "atol": 1e-9},
    # two float64 computations of the same quantity by different (but exact) formulas
    "same_float64": {"rtol": 1e-12, "atol": 1e-13},
    # the same float64 quantity where the CPU's kernels choose the operation order (vectorised
    # reductions and matmuls differ between x86 machines): seen 3e-12 relative apart between two
    # VMs of this project on results normalised to 1, so exact or 1e-12 comparisons are not portable
    "reordered_float64": {"rtol": 1e-10, "atol": 1e-12},
    # Monte-Carlo checks: |mean - exact| <= z * (empirical standard error). With 12 compared
    # components and fixed seeds, the chance of a false failure at z = 4 is ~1e-3 per seed.
    "mc_z": 4.0,
}
