"""labscale: the thin library under the Laboratory-Scale AI research companion.

Notebooks import this package; every step of an experiment (data, prompts, generation, metrics,
run records, plots) is one call into it.
"""

__version__ = "0.1.0"
