"""Reading the records of jobs and clusters; the stats tables; the HTML report.

``read`` turns record files (fluxlite JSON records of jobs and clusters, kickstart YAML
records and outputs) into one list of attempts; ``tables`` computes the figures of
``fluxlite stats`` from them; ``report`` writes the HTML of ``fluxlite report``.
"""
