"""Pegasus worker-node compatibility: a worker package made of fluxlite, pegasus-integrity's
command line, and the parts of pegasus-kickstart's behaviour that only its front end needs."""
