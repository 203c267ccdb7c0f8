"""`python -m flows.work_pool`: prints the base job template JSON (same as
`flows work-pool template`)."""

import sys

from flows.work_pool import template_json

sys.stdout.write(template_json())
