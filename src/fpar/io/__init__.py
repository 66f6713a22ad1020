"""Input and output below every other package: video decoding and encoding (`video`), the labels
file of raw videos (`labels`), and files written whole or not at all (`atomic`).

`data`, `prepare`, `train` and `explain` all build on this package; it imports none of them.
"""
