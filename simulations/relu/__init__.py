"""Two-layer ReLU simulation of standard vs composed fine-tuning (docs README §2-3)."""
