"""The device test farm: a results store shared by every host (SQLite on one host, PostgreSQL for several),
device leases (a kernel file lock on one host, a lease row in the store across hosts), and the job keys that
make a retried or late-delivered result count once."""

# One host's store; the folder is created. A shared farm passes a postgresql+psycopg:// URL instead.
DEFAULT_STORE_URL = "sqlite:///~/.cache/llamaport/farm/results.sqlite"
