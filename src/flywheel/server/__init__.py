"""HTTP app assembly and the process that serves it."""
