"""policywatchctl: calicoctl-style client of the evaluator's API."""
