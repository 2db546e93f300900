"""What the tests and benchmarks start and stop: a real server on loopback (server.py), a
throwaway PostgreSQL cluster (postgres.py), a real upstream (upstream.py), a tiny vision model
(vision.py). Nothing in the product imports this package."""
