"""Two-layer ReLU simulation of standard vs composed fine-tuning (docs/method.md §4, docs/experiments.md §2)."""
