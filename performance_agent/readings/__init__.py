"""What a server's metrics page reads as, in engine-neutral terms; a leaf package.

`page` is the parsed page; `series` the cumulative series an engine adapter extracts from it and
their `sum by (le)` merge. Engine adapters (`engines/`) produce these and `metrics/` parses pages
into them and computes snapshots from them, so they live apart from both: neither package then
imports the other's internals in a cycle. Imports nothing else of the agent.
"""
