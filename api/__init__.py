"""HTTP API of the evaluator service, persistence of alert objects, and the policywatchctl client."""
