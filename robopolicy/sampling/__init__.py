"""Sampling from the policies' noise processes: the processes as plain numbers
(:mod:`~robopolicy.sampling.processes`) and the registered samplers that walk them
(:mod:`~robopolicy.sampling.samplers`). Below the policies: a policy's ``sample()``, DPPO's
denoising chain and the inference engine all run these."""
