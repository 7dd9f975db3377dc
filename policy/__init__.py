"""The generator (the policy): loading, sampling, supervised fine-tuning and the policy-gradient update."""
