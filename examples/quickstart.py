"""Route a few prompts with the shipped default router.  Run: python examples/quickstart.py"""

import routekit

router = routekit.load("default")  # or "mf", "random", or a folder made by routekit-export
print(router)

for prompt in ["hi, how are you?", "Prove that there are infinitely many primes.",
               "Write a Rust function that parses ISO-8601 durations, with tests."]:
    d = router.route(prompt)  # threshold calibrated to send ~50 % of Arena-Hard prompts to strong
    print(f"{d.route:6} {d.model:30} win_rate={d.win_rate:.3f} (threshold {d.threshold:.3f})  {prompt[:50]!r}")

# Cheaper: only ~20 % of typical traffic to the strong model
print(router.route("What is 2 + 2?", strong_fraction=0.2))

# Batched scoring (one tensor batch per 64 prompts)
print(router.win_rates(["a", "b", "c"]))
