"""Clusters of tasks: many small tasks run as one job, locally or as Flux jobs.

``formats`` turns a PMC DAG, a pegasus-cluster list or a JSON job list into a ``TaskGraph``;
``scheduler`` decides what runs next (dependencies, priorities, retries, rescue file, time
limit); ``executors`` start tasks (the fork/exec slot pool), ``flux_jobs`` as Flux jobs in
an instance, ``pool`` on pool workers across the nodes, ``tiered`` the pool beside Flux
jobs; ``records`` writes a compact kickstart record and a ``[cluster-task ...]`` line per
task.
"""
