"""The audit log (NEN 7513): every read or change of a patient's data by someone else."""
