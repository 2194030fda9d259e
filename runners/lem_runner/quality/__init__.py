"""Output fidelity and perplexity (docs/method.md, "Output fidelity", "Perplexity"), taken on the run's engine after
the energy window through the backend's log-probability hooks (BackendSpec.token_logprobs): ``fidelity`` holds the
figures' formulas and the reference's outputs, ``perplexity`` the bundled text's score."""
