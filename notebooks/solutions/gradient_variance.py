"""Exercise 3 of notebooks/04_probes_and_exercises.ipynb, solved: the variance of one episode's gradient term.

pi(a = 1) = sigmoid(theta) = q, R ~ Bernoulli(w_a), p = q w1 + (1 - q) w0 = E[R]. The score is
d/dtheta log pi(a) = a - q, so an episode's term is g = (a - q) A. For any f(a):
E[(a - q)^2 f(a)] = q (1 - q)^2 f(1) + (1 - q) q^2 f(0) = q (1 - q) [(1 - q) f(1) + q f(0)].
"""


def gradient_variance(q, w0, w1, baseline, batch_size):
    p = q * w1 + (1 - q) * w0
    mean = q * (1 - q) * (w1 - w0)                  # E[g], for any baseline that does not depend on a

    def weighted(f1, f0):                           # E[(a - q)^2 f(a)]
        return q * (1 - q) * ((1 - q) * f1 + q * f0)

    if baseline == "none":                          # A = R: E[R^2 | a] = w_a
        return weighted(w1, w0) - mean ** 2
    # A = R - p: E[(R - p)^2 | a] = Var[R | a] + (w_a - p)^2
    oracle = weighted(w1 * (1 - w1) + (w1 - p) ** 2, w0 * (1 - w0) + (w0 - p) ** 2) - mean ** 2
    if baseline == "oracle":
        return oracle
    # batch_mean: R_i - mean_batch(R) = (1 - 1/N) (R_i - b_i), b_i the mean of the OTHER N - 1 outcomes.
    # b_i is independent of (a_i, R_i) with mean p and variance p (1 - p) / (N - 1): the leave-one-out term
    # is unbiased with the oracle's variance plus E[(a - q)^2] Var[b_i]; the factor scales it by (1 - 1/N)^2.
    n = batch_size
    return (1 - 1 / n) ** 2 * (oracle + q * (1 - q) * p * (1 - p) / (n - 1))
