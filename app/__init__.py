"""Atelier: curate a style-LoRA dataset, caption it, export it for AI-Toolkit."""
