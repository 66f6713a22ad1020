"""fpar.evaluate: metrics of trained runs, late fusion, and the report (DESIGN section 4).

    evaluate_path(run_or_group, checkpoint="best", split="test")  -> `fpar eval`
    fuse_runs([run_a, run_b], out, weights=[1, 1.5])              -> `fpar eval --fuse`
    build_report([runs...], out)                                  -> `fpar report`

It reads run dirs only through `fpar.train.rundir` and writes evaluation folders through
`fpar.evaluate.outputs`.
"""
