.PHONY: demo test bench lint
demo:   ## the demo pipelines on the embedded default
	scripts/demo.sh
test:   ## the whole test suite (installs its services)
	scripts/test.sh
bench:  ## ratio benchmarks against plain dlt (1,000,000 rows)
	scripts/bootstrap.sh && scripts/install-services.sh
	.venv/bin/python -m tests.benchmarks.bench_state
	.venv/bin/python -m tests.benchmarks.bench_collector
	.venv/bin/python -m tests.benchmarks.bench_memory
	.venv/bin/python -m tests.benchmarks.bench_fanout
lint:
	.venv/bin/ruff check flows tests && .venv/bin/ruff format --check flows tests && .venv/bin/mypy
