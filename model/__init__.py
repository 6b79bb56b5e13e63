"""Everything a user can run offline: data, features, networks, training, evaluation, artifacts."""
