"""A package outside lit_nets, as a user's would be: a network, a classifier subclass and a data module that the
model contract test (tests/integration/test_model_contract.py) takes through every command."""
