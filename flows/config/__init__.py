"""The platform's own configuration: typed settings, paths, the dlt defaults it provides, sizing."""
