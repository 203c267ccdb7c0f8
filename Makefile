.PHONY: demo test bench lint
demo:   ## the demo pipelines on the embedded default
	scripts/demo.sh
test:   ## the whole test suite (installs its services)
	scripts/test.sh
bench:  ## interleaved ratio benchmarks, each sample in its own cgroup (needs root)
	scripts/bootstrap.sh && scripts/install-services.sh
	.venv/bin/python -m tests.benchmarks
	.venv/bin/python -m tests.benchmarks.bench_fanout
	.venv/bin/python -m tests.benchmarks.bench_exporter
lint:
	.venv/bin/ruff check flows devstack tests && .venv/bin/ruff format --check flows devstack tests && .venv/bin/mypy
