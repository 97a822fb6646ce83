"""lm-evaluation-harness on statetrack models: its HFLM wrapper around our AutoModelForCausalLM, so any lm-eval
task runs where its data can be read (hub datasets where a network exists; local files and task YAMLs anywhere,
through ``include_path``)."""

from __future__ import annotations

from pathlib import Path


def run_lm_eval(model, tokenizer, tasks: list[str], *, include_path: str | Path | None = None,
                limit: int | None = None, batch_size: int = 8, num_fewshot: int | None = None,
                max_length: int | None = None) -> dict:  # fmt: skip
    """lm-eval's results dict for ``tasks`` on ``model`` (a loaded StateTrackForCausalLM) and ``tokenizer``.

    ``include_path``: a folder of task YAMLs (local tasks); ``limit``: examples per task (for quick checks).
    ValueError naming the task when lm-eval does not know it."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise ValueError("tasks: name at least one lm-eval task")
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"tasks: lm-eval knows no task {unknown} (add a folder of task YAMLs with include_path)")
    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device,
              max_length=max_length or getattr(model.config, "max_position_embeddings", None) or 2048)  # fmt: skip
    return simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                           log_samples=False)  # fmt: skip


def summary(results: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} of lm-eval's results (numbers only, stderr dropped)."""
    out = {}
    for task, metrics in results.get("results", {}).items():
        out[task] = {k.split(",")[0]: float(v) for k, v in metrics.items()
                     if isinstance(v, int | float) and "stderr" not in k and k != "alias"}  # fmt: skip
    return out
