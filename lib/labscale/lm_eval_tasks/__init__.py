"""lm-evaluation-harness task configs shipped with labscale (registered via ``TaskManager(include_path=...)``)."""
