"""Task quality: what a good answer must satisfy (assertions), grading stored answers against
it, judges for what rules cannot check, and the pass rates the verdict uses."""
