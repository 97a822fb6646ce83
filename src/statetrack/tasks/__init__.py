"""State-tracking tasks of the paper and its anchors: data generators, fixed test sets, metrics.

```python
from statetrack.tasks import get_task, list_tasks, Batch
task = get_task("s5")                       # or get_task("s5", num_tokens_per_transition=2), ...
b = task.sample(512, generator=torch.Generator().manual_seed(0))  # Batch: input, target, mask [B, T]; lengths
ts = task.test_set("small")                 # fixed, versioned, disjoint from every training batch
```

Modules: ``chomsky`` (parity, modular arithmetic with/without brackets, cycle navigation, even pairs),
``permutations`` (permutation algebra on tuples, shared with statetrack.theory), ``groups`` (S_n, A_n, Z_m,
D_n and products as Cayley tables), ``word_problem`` (group word problems,
generator restrictions, k tokens per transition), ``registry`` (presets), ``metrics``.
This package imports nothing of the models.
"""

from . import metrics, permutations
from .base import TEST_SET_VERSION, Batch, Task
from .chomsky import CycleNav, EvenPairs, ModArith, ModArithBrackets, Parity
from .groups import Group, get_group, prefix_products
from .registry import FAMILIES, PRESETS, get_task, list_families, list_tasks, register_preset
from .word_problem import WordProblem

__all__ = [
    "FAMILIES",
    "PRESETS",
    "TEST_SET_VERSION",
    "Batch",
    "CycleNav",
    "EvenPairs",
    "Group",
    "ModArith",
    "ModArithBrackets",
    "Parity",
    "Task",
    "WordProblem",
    "get_group",
    "get_task",
    "list_families",
    "list_tasks",
    "metrics",
    "permutations",
    "prefix_products",
    "register_preset",
]
