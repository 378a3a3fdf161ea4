"""What the tests share: running the CLI (``cli``), a model service on a free port (``service``), the trained
fixtures (``fixtures``), faults injected into runs (``faults``), probes of processes (``probes``) and the import graph
(``imports``)."""
