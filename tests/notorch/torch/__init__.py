# On PYTHONPATH ahead of the real torch, this makes any import of torch fail: tests run the CLI verbs that must
# not need torch (help, run --raw, deploy, predict, sim) with it, so a stray import shows at once.
raise ImportError("torch imported where uquant promises not to (tests/notorch)")
