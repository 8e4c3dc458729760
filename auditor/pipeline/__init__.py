"""The one audit pipeline: spec in, result out. The CLI, the API and the workers are shells over it."""
