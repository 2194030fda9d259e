"""Output fidelity and perplexity (docs/method.md, "Output fidelity", "Perplexity"), taken on the run's engine after
the energy window through the backend's log-probability hooks (BackendSpec.gives_next_token_logprobs and
gives_rolling_loglikelihood): ``fidelity`` holds the figures' formulas, ``perplexity`` the bundled text's score,
``run`` the step an offline run takes after its window."""
