"""`fpar bench`: how fast fpar prepares, loads, trains, infers and explains, measured side by side.

`run.run_bench` runs every section and returns one JSON-ready dict; `table.tables` renders it.
Sections by module: `preparation` (a), `loading` (b, with the loader's share of a training step),
`training` (c: step times against `reference`'s Ego-RNN-style baseline; d: inference; f: FLOP
rates), `cam` (e). `timing` holds the rules: warm-up excluded, candidates timed in turns,
medians, the load average beside every figure. docs/bench.md explains the figures.
"""
