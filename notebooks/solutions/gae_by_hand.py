"""Exercise 2 of notebooks/04_probes_and_exercises.ipynb, solved: GAE as a loop over one episode."""


def gae_by_hand(rewards, values, last_value, gamma, lam):
    """One episode: rewards r_t, values V(s_t) (t = 0 .. T-1), last_value = V after the last step (0 when
    nothing follows) -> advantages A_t = sum_l (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V(s_{t+1}) - V(s_t).
    Backwards, one step at a time: A_t = delta_t + gamma lam A_{t+1}."""
    advantages, following = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        next_value = values[t + 1] if t + 1 < len(rewards) else last_value
        delta = rewards[t] + gamma * next_value - values[t]
        following = delta + gamma * lam * following
        advantages[t] = following
    return advantages
