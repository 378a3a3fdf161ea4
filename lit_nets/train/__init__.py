"""Training: the Lightning CLI, callbacks, runs, cross-validation and the hyper-parameter search. Uses core only."""
