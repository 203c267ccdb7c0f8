"""OS plumbing: container limits and memory (cgroup, psutil), forked workers, process exits,
Kubernetes resource quantities."""
