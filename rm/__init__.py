"""The reward model: a backbone plus a scalar head, trained K-wise on rankings (InstructGPT)."""
