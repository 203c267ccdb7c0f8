"""The shop's customers, a dlt source shipped as a package."""
