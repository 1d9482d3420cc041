"""De-duplication: exact and near-duplicate examples within and across dataset versions, shown as
clusters and kept or dropped by rule or by a person."""
