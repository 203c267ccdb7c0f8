"""An example dlt project: the shop's REST API into a warehouse."""
