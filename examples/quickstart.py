"""Route a few prompts with the shipped default router.  Run: python examples/quickstart.py"""

import routekit

router = routekit.load("default")  # or "length", "random", or a folder made by routekit-export
print(router)

EMAIL = ("Hi all, a quick reminder that the office kitchen will be closed on Thursday and Friday while the new "
         "dishwasher and coffee machine are installed. Please take any food you have left in the fridge home by "
         "Wednesday evening; anything left after that will be thrown away. The water cooler on the second floor "
         "will still work, and the cafe across the road has agreed to give staff ten percent off during those two "
         "days if you show your badge. Sorry for the trouble, and thanks for your patience. Best, Maria")
prompts = [
    # short and easy
    "hi, how are you?", "thanks!", "What is the capital of France?", "Translate 'good morning' into German.",
    # long but easy: pasted text with a routine instruction
    "Summarise this email in one sentence:\n\n" + EMAIL,
    "Translate this message into Spanish, keeping the tone friendly:\n\n" + EMAIL,
    EMAIL + "\n\nWhat days is the kitchen closed? Answer with the two day names only.",
    # short but hard
    "Prove that there are infinitely many primes.",
    "Is every planar graph 4-colourable? Sketch why.",
    # (the closest call: about 0.005 under the default threshold; docs/quality.md, round 4)
    "Implement a lock-free MPMC queue in C++ and argue it is linearizable.",
    # longer and hard
    "Write a Rust function that parses ISO-8601 durations, with tests.",
    "A tank fills through pipe A in 6 h and pipe B in 9 h; a drain empties it in 12 h. With all three "
    "open for 2 h and then B closed, when is the tank full?",
]
# the default threshold sends the 35 % of the reference traffic mix that needs the strong model
# (docs/thresholds.md) to strong
for d, prompt in sorted(zip(router.route_many(prompts), prompts), key=lambda x: x[0].win_rate):
    print(f"{d.route:6} {d.model:28} win_rate={d.win_rate:.4f} (threshold {d.threshold:.4f})  "
          f"{len(prompt):4} chars  {prompt[:50]!r}")

# Cheaper: only ~20 % of the reference mix to the strong model
print(router.route("Prove that there are infinitely many primes.", strong_fraction=0.2))

# Batched scoring (one tensor batch per 64 prompts)
print(router.win_rates(["a", "b", "c"]))
