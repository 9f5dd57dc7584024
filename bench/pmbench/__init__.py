"""The podmirror datapath benchmark's parts (`bench/bench.py` is the entry point)."""
