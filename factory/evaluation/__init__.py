"""Evaluation: C²-Eval course-correction and harmlessness, before/after training."""
