"""Training with AI-Toolkit: the checkout, jobs and their process, run folders, board, pick."""
