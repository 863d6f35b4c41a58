"""Batch jobs: a jobs file of runs, run in this process or on a Ray cluster, with a summary table.

:mod:`jobs` reads jobs files, :mod:`results` runs a group of jobs on one Session, :mod:`summary`
writes the table, :mod:`runner` ties them together, :mod:`ray_runner` sends groups to Ray.
"""
