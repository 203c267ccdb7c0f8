# `helm test`: the server answers /ready with the release's auth, and the work pool exists.
import os
import sys

import httpx

api = os.environ["PREFECT_API_URL"].rstrip("/")
pool = os.environ["WORK_POOL"]
auth = None
if os.environ.get("PREFECT_API_AUTH_STRING"):
    user, _, password = os.environ["PREFECT_API_AUTH_STRING"].partition(":")
    auth = (user, password)

with httpx.Client(auth=auth, timeout=10) as client:
    ready = client.get(f"{api}/ready")
    print(f"GET {api}/ready: HTTP {ready.status_code}")
    if ready.status_code != 200:
        sys.exit("the server is not ready")
    found = client.get(f"{api}/work_pools/{pool}")
    print(f"GET {api}/work_pools/{pool}: HTTP {found.status_code}")
    if found.status_code == 401:
        sys.exit("the server rejected the auth string")
    if found.status_code != 200:
        sys.exit(f"work pool {pool!r} not found")
    print(f"work pool {pool!r}: type {found.json().get('type')}")
