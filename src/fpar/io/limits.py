"""How large a decoded picture may be, for images and video frames alike.

Files and uploads are untrusted: a few kilobytes of PNG or H.264 can claim a picture of any size,
and decoding it costs memory and time in proportion to the claim (a 140 kB PNG of 144 megapixels
took 1.6 GB; an 18 kB H.264 of 8192x8192 frames 0.4 s a frame). Sizes are checked from headers
before anything is decoded. 8K UHD (33 megapixels) still passes; head-camera video is far smaller.
"""

from __future__ import annotations

MAX_PIXELS = 40_000_000
