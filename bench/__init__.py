"""The batterytrace benchmark suite (`make bench`, `python -m bench --help`).

It starts its own embedded PostgreSQL and tansu broker, runs the real services as separate uvicorn
processes, drives them over HTTP and prints the figures against the targets of the issues."""
