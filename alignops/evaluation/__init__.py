"""Evaluation: the arithmetic (metrics, human-rating aggregation and agreement), the independent judges, the
model passes over the eval sets (scoring) and the figures. alignops.stages.evaluate composes them."""
