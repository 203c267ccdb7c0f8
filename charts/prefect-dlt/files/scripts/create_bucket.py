# Creates BUCKET on the S3 store at AWS_ENDPOINT_URL unless it exists; waits for the store
# (at most WAIT_SECONDS). Credentials come from the AWS_* environment (the storage Secret).
import os
import sys
import time

import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

bucket = os.environ["BUCKET"]
deadline = time.monotonic() + float(os.environ.get("WAIT_SECONDS", "600"))
s3 = botocore.session.get_session().create_client(
    "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_DEFAULT_REGION"]
)
while True:
    try:
        s3.head_bucket(Bucket=bucket)
        print(f"bucket {bucket}: exists", flush=True)
        sys.exit(0)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            s3.create_bucket(Bucket=bucket)
            print(f"bucket {bucket}: created", flush=True)
            sys.exit(0)
        problem = str(err)
    except BotoCoreError as err:
        problem = str(err)
    if time.monotonic() > deadline:
        sys.exit(f"bucket {bucket}: store not ready in time ({problem})")
    print(f"bucket {bucket}: waiting for the store ({problem})", flush=True)
    time.sleep(5)
