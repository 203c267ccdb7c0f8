"""What operators see from outside: a Prometheus exporter that turns the Prefect API's flow
runs, pools and workers and the platform's run records into metrics (`flows metrics serve`).

It reads what durable/ and prefect/ record and nothing imports it back; flow-run pods are
short-lived and are never the scrape target.
"""
