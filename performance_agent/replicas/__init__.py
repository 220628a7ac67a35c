"""Several agent replicas on one database: who leads the background loops, and who holds what."""
