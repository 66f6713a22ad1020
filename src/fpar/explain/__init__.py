"""fpar.explain: class activation maps of every model on images and videos (DESIGN section 2).

`media` reads the untrusted input, `cam` makes one map per frame (`explain`), `render` draws
overlays, videos and contact sheets, `run` is `fpar cam` end to end. docs/cam.md is the user's guide.
"""
