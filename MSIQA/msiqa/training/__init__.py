"""Training, evaluation and synthetic degradations for the bundled MS-IQA model."""
