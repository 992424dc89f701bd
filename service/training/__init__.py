"""Training: data, base/individual ResNet20 training, permutation, INR training, evaluation."""
