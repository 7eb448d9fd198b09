"""Route a few prompts with the shipped default router.  Run: python examples/quickstart.py"""

import routekit

router = routekit.load("default")  # or "mf", "random", or a folder made by routekit-export
print(router)

prompts = ["hi, how are you?", "thanks!", "What is the capital of France?",
           "Translate 'good morning' into German.",
           "Prove that there are infinitely many primes.",
           "Write a Rust function that parses ISO-8601 durations, with tests.",
           "Design a lock-free multi-producer queue in C++ and prove it is linearizable.",
           "A tank fills through pipe A in 6 h and pipe B in 9 h; a drain empties it in 12 h. With all three "
           "open for 2 h and then B closed, when is the tank full?"]
# the default threshold sends 60 % of the reference traffic mix (README: "What a threshold means") to strong
for d, prompt in sorted(zip(router.route_many(prompts), prompts), key=lambda x: x[0].win_rate):
    print(f"{d.route:6} {d.model:28} win_rate={d.win_rate:.4f} (threshold {d.threshold:.4f})  {prompt[:60]!r}")

# Cheaper: only ~20 % of the reference mix to the strong model
print(router.route("Prove that there are infinitely many primes.", strong_fraction=0.2))

# Batched scoring (one tensor batch per 64 prompts)
print(router.win_rates(["a", "b", "c"]))
