"""Calico GlobalAlert / GlobalAlertTemplate as Kubernetes custom resources (CRDs, and later the controller)."""
