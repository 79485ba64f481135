"""The whole system: training entry point, joint fine-tuning, inference, evaluation, benchmark."""
