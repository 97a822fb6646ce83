"""`statetrack reproduce`: the paper's state-tracking tables and figures, one command each, next to the paper.

```python
from statetrack.reproduce import reproduce
reproduce("table3", "quick", "results/reproduce-quick")   # trains what is not cached, writes tables/PNGs/JSON
```

Modules: ``experiments`` (the runs: models, tasks, settings), ``budgets`` (smoke / quick / paper),
``paper_numbers`` (the published values and claims, as data), ``cache`` (config hashing, atomic results),
``worker`` (one run), ``sweep`` (many runs over worker processes and GPUs, progress view), ``aggregate``
(lr selection, best-of, median +- MAD, L_0.9, claims), ``report`` (Markdown), ``plots`` (PNGs),
``provenance`` (command, versions, device, throughput), ``runner`` (the whole invocation).
"""

from .budgets import BUDGET_NAMES, BUDGETS, Budget, get_budget
from .cache import config_key, load_result
from .experiments import EXPERIMENTS, RunSpec, build_runs
from .runner import plan, reproduce

__all__ = ["BUDGETS", "BUDGET_NAMES", "EXPERIMENTS", "Budget", "RunSpec", "build_runs", "config_key", "get_budget",
           "load_result", "plan", "reproduce"]  # fmt: skip
