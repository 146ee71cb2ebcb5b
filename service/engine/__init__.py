"""Step-level continuous batching of MCMC chains, device workers, admission control and jobs."""
