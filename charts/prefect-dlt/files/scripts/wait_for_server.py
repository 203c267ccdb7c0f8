# Waits until the Prefect server at PREFECT_API_URL answers /ready (at most WAIT_SECONDS).
import os
import sys
import time

import httpx

url = os.environ["PREFECT_API_URL"].rstrip("/") + "/ready"
deadline = time.monotonic() + float(os.environ.get("WAIT_SECONDS", "600"))
while True:
    try:
        status = httpx.get(url, timeout=5).status_code
        if status == 200:
            print(f"{url}: ready", flush=True)
            sys.exit(0)
        problem = f"HTTP {status}"
    except httpx.HTTPError as err:
        problem = f"{type(err).__name__}: {err}"
    if time.monotonic() > deadline:
        sys.exit(f"{url}: not ready in time ({problem})")
    print(f"{url}: waiting ({problem})", flush=True)
    time.sleep(3)
